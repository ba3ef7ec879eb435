"""Load generator: real WAV audio through the balancer at a fixed concurrency (127.0.0.1 only).

    python -m asrtop.demo.load --url http://127.0.0.1:PORT --concurrency C [--duration S] [--requests N]
        [--ws-url ws://127.0.0.1:PORT --streams K --stream-mix 20:5s,60:30s,15:2m,5:20m --stream-modes ...]

    LoadGenerator(url, concurrency, duration=None, requests=None, ws_url=..., streams=K).run() -> LoadReport

Clips are speech-like signals of 5-60 s (16 kHz mono 16-bit), generated once and cached under
$XDG_CACHE_HOME/asrtop/demo-audio. Each of C workers keeps one kept-alive request in flight; no new
request starts after the duration or count is reached, and those in flight finish (bounded by --timeout).
Beside them, K streaming clients (asrtop.demo.loadws) each keep one FunASR WebSocket stream open, lengths
and modes drawn from the mixes; after the run's end open streams finish, or are cut once --stream-grace
seconds have passed (counted as cut by the stop). `gen.stream_counts.snapshot()` reads the streams' counts
at any moment; the command prints them as one JSON line on SIGUSR1.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from asrtop.demo.audio import speech_like_wav
from asrtop.demo.loadws import (StreamCounts, StreamLoad, StreamRecord, StreamTally, check_ws_loopback, parse_mode_mix,
                                parse_stream_mix, pcm_from_wav)

CLIP_SECONDS = (5, 8, 12, 15, 20, 30, 45, 60)
DEFAULT_STREAM_MIX = "20:5s,60:30s,15:2m,5:20m"
DEFAULT_STREAM_MODES = "50:2pass,30:online,20:offline"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE})  # the peer closed while we still wrote


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "asrtop" / "demo-audio"


def clips(seconds: tuple[float, ...] = CLIP_SECONDS, directory: Path | None = None) -> list[tuple[float, bytes]]:
    """(duration, WAV bytes) per length; cached on disk, regenerated if the cache is unwritable or bad."""
    d = directory or cache_dir()
    out = []
    for i, s in enumerate(seconds):
        path = d / f"speech-{s:g}s-{i}.wav"
        data = None
        try:
            data = path.read_bytes()
        except OSError:
            pass
        if not data or data[:4] != b"RIFF":
            data = speech_like_wav(s, seed=i)
            try:
                d.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only home still gets its audio, just not cached
        out.append((float(s), data))
    return out


@dataclass(frozen=True)
class RequestRecord:
    started: float  # seconds since the run began
    latency: float
    status: int | None  # HTTP status, None when no response came
    ok: bool
    reason: str | None  # why it failed: "http 503", "timeout", "connection refused", "connection reset", ...
    audio_seconds: float
    node: str | None  # the node that answered, when the response names it


def natural_key(name: str) -> tuple:
    """node-2 before node-10: digit runs compare as numbers (the operator's order, not the text order)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", name) if part)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass(frozen=True)
class LoadReport:
    url: str
    concurrency: int
    elapsed: float
    records: tuple[RequestRecord, ...] = field(repr=False)
    streams: StreamTally | None = None  # None: no streaming clients in this run
    stream_records: tuple[StreamRecord, ...] = field(default=(), repr=False)

    @property
    def sent(self) -> int:
        return len(self.records)

    @property
    def successes(self) -> int:
        return sum(r.ok for r in self.records)

    @property
    def failures(self) -> Counter:
        return Counter(r.reason for r in self.records if not r.ok)

    @property
    def by_node(self) -> Counter:
        return Counter(r.node for r in self.records if r.ok and r.node)

    def latency(self, q: float) -> float | None:
        return _percentile(sorted(r.latency for r in self.records if r.ok), q)

    @property
    def audio_seconds_per_second(self) -> float:
        done = sum(r.audio_seconds for r in self.records if r.ok)
        return done / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        return {"url": self.url, "concurrency": self.concurrency, "elapsed_s": round(self.elapsed, 3),
                "sent": self.sent, "successes": self.successes, "failures": dict(self.failures),
                "latency_s": {k: (round(v, 4) if v is not None else None)
                              for k, v in (("p50", self.latency(0.5)), ("p90", self.latency(0.9)),
                                           ("p99", self.latency(0.99)), ("max", self.latency(1.0)))},
                "audio_seconds_per_second": round(self.audio_seconds_per_second, 2),
                "requests_per_second": round(self.sent / self.elapsed, 2) if self.elapsed > 0 else 0.0,
                "by_node": dict(sorted(self.by_node.items(), key=lambda kv: natural_key(kv[0]))),
                **({"streams": self.streams.as_dict()} if self.streams is not None else {})}

    def summary(self) -> str:
        if self.concurrency == 0 and self.streams is not None:
            return f"load: streams only ({self.elapsed:.1f} s, no file requests)\n{self.streams.line()}"
        d = self.as_dict()
        lat = d["latency_s"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}s"  # noqa: E731
        fails = ", ".join(f"{k}: {v}" for k, v in sorted(d["failures"].items())) or "none"
        nodes = ", ".join(f"{k}: {v}" for k, v in d["by_node"].items()) or "-"
        return (f"load: {d['sent']} requests in {d['elapsed_s']:.1f} s at concurrency {self.concurrency} "
                f"({d['requests_per_second']:.1f}/s): {d['successes']} ok, failures {fails}\n"
                f"latency p50 {fmt(lat['p50'])} p90 {fmt(lat['p90'])} p99 {fmt(lat['p99'])} max {fmt(lat['max'])}; "
                f"{d['audio_seconds_per_second']:.1f} audio-seconds/s\n"
                f"answered by: {nodes}" + (f"\n{self.streams.line()}" if self.streams is not None else ""))


def check_loopback(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"load goes to http://127.0.0.1 only, got {url!r}")


class LoadGenerator:
    def __init__(self, url: str, concurrency: int = 16, duration: float | None = None, requests: int | None = None,
                 endpoint: str = "/asr", timeout: float = 300.0, seed: int = 0,
                 clip_seconds: tuple[float, ...] = CLIP_SECONDS, audio_dir: Path | None = None, *,
                 ws_url: str | None = None, streams: int = 0, stream_count: int | None = None,
                 stream_mix: str = DEFAULT_STREAM_MIX, stream_modes: str = DEFAULT_STREAM_MODES,
                 stream_grace: float | None = None, chunk_size: tuple[int, int, int] = (5, 10, 5)):
        """streams: concurrent streaming clients on ws_url (0: none); stream_count: streams to start in all;
        stream_grace: seconds open streams may still run after the run's end before the load cuts them
        (None: until they end)."""
        check_loopback(url)
        if concurrency < 0 or (concurrency == 0 and not streams):
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if streams < 0:
            raise ValueError(f"streams must be >= 0, got {streams}")
        if concurrency and duration is None and requests is None:
            raise ValueError("give a duration and/or a request count: load always stops by itself")
        if streams and duration is None and stream_count is None:
            raise ValueError("give a duration and/or a stream count: load always stops by itself")
        if endpoint not in ("/asr", "/v1/audio/transcriptions"):
            raise ValueError(f"endpoint must be /asr or /v1/audio/transcriptions, got {endpoint!r}")
        if streams and not ws_url:
            raise ValueError("streams need --ws-url (the balancer's WebSocket frontend)")
        self.url, self.concurrency, self.duration, self.requests = url.rstrip("/"), concurrency, duration, requests
        self.endpoint, self.timeout, self.seed = endpoint, timeout, seed
        self.stream_count, self.stream_grace = stream_count, stream_grace
        self.streams: StreamLoad | None = None
        if streams:
            check_ws_loopback(ws_url)
            mix, modes = parse_stream_mix(stream_mix), parse_mode_mix(stream_modes)  # bad input before any audio
            # the streams loop the file requests' first clip (5 s): the same cached file, nothing more to make
            pcm = pcm_from_wav(clips(clip_seconds[:1] or CLIP_SECONDS[:1], audio_dir)[0][1])
            self.streams = StreamLoad(ws_url, streams, pcm, mix=mix, modes=modes, chunk_size=chunk_size, seed=seed)
        self._clips = clips(clip_seconds, audio_dir) if concurrency else []
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._records: list[RequestRecord] = []
        self._started = 0.0
        self.in_flight = 0  # requests started and not finished (read from other threads: an int is atomic)

    @property
    def stream_counts(self) -> StreamCounts | None:
        """The streams' live counts (None without streaming clients): `.snapshot()` from any thread."""
        return self.streams.counts if self.streams is not None else None

    def stop(self, cut_streams: bool = False) -> None:
        """Start no new request or stream (thread-safe); those in flight finish, unless cut_streams: then
        the open streams are closed now and counted as cut by the stop."""
        self._stop.set()
        if cut_streams and self.streams is not None:
            self.streams.cut()

    def snapshot(self) -> LoadReport:
        """The report so far (thread-safe enough: records are appended whole, the list copied)."""
        elapsed = time.monotonic() - self._started if self._started else 0.0
        return self._report(elapsed)

    def _report(self, elapsed: float) -> LoadReport:
        s = self.streams
        return LoadReport(self.url, self.concurrency, elapsed, tuple(self._records),
                          s.counts.snapshot() if s else None, tuple(s.records) if s else ())

    def run(self) -> LoadReport:
        return asyncio.run(self.run_async())

    async def run_async(self) -> LoadReport:
        self._records = []
        self._started = t0 = time.monotonic()
        deadline = t0 + self.duration if self.duration is not None else None
        budget = [self.requests if self.requests is not None else -1]
        stream_budget = [self.stream_count if self.stream_count is not None else -1]
        rng = random.Random(self.seed)

        def over() -> bool:
            return self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

        def take() -> float | None:
            """The moment a new request is allowed to start (its start time), or None: stop."""
            if over() or budget[0] == 0:
                return None
            if budget[0] > 0:
                budget[0] -= 1
            return time.monotonic()

        def may_start_stream() -> bool:
            if over() or stream_budget[0] == 0:
                return False
            if stream_budget[0] > 0:
                stream_budget[0] -= 1
            return True

        def grace_deadline() -> float | None:
            if self.stream_grace is None or deadline is None:
                return None
            return deadline + self.stream_grace

        parts = []
        if self.concurrency:
            parts.append(self._requests(t0, take, rng))
        if self.streams is not None:
            parts.append(self.streams.run(may_start_stream, t0, grace_deadline))
        await asyncio.gather(*parts)
        return self._report(time.monotonic() - t0)

    async def _requests(self, t0: float, take, rng: random.Random) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency,
                                         keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async def worker() -> None:
                while (start := take()) is not None:
                    seconds, data = self._clips[rng.randrange(len(self._clips))]
                    self.in_flight += 1
                    try:
                        self._records.append(await self._one(session, t0, start, seconds, data))
                    finally:
                        self.in_flight -= 1

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _one(self, session: aiohttp.ClientSession, t0: float, start: float, seconds: float,
                   data: bytes) -> RequestRecord:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="speech.wav", content_type="audio/wav")
        form.add_field("language", "zh")
        if self.endpoint != "/asr":
            form.add_field("response_format", "json")
        status, reason, node = None, None, None
        try:
            async with session.post(self.url + self.endpoint, data=form) as r:
                status = r.status
                body = await r.read()
                if status == 200:
                    try:
                        doc = json.loads(body)
                        node = doc.get("node") if isinstance(doc, dict) else None
                        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                            reason = "bad body"
                    except ValueError:
                        reason = "bad body"
                else:
                    reason = f"http {status}"
        except asyncio.TimeoutError:
            reason = "timeout"
        except aiohttp.ClientConnectorError:
            reason = "connection refused"
        except aiohttp.ServerDisconnectedError:
            reason = "server disconnected"
        except aiohttp.ClientError as e:
            # a reset: e.g. the balancer closed on a dead node while the clip was still uploading
            reset = isinstance(e, aiohttp.ClientOSError) and e.errno in _RESET_ERRNOS
            reason = "connection reset" if reset else f"client error: {type(e).__name__}"
        end = time.monotonic()
        # Not rounded: a request started just before the deadline must not read as started at it (the report
        # rounds what it prints).
        return RequestRecord(start - t0, end - start, status, reason is None, reason, seconds, node)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m asrtop.demo.load", description=__doc__.split("\n")[0])
    p.add_argument("--url", help="balancer URL for file requests, e.g. http://127.0.0.1:8080")
    p.add_argument("--concurrency", type=int, default=16, help="file requests in flight (default 16, 0: none)")
    p.add_argument("--duration", type=float, help="seconds to keep starting requests and streams")
    p.add_argument("--requests", type=int, help="total file requests to send")
    p.add_argument("--endpoint", default="/asr", choices=["/asr", "/v1/audio/transcriptions"])
    p.add_argument("--timeout", type=float, default=300.0, help="per-request limit in seconds (default 300)")
    p.add_argument("--ws-url", help="the balancer's WebSocket frontend, e.g. ws://127.0.0.1:8081")
    p.add_argument("--streams", type=int, default=0, help="concurrent FunASR WebSocket streams (default 0)")
    p.add_argument("--stream-count", type=int, help="total streams to start")
    p.add_argument("--stream-mix", default=DEFAULT_STREAM_MIX, metavar="PCT:LEN,...",
                   help=f"percent of streams : audio length (s, m, h) (default {DEFAULT_STREAM_MIX})")
    p.add_argument("--stream-modes", default=DEFAULT_STREAM_MODES, metavar="PCT:MODE,...",
                   help=f"percent of streams : online | 2pass | offline (default {DEFAULT_STREAM_MODES})")
    p.add_argument("--stream-grace", type=float, metavar="S",
                   help="after --duration, cut streams still open after S more seconds (default: let them end)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    if a.duration is None and a.requests is None and a.stream_count is None:
        a.duration = 30.0
    url = a.url or (a.ws_url and "http" + a.ws_url[2:] if a.concurrency == 0 else None)
    if not url:
        print("load: give --url (or --concurrency 0 with --ws-url)", file=sys.stderr)
        return 2
    try:
        gen = LoadGenerator(url, a.concurrency, a.duration, a.requests, a.endpoint, a.timeout, ws_url=a.ws_url,
                            streams=a.streams, stream_count=a.stream_count, stream_mix=a.stream_mix,
                            stream_modes=a.stream_modes, stream_grace=a.stream_grace)
    except ValueError as e:
        print(f"load: {e}", file=sys.stderr)
        return 2
    if gen.streams is not None and hasattr(signal, "SIGUSR1"):
        def print_counts(signum, frame):  # noqa: ARG001
            print(json.dumps({"streams": gen.stream_counts.snapshot().as_dict()}), flush=True)

        signal.signal(signal.SIGUSR1, print_counts)
    try:
        report = gen.run()
    except KeyboardInterrupt:
        report = gen.snapshot()
    print(json.dumps(report.as_dict(), indent=2) if a.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
