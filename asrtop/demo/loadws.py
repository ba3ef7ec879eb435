"""Streaming clients for the load generator: FunASR's WebSocket protocol, PCM paced as a microphone sends it.

Written from FunASR's runtime/docs/websocket_protocol.md, not from the simulated node: a JSON first message
(mode, wav_name, wav_format "pcm", audio_fs, chunk_size, chunk_interval, hotwords, itn, is_speaking true),
binary PCM16 chunks, `{"is_speaking": false}` after the last one, then results until one with
`is_final: true`. A chunk carries chunk_size[1] x 60 ms / chunk_interval of audio and leaves when a
microphone would have filled it (real time), so a 20-minute stream holds its socket for 20 minutes.

Every stream ends in exactly one outcome (StreamCounts): finished (its final result arrived), cut by the
server (the node or the balancer closed the socket first), cut by the stop (the load's own end: `cut()` or
the grace after the run's end ran out), or no final (the end flag was sent and no final result came
within the limit; the client closed). A stream that could not open (refused, HTTP 503 at the handshake)
is refused, not started. The counts are live: `counts.snapshot()` from any thread, at any moment.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import aiohttp

from asrtop.demo.audio import read_wav

MODES = ("online", "2pass", "offline")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MIX_EXAMPLE = "20:5s,60:30s,15:2m,5:20m"
MODES_EXAMPLE = "50:2pass,30:online,20:offline"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


# --- the mix: "percent:value,..." ---------------------------------------------------------------
def parse_length(text: str) -> float:
    """'5s', '2m', '1.5h', '30' (seconds) -> seconds; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{text.strip()!r} is not a length (5s, 2m, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _parse_mix(text: str, value: Callable[[str], object], flag: str, example: str) -> tuple[tuple[float, object], ...]:
    """'20:5s,80:30s' -> ((20, 5.0), (80, 30.0)); a lone value means 100 %. Percentages sum to 100."""
    items = [p for p in text.split(",") if p.strip()]
    if not items:
        raise ValueError(f"{flag}: empty; give percent:value pairs, e.g. {example}")
    out = []
    for item in items:
        share, sep, rest = item.rpartition(":") if ":" in item else ("100", ":", item)
        try:
            pct = float(share)
            if not 0 < pct <= 100:
                raise ValueError
        except ValueError:
            raise ValueError(f"{flag}: {item.strip()!r} is not percent:value (percent 1-100), e.g. {example}") from None
        try:
            out.append((pct, value(rest)))
        except ValueError as e:
            raise ValueError(f"{flag}: {e}; e.g. {example}") from None
    total = sum(p for p, _ in out)
    if abs(total - 100) > 1e-6:
        raise ValueError(f"{flag}: the percentages add up to {total:g}, not 100; e.g. {example}")
    return tuple(out)


def _mode(text: str) -> str:
    m = text.strip()
    if m not in MODES:
        raise ValueError(f"{m!r} is not a mode ({', '.join(MODES)})")
    return m


def parse_stream_mix(text: str) -> tuple[tuple[float, float], ...]:
    """`--stream-mix` '20:5s,60:30s,15:2m,5:20m': percent of streams : length."""
    return _parse_mix(text, parse_length, "--stream-mix", MIX_EXAMPLE)  # type: ignore[return-value]


def parse_mode_mix(text: str) -> tuple[tuple[float, str], ...]:
    """`--stream-modes` '50:2pass,30:online,20:offline': percent of streams : FunASR mode."""
    return _parse_mix(text, _mode, "--stream-modes", MODES_EXAMPLE)  # type: ignore[return-value]


def check_ws_loopback(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"streams go to ws://127.0.0.1 only, got {url!r}")


# --- live counts -------------------------------------------------------------------------------
OUTCOMES = ("finished", "server", "stop", "no final")


@dataclass(frozen=True)
class StreamTally:
    """The streams at one moment. started = open + finished + cut_by_server + cut_by_stop + no_final."""
    started: int = 0  # the handshake succeeded
    refused: int = 0  # could not open (not started)
    open: int = 0
    finished: int = 0  # final result arrived
    cut_by_server: int = 0  # the node or the balancer closed the socket before the final result
    cut_by_stop: int = 0  # the load's own stop closed it
    no_final: int = 0  # end flag sent, no final result within the limit (the client closed)
    results: int = 0  # result messages received, partial and final
    audio_seconds: float = 0.0  # audio sent
    reasons: dict = field(default_factory=dict)  # why streams were refused or cut: {"closed 1011 ...": n}

    @property
    def ended_without_final(self) -> int:
        """Streams that ran to their end or were cut by someone else, yet no final result came."""
        return self.cut_by_server + self.no_final

    def as_dict(self) -> dict:
        return {"started": self.started, "refused": self.refused, "open": self.open, "finished": self.finished,
                "cut": {"by_server": self.cut_by_server, "by_stop": self.cut_by_stop, "no_final": self.no_final},
                "results": self.results, "audio_seconds": round(self.audio_seconds, 1), "reasons": dict(self.reasons)}

    def line(self) -> str:
        """The one `streams:` line of a report."""
        cut = self.cut_by_server + self.cut_by_stop
        parts = [f"{self.started} started", f"{self.finished} finished",
                 f"{cut} cut ({self.cut_by_server} by the server/balancer, {self.cut_by_stop} by the load's stop)"]
        if self.no_final:
            parts.append(f"{self.no_final} without a final result in time")
        if self.open:
            parts.append(f"{self.open} open")
        if self.refused:
            parts.append(f"{self.refused} refused")
        parts.append(f"{self.results} results")
        bad = self.ended_without_final
        verdict = ("every stream that ended on its own got its final result" if not bad else
                   f"{bad} stream(s) ended without their final result")
        why = "; ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items()))
        return "streams: " + ", ".join(parts) + f"; {verdict}" + (f" ({why})" if why else "")


class StreamCounts:
    """Updated by the load's event loop, read by anyone: `snapshot()` is one consistent StreamTally."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._t = dict(started=0, refused=0, open=0, finished=0, cut_by_server=0, cut_by_stop=0, no_final=0,
                       results=0, audio_seconds=0.0)
        self._reasons: Counter = Counter()

    def add(self, reason: str | None = None, **deltas) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._t[k] += v
            if reason:
                self._reasons[reason] += 1

    def snapshot(self) -> StreamTally:
        with self._lock:
            return StreamTally(**self._t, reasons=dict(self._reasons))


@dataclass(frozen=True)
class StreamRecord:
    started: float  # seconds since the run began
    length: float  # the audio it was to send
    mode: str
    outcome: str  # finished | server | stop | no final | refused
    reason: str | None
    results: int
    audio_sent: float
    final_delay: float | None  # end flag to final result


_OUTCOME_FIELD = {"finished": "finished", "server": "cut_by_server", "stop": "cut_by_stop", "no final": "no_final"}


def pcm_from_wav(wav: bytes) -> bytes:
    """16-bit little-endian mono PCM of a WAV clip (what a microphone stream carries)."""
    samples = read_wav(wav).samples
    if samples.itemsize != 2:
        raise ValueError("the stream clip must be 16-bit")
    if sys.byteorder != "little":
        samples = samples[:]
        samples.byteswap()
    return samples.tobytes()


class StreamLoad:
    """`concurrency` clients, each opening one stream after another while `may_start()` says so."""

    def __init__(self, url: str, concurrency: int, pcm: bytes, *, mix=((100.0, 30.0),),
                 modes=((100.0, "2pass"),), chunk_size=(5, 10, 5), chunk_interval: int = 1, audio_fs: int = 16000,
                 hotwords: str = '{"阿里巴巴": 20}', final_timeout: float = 30.0, seed: int = 0):
        check_ws_loopback(url)
        if concurrency < 0:
            raise ValueError(f"streams must be >= 0, got {concurrency}")
        if not pcm:
            raise ValueError("no audio to stream")
        self.url, self.concurrency, self.pcm = url.rstrip("/") + "/", concurrency, pcm
        self.mix, self.modes, self.chunk_size, self.audio_fs = tuple(mix), tuple(modes), list(chunk_size), audio_fs
        self.hotwords, self.final_timeout = hotwords, final_timeout
        self.chunk_seconds = 0.06 * chunk_size[1] / chunk_interval
        self.chunk_interval = chunk_interval
        self.counts = StreamCounts()
        self.records: list[StreamRecord] = []
        self._rng = random.Random(seed)
        self._cutting = False
        self._workers: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._seq = 0

    def cut(self) -> None:
        """Close every open stream now, from any thread (counted as cut by the stop); start no more."""
        self._cutting = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._cancel_workers)
            except RuntimeError:  # the loop closed in between
                pass

    def _cancel_workers(self) -> None:
        for t in self._workers:
            t.cancel()

    async def run(self, may_start: Callable[[], bool], t0: float, grace_deadline: Callable[[], float | None]) -> None:
        """Streams until may_start() is False; then the open ones finish, or are cut once the monotonic
        time grace_deadline() returns (None: no limit) has passed."""
        self._loop, self._t0 = asyncio.get_running_loop(), t0
        if self._cutting:
            return
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._workers = [asyncio.create_task(self._worker(session, may_start)) for _ in range(self.concurrency)]
            watch = asyncio.create_task(self._cut_at(grace_deadline))
            try:
                await asyncio.gather(*self._workers)
            finally:
                watch.cancel()

    async def _cut_at(self, grace_deadline: Callable[[], float | None]) -> None:
        while True:
            at = grace_deadline()
            if at is not None and time.monotonic() >= at:
                self._cutting = True
                self._cancel_workers()
                return
            await asyncio.sleep(0.05)

    async def _worker(self, session: aiohttp.ClientSession, may_start: Callable[[], bool]) -> None:
        try:
            while not self._cutting and may_start():
                length = self._rng.choices([v for _, v in self.mix], [p for p, _ in self.mix])[0]
                mode = self._rng.choices([v for _, v in self.modes], [p for p, _ in self.modes])[0]
                await self._stream(session, length, mode)
        except asyncio.CancelledError:
            if not self._cutting:
                raise

    async def _stream(self, session: aiohttp.ClientSession, length: float, mode: str) -> None:
        start = time.monotonic()
        self._seq += 1
        name = f"load-{self._seq}"
        try:
            ws = await session.ws_connect(self.url, timeout=aiohttp.ClientWSTimeout(ws_close=5.0), heartbeat=None,
                                          autoping=True, max_msg_size=0)
        except asyncio.CancelledError:
            raise
        except aiohttp.WSServerHandshakeError as e:
            return self._refused(start, length, mode, f"handshake http {e.status}")
        except aiohttp.ClientConnectorError:
            return self._refused(start, length, mode, "connection refused")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            return self._refused(start, length, mode, f"connect failed: {type(e).__name__}")
        self.counts.add(started=1, open=1)
        state = _StreamState()
        try:
            outcome, reason = await self._talk(ws, state, name, length, mode)
        except asyncio.CancelledError:
            if not self._cutting:
                raise
            outcome, reason = ("finished", None) if state.final else ("stop", None)
        finally:
            if not ws.closed:
                await asyncio.shield(ws.close())
        self.counts.add(reason=reason, open=-1, **{_OUTCOME_FIELD[outcome]: 1})
        self.records.append(StreamRecord(start - self._t0, length, mode, outcome, reason, state.results,
                                         state.audio_sent, state.final_delay))

    def _refused(self, start: float, length: float, mode: str, reason: str) -> None:
        self.counts.add(reason=reason, refused=1)
        self.records.append(StreamRecord(start - self._t0, length, mode, "refused", reason, 0, 0.0, None))

    async def _talk(self, ws: aiohttp.ClientWebSocketResponse, state: "_StreamState", name: str, length: float,
                    mode: str) -> tuple[str, str | None]:
        first = {"mode": mode, "wav_name": name, "wav_format": "pcm", "audio_fs": self.audio_fs,
                 "chunk_size": self.chunk_size, "chunk_interval": self.chunk_interval, "hotwords": self.hotwords,
                 "itn": True, "is_speaking": True}
        reader = asyncio.create_task(self._read(ws, state))
        try:
            return await self._send_and_wait(ws, state, reader, first, length)
        finally:
            reader.cancel()

    async def _send_and_wait(self, ws: aiohttp.ClientWebSocketResponse, state: "_StreamState", reader: asyncio.Task,
                             first: dict, length: float) -> tuple[str, str | None]:
        try:
            await ws.send_str(json.dumps(first))
            t_open, bytes_per_s = time.monotonic(), self.audio_fs * 2
            chunk = int(self.chunk_seconds * self.audio_fs) * 2
            total, sent, offset = int(length * self.audio_fs) * 2, 0, 0
            while sent < total and not reader.done():
                n = min(chunk, total - sent)
                # a microphone hands over a chunk once it is full: chunk i leaves at the end of its audio
                delay = t_open + (sent + n) / bytes_per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send_bytes(self._audio(offset, n))
                offset, sent = (offset + n) % len(self.pcm), sent + n
                state.audio_sent = sent / bytes_per_s
                self.counts.add(audio_seconds=n / bytes_per_s)
            if not reader.done():
                state.end_sent = time.monotonic()
                await ws.send_str(json.dumps({"is_speaking": False}))
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            pass  # the socket closed under us: the reader says how
        if state.end_sent is None:
            try:  # the close that stopped the sending
                await asyncio.wait_for(asyncio.shield(reader), timeout=5.0)
            except asyncio.TimeoutError:
                return "server", "sending failed and the socket did not close"
        else:
            try:
                await asyncio.wait_for(asyncio.shield(reader), timeout=self.final_timeout + length)
            except asyncio.TimeoutError:
                return "no final", f"no final result within {self.final_timeout + length:.0f} s"
        if state.final:
            return "finished", None
        return "server", state.close_reason or "closed without a final result"

    def _audio(self, offset: int, n: int) -> bytes:
        out = self.pcm[offset:offset + n]
        while len(out) < n:  # wrap around the clip
            out += self.pcm[:n - len(out)]
        return out

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, state: "_StreamState") -> None:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                state.results += 1
                self.counts.add(results=1)
                try:
                    doc = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(doc, dict) and doc.get("is_final") is True and state.end_sent is not None:
                    state.final = True
                    state.final_delay = time.monotonic() - state.end_sent
                    return
            elif msg.type == aiohttp.WSMsgType.CLOSE:  # the server's close frame: its code and message
                state.close_reason = f"closed {msg.data}" + (f" {msg.extra}" if msg.extra else "")
                return
            elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                state.close_reason = "connection closed (no close frame)"
                return


class _StreamState:
    __slots__ = ("results", "final", "end_sent", "final_delay", "audio_sent", "close_reason")

    def __init__(self) -> None:
        self.results, self.final, self.audio_sent = 0, False, 0.0
        self.end_sent: float | None = None
        self.final_delay: float | None = None
        self.close_reason: str | None = None

