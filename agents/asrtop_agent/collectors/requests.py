"""Exact request counters kept by the in-path proxy (`--proxy`).

Mutated only on the event loop that runs the proxy (no locks needed); `snapshot()` hands out a frozen
RequestSnap for the collection loop.
"""

from __future__ import annotations

import bisect
import itertools
import json
import time
from typing import Any, Callable

from ..snapshot import LATENCY_BUCKETS, RequestSnap

# Only JSON responses up to this size are parsed for the audio `duration` (FunASR /asr answers are small).
MAX_DURATION_BODY = 64 * 1024


def status_class(status: int | None) -> str:
    if status is None:
        return "aborted"  # the client went away before any response was sent
    return f"{status // 100}xx"


def audio_seconds(body: bytes) -> float | None:
    """`duration` (seconds of audio) from a FunASR-style JSON response, if it has one."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict):
        value = doc.get("duration")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e7:
            return float(value)
    return None


class RequestCounters:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS, clock: Callable[[], float] = time.monotonic):
        self.buckets = buckets
        self.clock = clock
        # Start time of each request in flight, by key, in start order (dicts keep insertion order):
        # the first entry is the oldest, which a drain's wait shows.
        self._starts: dict[int, float] = {}
        self._keys = itertools.count()
        self.by_class: dict[str, int] = {}
        self.in_flight = 0
        self.bucket_counts = [0] * (len(buckets) + 1)
        self.latency_sum = 0.0
        self.audio_seconds = 0.0
        self.bytes_received = 0
        self.bytes_sent = 0

    def started(self) -> int:
        """Count a request in; the key given back goes to finished()."""
        self.in_flight += 1
        key = next(self._keys)
        self._starts[key] = self.clock()
        return key

    def finished(self, status: int | None, seconds: float, audio: float | None = None, key: int | None = None) -> None:
        self.in_flight -= 1
        if key is None and self._starts:  # a caller that kept no key: end the oldest, so none leaks
            key = next(iter(self._starts))
        self._starts.pop(key, None)
        cls = status_class(status)
        self.by_class[cls] = self.by_class.get(cls, 0) + 1
        # bisect_left: a latency equal to a bound falls in that bucket (Prometheus `le` semantics)
        self.bucket_counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.latency_sum += seconds
        if audio is not None:
            self.audio_seconds += audio

    def snapshot(self) -> RequestSnap:
        return RequestSnap(
            by_class=tuple(sorted(self.by_class.items())),
            in_flight=self.in_flight,
            bucket_bounds=self.buckets,
            bucket_counts=tuple(self.bucket_counts),
            latency_sum_seconds=self.latency_sum,
            audio_seconds_total=self.audio_seconds,
            bytes_received_total=self.bytes_received,
            bytes_sent_total=self.bytes_sent,
            oldest_in_flight_seconds=self.oldest_in_flight_seconds(),
        )

    def oldest_in_flight_seconds(self) -> float | None:
        """Age of the oldest request still in flight; None when none is."""
        for started in self._starts.values():
            return max(0.0, self.clock() - started)
        return None
