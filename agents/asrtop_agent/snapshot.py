"""Frozen readings of one collection round, and the background loop that produces them.

The loop owns the collectors; everything it hands out is immutable, so the HTTP handlers (and other
threads) read the last `Snapshot` without locks. Absent readings are None, never 0.

`fresh(after)` (GET /v1/status?after=T) hands out a snapshot whose every reading was taken at or after T:
the latest one when it qualifies, else the loop runs a round now instead of sleeping out its interval.
Waiting requests share rounds; forced rounds come at most one per MIN_FORCED_GAP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("asrtop_agent")

# Latency buckets suited to ASR requests: sub-second health-ish calls up to 5-minute long files.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Age bounds (seconds) of the open-stream distribution: a minute up to the hour a long meeting lasts.
STREAM_AGE_BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0)
MIN_FORCED_GAP = 0.1  # seconds from one round's start to a forced round's: ?after= cannot spin the collectors
# Seconds between background re-checks of the model dirs (a listing + stat of every file): a model changes on a
# deploy, not every second. A round that a ?after= caller waits for lists them afresh whatever this says.
SLOW_INTERVAL = 30.0
FRESH_TIMEOUT = 10.0  # seconds a ?after= request waits for its round


@dataclass(frozen=True)
class HostSnap:
    cpu_ratio: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class GpuProcessSnap:
    pid: int
    name: str | None
    gpu_memory_bytes: int | None


@dataclass(frozen=True)
class GpuSnap:
    index: int
    uuid: str | None = None
    name: str | None = None
    utilization_ratio: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    processes: tuple[GpuProcessSnap, ...] = ()
    # NVML clock event (throttle) reasons active now, decoded ("sw_power_cap", ...); () none; None: not reported
    clock_event_reasons: tuple[str, ...] | None = None
    clock_event_reasons_supported: tuple[str, ...] | None = None  # the reasons this GPU can report
    ecc_errors_corrected_volatile: int | None = None  # since the driver loaded; None: no ECC / not reported
    ecc_errors_uncorrected_volatile: int | None = None


@dataclass(frozen=True)
class GpuReport:
    source: str = "none"  # nvml | none | simulated
    error: str | None = None
    gpus: tuple[GpuSnap, ...] = ()
    driver: str | None = None
    cuda: str | None = None


@dataclass(frozen=True)
class RequestSnap:
    """Exact request counters of the in-path proxy at one moment."""

    by_class: tuple[tuple[str, int], ...] = ()
    in_flight: int = 0
    bucket_bounds: tuple[float, ...] = LATENCY_BUCKETS
    bucket_counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS) + 1)  # per bucket, last is +Inf
    latency_sum_seconds: float = 0.0
    audio_seconds_total: float = 0.0
    bytes_received_total: int = 0
    bytes_sent_total: int = 0
    oldest_in_flight_seconds: float | None = None  # age of the oldest request in flight (None: none is)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.by_class)

    @property
    def latency_count(self) -> int:
        return sum(self.bucket_counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs as Prometheus histograms expose them."""
        out, acc = [], 0
        for bound, n in zip(self.bucket_bounds + (float("inf"),), self.bucket_counts):
            acc += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
        return out

    def quantile(self, q: float) -> float | None:
        """Estimate like PromQL's histogram_quantile: linear within the bucket; None without data."""
        count = self.latency_count
        if count == 0:
            return None
        rank = q * count
        acc, lower = 0, 0.0
        for bound, n in zip(self.bucket_bounds, self.bucket_counts):
            if n and acc + n >= rank:
                return lower + (bound - lower) * ((rank - acc) / n)
            acc += n
            lower = bound
        return self.bucket_bounds[-1]  # in the +Inf bucket: the largest finite bound, as Prometheus does


@dataclass(frozen=True)
class StreamsSnap:
    """Open streams (WebSockets) at one moment: counted exactly by the WS proxy ("proxy") or taken as the
    established server-side TCP connections on the stream port at collection ("connections")."""

    source: str  # proxy | connections
    open: int = 0
    oldest_seconds: float | None = None  # None: none open
    ages: tuple[tuple[float | None, int], ...] = ()  # (le seconds, open streams aged <= le), cumulative; None = +Inf
    opened_total: int = 0  # streams first seen since the agent started
    closed_total: int = 0  # streams gone since the agent started
    frames_total: int | None = None  # proxy only: data frames passed (both ways)
    audio_seconds_total: float | None = None  # proxy only: PCM16 bytes sent by clients / 2 / audio_fs


@dataclass(frozen=True)
class AsrSnap:
    url: str
    up: bool | None = None
    probe_latency_seconds: float | None = None
    error: str | None = None
    pid: int | None = None
    process_cpu_ratio: float | None = None
    process_rss_bytes: int | None = None
    in_flight: int | None = None
    in_flight_source: str | None = None  # connections | proxy
    requests: RequestSnap | None = None
    process_error: str | None = None
    python: str | None = None  # the ASR process' interpreter version, when found
    packages: tuple[tuple[str, str], ...] = ()
    probe_kind: str = "http"  # http | tcp | ws
    probe_target: str | None = None  # the URL or HOST:PORT probed
    streams: StreamsSnap | None = None  # None: no --stream-port and no --proxy-ws


@dataclass(frozen=True)
class ModelFile:
    dir: str
    path: str  # relative to dir, '/'-separated
    size: int
    sha256: str | None


@dataclass(frozen=True)
class ModelDirSnap:
    path: str
    state: str  # ok | hashing | missing | error
    sha256: str | None = None
    files: int | None = None
    bytes: int | None = None
    error: str | None = None
    file_list: tuple[ModelFile, ...] = ()


@dataclass(frozen=True)
class ModelSnap:
    state: str = "hashing"
    sha256: str | None = None
    files: int | None = None
    bytes: int | None = None
    error: str | None = None
    dirs: tuple[ModelDirSnap, ...] = ()
    # when (agent clock) the listing behind this reading began: it holds from then on; None: no listing yet
    listed_at: float | None = None


@dataclass(frozen=True)
class CollectorHealth:
    name: str
    duration_seconds: float | None
    errors_total: int


@dataclass(frozen=True)
class Snapshot:
    node: str
    agent_version: str
    collected_at: float
    interval_seconds: float
    host: HostSnap
    gpu: GpuReport
    asr: AsrSnap
    model: ModelSnap
    collectors: tuple[CollectorHealth, ...] = ()
    agent_python: str | None = None
    # when (agent clock) the round began, or the model listing it reports if that began earlier: every reading
    # in it was taken at or after this time. None: the placeholder served before the first round.
    round_started_at: float | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)  # rendered bodies, filled once

    def rendered(self, key: str, render: Callable[["Snapshot"], bytes]) -> bytes:
        """Render once per snapshot (lazily: no scrapes, no rendering cost). Races only duplicate work."""
        body = self._cache.get(key)
        if body is None:
            body = render(self)
            self._cache[key] = body
        return body


class CollectionLoop:
    """One collection per interval in the background; `latest` is always a complete Snapshot.

    Collectors are injected: host/gpu are sync (run in a worker thread: NVML can stall), asr is async,
    model is the background hasher: poked to re-check every `slow_interval` (its last result read without
    waking it in the rounds between), asked for a fresh listing in a round that a fresh() caller waits for.
    Nothing is rendered here: a body is rendered on the first scrape of a snapshot (Snapshot.rendered).
    """

    def __init__(self, *, node: str, version: str, interval: float, host: Any, gpu: Any, asr: Any,
                 model: Any, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.perf_counter, agent_python: str | None = None,
                 slow_interval: float = SLOW_INTERVAL):
        self.node, self.version, self.interval = node, version, interval
        self.host, self.gpu, self.asr, self.model = host, gpu, asr, model
        self.clock, self.monotonic = clock, monotonic
        self.agent_python = agent_python
        self.slow_interval = max(slow_interval, interval)
        self._model_due = float("-inf")  # monotonic time of the next background model re-check
        self.errors = {"host": 0, "gpu": 0, "asr": 0, "model": 0}
        self.durations: dict[str, float | None] = {k: None for k in self.errors}
        self._last_in_flight: int | None = None
        self._wake = asyncio.Event()  # fresh() wants a round now
        self._round_done = asyncio.Event()  # set (and replaced) at the end of every round
        self._round_began: float | None = None  # the round in progress: when it began (clock)
        self._waiting = 0  # fresh() calls waiting
        self.latest: Snapshot = self._compose(HostSnap(), GpuReport(error="not collected yet"),
                                              AsrSnap(url=getattr(asr, "url", "")), ModelSnap())

    def _timed_sync(self, name: str, fn: Callable[[], Any], fallback: Any) -> Any:
        t0 = self.monotonic()
        try:
            return fn()
        except Exception as exc:  # a collector bug must not stop the others
            self.errors[name] += 1
            log.warning("%s collector failed: %s", name, exc)
            return fallback(exc)
        finally:
            self.durations[name] = self.monotonic() - t0

    def _model_reader(self, fresh_model: bool) -> Callable[[], ModelSnap]:
        """fresh: list now; due: wake the hasher and take its last result; else only its last result."""
        if fresh_model:
            return self.model.fresh
        now = self.monotonic()
        if now >= self._model_due:
            self._model_due = now + self.slow_interval
            return self.model.poll
        last = getattr(self.model, "last", None)
        return last if last is not None else (lambda: self.latest.model)

    def _sync_round(self, fresh_model: bool) -> tuple[HostSnap, GpuReport, ModelSnap]:
        host = self._timed_sync("host", self.host.collect, lambda e: HostSnap(error=f"host: {e}"))
        gpu = self._timed_sync("gpu", lambda: self.gpu.collect(self._last_in_flight),
                               lambda e: GpuReport(source=getattr(self.gpu, "source", "none"), error=str(e)))
        model = self._timed_sync("model", self._model_reader(fresh_model),
                                 lambda e: ModelSnap(state="error", error=str(e)))
        return host, gpu, model

    async def collect_once(self, fresh_model: bool = False) -> Snapshot:
        """One round. `fresh_model`: the model as listed now (someone waits for this round), not the last
        background result."""
        started = self.clock()
        self._round_began = started
        t0 = self.monotonic()
        try:
            asr = await self.asr.collect()
        except Exception as exc:
            self.errors["asr"] += 1
            log.warning("asr collector failed: %s", exc)
            asr = AsrSnap(url=getattr(self.asr, "url", ""), error=f"collector failed: {exc}")
        finally:
            self.durations["asr"] = self.monotonic() - t0
        self._last_in_flight = asr.in_flight
        try:
            host, gpu, model = await asyncio.to_thread(self._sync_round, fresh_model)
        finally:
            self._round_began = None
        if model.listed_at is not None:
            started = min(started, model.listed_at)
        snap = self._compose(host, gpu, asr, model, started)
        self.latest = snap
        done, self._round_done = self._round_done, asyncio.Event()
        done.set()
        return snap

    def _compose(self, host, gpu, asr, model, started: float | None = None) -> Snapshot:
        health = tuple(CollectorHealth(k, self.durations[k], self.errors[k]) for k in self.errors)
        return Snapshot(node=self.node, agent_version=self.version, collected_at=self.clock(),
                        interval_seconds=self.interval, host=host, gpu=gpu, asr=asr, model=model,
                        collectors=health, agent_python=self.agent_python, round_started_at=started)

    async def fresh(self, after: float) -> Snapshot:
        """The latest snapshot whose round began at or after `after` (this loop's clock), waiting for rounds run
        now for it (run() must be running). TimeoutError after FRESH_TIMEOUT."""
        self._waiting += 1
        try:
            async with asyncio.timeout(FRESH_TIMEOUT):
                ahead = after - self.clock()
                if ahead > 0:  # a time still to come: no round can begin at it before then
                    await asyncio.sleep(ahead)
                while (snap := self.latest).round_started_at is None or snap.round_started_at < after:
                    done = self._round_done
                    began = self._round_began
                    if began is None or began < after:  # the round in progress (if any) began too early
                        self._wake.set()
                    await done.wait()
        finally:
            self._waiting -= 1
        return snap

    async def _sleep(self, seconds: float) -> bool:
        """Sleep until the next regular round; True when fresh() woke the loop first."""
        try:
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))
        except asyncio.TimeoutError:
            return self._wake.is_set()
        return True

    async def run(self) -> None:
        """Collect forever on a fixed cadence; a slow round delays the next one, never overlaps it. A fresh()
        waiting wakes it early (no sooner than MIN_FORCED_GAP after the last round began); that round then
        stands for the regular one and the cadence goes on from it."""
        next_at = self.monotonic()
        while True:
            self._wake.clear()  # wakes during the round stay set: that round began too early for them
            began = self.monotonic()
            try:
                await self.collect_once(fresh_model=self._waiting > 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # pragma: no cover - last line of defence, keep serving
                log.error("collection round failed: %s", exc)
            next_at += self.interval
            now = self.monotonic()
            if next_at < now:
                next_at = now
            if await self._sleep(next_at - now):
                gap = began + MIN_FORCED_GAP - self.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
                next_at = self.monotonic()
