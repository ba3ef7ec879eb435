"""Open streams (long-lived WebSockets) and their ages, from two sources.

- `ConnectionStreams` (`--stream-port`): the established server-side TCP connections on the stream port,
  scanned each collection; each is keyed by its socket inode and aged from when it was first seen, an inode
  that is gone counts as closed. Within one collection interval of the truth.
- `ProxyStreams` (`--proxy-ws`): the WS proxy counts streams as it opens and closes them, exactly, plus
  frames and audio seconds. Mutated only on the proxy's event loop; `snapshot()` reads it from there too.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterable

from ..snapshot import STREAM_AGE_BUCKETS, StreamsSnap

DEFAULT_AUDIO_FS = 16000  # FunASR's default `audio_fs`


def age_distribution(ages: list[float], bounds: tuple[float, ...] = STREAM_AGE_BUCKETS
                     ) -> tuple[tuple[float | None, int], ...]:
    """Cumulative (le, open streams aged <= le) pairs, the last le None (+Inf: every open stream)."""
    return tuple((le, sum(1 for a in ages if a <= le)) for le in bounds) + ((None, len(ages)),)


def streams_snap(source: str, starts: Iterable[float], now: float, opened: int, closed: int,
                 frames: int | None = None, audio_seconds: float | None = None) -> StreamsSnap:
    ages = [max(0.0, now - t) for t in starts]
    return StreamsSnap(source=source, open=len(ages), oldest_seconds=max(ages) if ages else None,
                       ages=age_distribution(ages), opened_total=opened, closed_total=closed,
                       frames_total=frames, audio_seconds_total=audio_seconds)


class ConnectionStreams:
    """Streams = established server-side connections on `port`, as `table.established(port)` lists them."""

    def __init__(self, port: int, table, clock: Callable[[], float] = time.monotonic):
        self.port, self.table, self.clock = port, table, clock
        self._first_seen: dict[int, float] = {}  # inode -> when first seen
        self.opened = self.closed = 0

    def collect(self, established: Iterable[int] | None = None) -> StreamsSnap:
        """`established`: the port's connections as read this round with the other sockets (AsrCollector reads
        them all in one dump); None: ask the table."""
        inodes = set(self.table.established(self.port) if established is None else established)
        now = self.clock()
        seen = self._first_seen
        gone = [i for i in seen if i not in inodes]
        for i in gone:
            del seen[i]
        for i in inodes:
            if i not in seen:
                seen[i] = now
                self.opened += 1
        self.closed += len(gone)
        return streams_snap("connections", seen.values(), now, self.opened, self.closed)


class ProxyStreams:
    """Exact counts kept by the WS proxy: call opened() when a stream is through, closed(key) when it ends."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._starts: dict[int, float] = {}
        self._keys = itertools.count()
        self.opened_total = self.closed_total = self.frames = 0
        self.audio_seconds = 0.0

    def opened(self) -> int:
        key = next(self._keys)
        self._starts[key] = self.clock()
        self.opened_total += 1
        return key

    def closed(self, key: int) -> None:
        if self._starts.pop(key, None) is not None:
            self.closed_total += 1

    def snapshot(self) -> StreamsSnap:
        return streams_snap("proxy", self._starts.values(), self.clock(), self.opened_total, self.closed_total,
                            self.frames, self.audio_seconds)
