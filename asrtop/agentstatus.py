"""Typed, validated view of an agent's `GET /v1/status` body (schema 1, see agents/README.md).

PURE: no I/O. `parse_status` accepts anything json.loads can return and either gives an `AgentStatus`
or raises `StatusError` with one line saying what is wrong; a reading of the wrong type becomes None
(unavailable), never a made-up 0.

The readings are read-only by convention, not frozen: a frozen dataclass's __init__ sets each field through
object.__setattr__, and `asrtop status` builds eight of them per agent (~70 fields) in the thread every agent's
answer waits on (measured: GpuReading(...) 1.2-1.3 us frozen, 0.16 us not). Nothing changes one after
parse_status or prometheus_build made it; unsafe_hash keeps them hashable by value, as frozen ones were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

SUPPORTED_SCHEMA = 1


class StatusError(ValueError):
    """The body is not a schema-1 agent status."""


@dataclass(slots=True, unsafe_hash=True)
class GpuProcess:
    """A process holding memory on one GPU."""

    pid: int
    name: str | None
    gpu_memory_bytes: int | None


@dataclass(slots=True, unsafe_hash=True)
class GpuReading:
    """One GPU as the agent read it (NVML, or its simulator)."""

    index: int
    uuid: str | None
    name: str | None
    utilization_ratio: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_celsius: float | None
    power_watts: float | None
    power_limit_watts: float | None
    processes: tuple[GpuProcess, ...] = ()
    # NVML clock event (throttle) reasons active now, e.g. ("hw_thermal_slowdown",); () none; None: not reported
    clock_event_reasons: tuple[str, ...] | None = None
    ecc_errors_corrected_volatile: int | None = None  # since the driver loaded; None: not reported (no ECC)
    ecc_errors_uncorrected_volatile: int | None = None

    @property
    def memory_ratio(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes


@dataclass(slots=True, unsafe_hash=True)
class HostReading:
    """The node's CPU, load and memory."""

    cpu_ratio: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    error: str | None = None


@dataclass(slots=True, unsafe_hash=True)
class RequestStats:
    """Exact counts from the agent's in-path proxy (`--proxy`); absent without it."""

    total: int | None = None
    by_class: Mapping[str, int] = field(default_factory=dict)  # "2xx", "4xx", "5xx", ...
    in_flight: int | None = None
    latency_p50_seconds: float | None = None
    latency_p95_seconds: float | None = None
    latency_sum_seconds: float | None = None
    audio_seconds_total: float | None = None
    bytes_received_total: int | None = None
    bytes_sent_total: int | None = None
    oldest_in_flight_seconds: float | None = None  # the oldest request's age at collection; None: none or unknown


@dataclass(slots=True, unsafe_hash=True)
class StreamsReading:
    """Live streams (WebSocket sessions) the agent sees on the node's stream port; absent without one.

    source "proxy": the agent's WebSocket proxy counts them exactly; "connections": established TCP connections
    to the stream port at collection (ages from when each was first seen)."""

    source: str | None = None  # "proxy" | "connections"
    open: int | None = None
    oldest_seconds: float | None = None  # None: none open, or not reported
    # cumulative: (le seconds, open streams aged <= le); le None = +Inf (all open streams)
    ages: tuple[tuple[float | None, int], ...] = ()
    opened_total: int | None = None  # streams first seen since the agent started
    closed_total: int | None = None
    frames_total: int | None = None  # proxy only
    audio_seconds_total: float | None = None  # proxy only


@dataclass(slots=True, unsafe_hash=True)
class AsrReading:
    """The ASR service: its probe, its process, and the requests and streams the agent counts."""

    url: str | None = None
    up: bool | None = None
    probe_latency_seconds: float | None = None
    error: str | None = None
    pid: int | None = None
    process_cpu_ratio: float | None = None
    process_rss_bytes: int | None = None
    in_flight: int | None = None
    in_flight_source: str | None = None  # "proxy" (exact) | "connections" (established TCP to the ASR port)
    requests: RequestStats | None = None
    streams: StreamsReading | None = None  # None: the agent reports no streams (no stream port): unknown, not 0
    probe_kind: str | None = None  # "http" | "tcp" | "ws"
    probe_target: str | None = None  # what the probe reaches: a URL, host:port


@dataclass(slots=True, unsafe_hash=True)
class ModelDir:
    """One model directory and its manifest digest."""

    path: str
    state: str  # ok | hashing | missing | error
    sha256: str | None
    files: int | None
    bytes: int | None
    error: str | None


@dataclass(slots=True, unsafe_hash=True)
class ModelReading:
    """The model on the node: every directory's manifest in one digest."""

    state: str = "missing"  # ok | hashing | missing | error (worst of the dirs)
    sha256: str | None = None  # manifest digest over all dirs
    files: int | None = None
    bytes: int | None = None
    error: str | None = None
    dirs: tuple[ModelDir, ...] = ()


@dataclass(slots=True, unsafe_hash=True)
class AgentStatus:
    """One agent answer (`GET /v1/status`), validated.

    Every dataclass here has a docstring: without one, @dataclass builds it from inspect.signature, a cost
    `asrtop status` would pay at import for nothing."""

    node: str
    agent_version: str | None
    collected_at: float | None
    interval_seconds: float | None
    host: HostReading
    gpu_source: str  # nvml | none | simulated
    gpu_error: str | None
    gpus: tuple[GpuReading, ...]
    asr: AsrReading
    model: ModelReading
    versions: Mapping[str, Any]
    # when the agent's collection round began (every reading above taken at or after it); None: an older agent
    round_started_at: float | None = None


MODEL_STATES = {"ok", "hashing", "missing", "error"}
GPU_SOURCES = {"nvml", "none", "simulated"}


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


_INT_END = 2**63


def _num(d: Mapping, key: str, signed: bool = False) -> float | None:
    """A finite number, else None. Negative only where the quantity can be (signed): a negative
    ratio, byte count or duration is garbage from the agent, shown as unavailable rather than as a value."""
    v = d.get(key)
    if type(v) is float:  # the usual case first (`status` parses ~50 numbers per agent, 1,000s of agents)
        return v if v - v == 0.0 and (signed or v >= 0) else None  # v - v: nan for inf and nan
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        v = float(v)
    except OverflowError:  # an int too big for a float (JSON allows any length)
        return None
    return v if math.isfinite(v) and (signed or v >= 0) else None


def _int(d: Mapping, key: str) -> int | None:
    """A non-negative integer (counts, bytes, pids, indexes) that fits 64 bits, else None."""
    v = d.get(key)
    if type(v) is int:
        return v if 0 <= v < _INT_END else None
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    v = int(v)
    return v if 0 <= v < _INT_END else None


def _str(d: Mapping, key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def _bool(d: Mapping, key: str) -> bool | None:
    v = d.get(key)
    return v if isinstance(v, bool) else None


def _gpu(d: dict, position: int) -> GpuReading:
    procs = []
    procs_raw = d.get("processes")
    for p in procs_raw if isinstance(procs_raw, list) else ():
        p = _obj(p)
        pid = _int(p, "pid")
        if pid is not None:
            procs.append(GpuProcess(pid, _str(p, "name"), _int(p, "gpu_memory_bytes")))
    index = _int(d, "index")
    reasons_raw = d.get("clock_event_reasons")
    reasons = tuple(r for r in reasons_raw if isinstance(r, str)) if isinstance(reasons_raw, list) else None
    return GpuReading(  # positional, in field order: a third cheaper than keywords
        position if index is None else index, _str(d, "uuid"), _str(d, "name"), _num(d, "utilization_ratio"),
        _int(d, "memory_used_bytes"), _int(d, "memory_total_bytes"), _num(d, "temperature_celsius", signed=True),
        _num(d, "power_watts"), _num(d, "power_limit_watts"), tuple(procs), reasons,
        _int(d, "ecc_errors_corrected_volatile"), _int(d, "ecc_errors_uncorrected_volatile"))


def _requests(d: Any) -> RequestStats | None:
    if not isinstance(d, dict):
        return None
    by_class = {k: int(v) for k, v in _obj(d.get("by_class")).items()
                if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63}
    return RequestStats(  # positional, in field order
        _int(d, "total"), by_class, _int(d, "in_flight"), _num(d, "latency_p50_seconds"),
        _num(d, "latency_p95_seconds"), _num(d, "latency_sum_seconds"), _num(d, "audio_seconds_total"),
        _int(d, "bytes_received_total"), _int(d, "bytes_sent_total"), _num(d, "oldest_in_flight_seconds"))


STREAM_SOURCES = {"proxy", "connections"}


def _streams(d: Any) -> StreamsReading | None:
    if not isinstance(d, dict):
        return None
    ages = []
    for pair in d.get("ages") if isinstance(d.get("ages"), list) else ():
        if not (isinstance(pair, list) and len(pair) == 2):
            continue
        le, count = _num({"v": pair[0]}, "v"), _int({"v": pair[1]}, "v")
        if count is not None and (le is not None or pair[0] is None):
            ages.append((le, count))
    source = _str(d, "source")
    return StreamsReading(
        source=source if source in STREAM_SOURCES else None,
        open=_int(d, "open"),
        oldest_seconds=_num(d, "oldest_seconds"),
        ages=tuple(ages),
        opened_total=_int(d, "opened_total"),
        closed_total=_int(d, "closed_total"),
        frames_total=_int(d, "frames_total"),
        audio_seconds_total=_num(d, "audio_seconds_total"),
    )


def _model_state(d: Mapping) -> str:
    state = _str(d, "state")
    return state if state in MODEL_STATES else "error"


def parse_status(body: Any) -> AgentStatus:
    """Validate a decoded /v1/status body. Raises StatusError (one line) when it is not one."""
    if not isinstance(body, dict):
        raise StatusError(f"status body is a {type(body).__name__}, expected a JSON object")
    schema = body.get("schema")
    if schema != SUPPORTED_SCHEMA:
        raise StatusError(f"unsupported status schema {schema!r} (this asrtop reads schema {SUPPORTED_SCHEMA})")
    node = body.get("node")
    if not isinstance(node, str) or not node:
        raise StatusError("status has no node name")
    gpu_source = _str(body, "gpu_source")
    gpus_raw = body.get("gpus")
    gpus = tuple(_gpu(g, i) for i, g in enumerate(gpus_raw if isinstance(gpus_raw, list) else ())
                 if isinstance(g, dict))
    h = _obj(body.get("host"))
    a = _obj(body.get("asr"))
    m = _obj(body.get("model"))
    dirs = tuple(
        ModelDir(_str(x, "path") or "?", _model_state(x), _str(x, "sha256"), _int(x, "files"),
                 _int(x, "bytes"), _str(x, "error"))
        for x in (m.get("dirs") if isinstance(m.get("dirs"), list) else ()) if isinstance(x, dict)
    )
    probe = _obj(a.get("probe"))
    return AgentStatus(  # positional, in field order
        node, _str(body, "agent_version"), _num(body, "collected_at", signed=True), _num(body, "interval_seconds"),
        HostReading(_num(h, "cpu_ratio"), _num(h, "load1"), _num(h, "load5"), _num(h, "load15"),
                    _int(h, "memory_used_bytes"), _int(h, "memory_total_bytes"), _str(h, "error")),
        gpu_source if gpu_source in GPU_SOURCES else "none", _str(body, "gpu_error"), gpus,
        AsrReading(_str(a, "url"), _bool(a, "up"), _num(a, "probe_latency_seconds"), _str(a, "error"),
                   _int(a, "pid"), _num(a, "process_cpu_ratio"), _int(a, "process_rss_bytes"),
                   _int(a, "in_flight"), _str(a, "in_flight_source"), _requests(a.get("requests")),
                   _streams(a.get("streams")), _str(probe, "kind"), _str(probe, "target")),
        ModelReading(_model_state(m) if m else "missing", _str(m, "sha256"), _int(m, "files"), _int(m, "bytes"),
                     _str(m, "error"), dirs),
        {k: v for k, v in _obj(body.get("versions")).items() if isinstance(k, str)},
        _num(body, "round_started_at", signed=True),
    )
