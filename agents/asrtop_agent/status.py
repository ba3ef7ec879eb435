"""JSON bodies of /v1/status (schema 1, full or brief) and /v1/model, built from one Snapshot.

asrtop/agentstatus.py parses exactly these keys; new facts are added as new keys, never renamed.
"""

from __future__ import annotations

import json
from typing import Any

from . import SCHEMA_VERSION
from .snapshot import AsrSnap, GpuSnap, RequestSnap, Snapshot, StreamsSnap


def _requests(r: RequestSnap | None) -> dict | None:
    if r is None:
        return None
    return {
        "total": r.total,
        "by_class": dict(r.by_class),
        "in_flight": r.in_flight,
        "latency_p50_seconds": r.quantile(0.5),
        "latency_p95_seconds": r.quantile(0.95),
        "latency_sum_seconds": r.latency_sum_seconds,
        "latency_count": r.latency_count,
        "audio_seconds_total": r.audio_seconds_total,
        "bytes_received_total": r.bytes_received_total,
        "bytes_sent_total": r.bytes_sent_total,
        "oldest_in_flight_seconds": r.oldest_in_flight_seconds,
    }


def _streams(st: StreamsSnap) -> dict:
    out = {"source": st.source, "open": st.open, "oldest_seconds": st.oldest_seconds,
           "ages": [[None if le is None else (int(le) if float(le).is_integer() else le), n] for le, n in st.ages],
           "opened_total": st.opened_total, "closed_total": st.closed_total}
    if st.frames_total is not None:  # proxy only: absent (not null) otherwise
        out["frames_total"] = st.frames_total
        out["audio_seconds_total"] = st.audio_seconds_total
    return out


def _gpu(g: GpuSnap) -> dict:
    return {
        "index": g.index, "uuid": g.uuid, "name": g.name, "utilization_ratio": g.utilization_ratio,
        "memory_used_bytes": g.memory_used_bytes, "memory_total_bytes": g.memory_total_bytes,
        "temperature_celsius": g.temperature_celsius, "power_watts": g.power_watts,
        "power_limit_watts": g.power_limit_watts,
        # added keys: null when NVML does not report them (no ECC, an older driver, the fixture lacks them)
        "clock_event_reasons": None if g.clock_event_reasons is None else list(g.clock_event_reasons),
        "ecc_errors_corrected_volatile": g.ecc_errors_corrected_volatile,
        "ecc_errors_uncorrected_volatile": g.ecc_errors_uncorrected_volatile,
        "processes": [{"pid": p.pid, "name": p.name, "gpu_memory_bytes": p.gpu_memory_bytes} for p in g.processes],
    }


def _asr(a: AsrSnap) -> dict:
    out = {
        "url": a.url, "up": a.up, "probe_latency_seconds": a.probe_latency_seconds, "error": a.error,
        "pid": a.pid, "process_cpu_ratio": a.process_cpu_ratio, "process_rss_bytes": a.process_rss_bytes,
        "in_flight": a.in_flight, "in_flight_source": a.in_flight_source, "requests": _requests(a.requests),
        "process_error": a.process_error,
        "probe": {"kind": a.probe_kind, "target": a.probe_target},  # added key
    }
    if a.streams is not None:  # added key, absent without --stream-port / --proxy-ws
        out["streams"] = _streams(a.streams)
    return out


def status_dict(s: Snapshot) -> dict[str, Any]:
    h, m = s.host, s.model
    return {
        "schema": SCHEMA_VERSION,
        "node": s.node,
        "agent_version": s.agent_version,
        "collected_at": s.collected_at,
        "round_started_at": s.round_started_at,  # added key: every reading below was taken at or after it
        "interval_seconds": s.interval_seconds,
        "host": {"cpu_ratio": h.cpu_ratio, "load1": h.load1, "load5": h.load5, "load15": h.load15,
                 "memory_used_bytes": h.memory_used_bytes, "memory_total_bytes": h.memory_total_bytes,
                 "error": h.error},
        "gpu_source": s.gpu.source,
        "gpu_error": s.gpu.error,
        "gpus": [_gpu(g) for g in s.gpu.gpus],
        "asr": _asr(s.asr),
        "model": {
            "state": m.state, "sha256": m.sha256, "files": m.files, "bytes": m.bytes, "error": m.error,
            "dirs": [{"path": d.path, "state": d.state, "sha256": d.sha256, "files": d.files, "bytes": d.bytes,
                      "error": d.error} for d in m.dirs],
        },
        "versions": {
            "agent": s.agent_version,
            "driver": s.gpu.driver,
            "cuda": s.gpu.cuda,
            "python": s.asr.python,  # the ASR process' interpreter, when found
            "packages": dict(s.asr.packages),
            "agent_python": s.agent_python,
        },
        "collectors": {c.name: {"duration_seconds": c.duration_seconds, "errors_total": c.errors_total}
                       for c in s.collectors},
    }


# `GET /v1/status?view=brief`: the keys a one-shot `asrtop status` / `asrtop check` reads (its table, --json
# and problem rules) and no more: 40 % of the full body's bytes, half the JSON an operator's machine decodes for
# each of 1,000 agents. A subset of the full body (same names, same values), so one parser reads both; None:
# the key's whole value. tests/unit/test_agent_brief_status.py checks `status` and `check` say the
# same from either.
BRIEF_KEYS: dict[str, Any] = {
    "schema": None, "node": None, "collected_at": None, "interval_seconds": None,
    "host": {"memory_used_bytes": None, "memory_total_bytes": None, "error": None},
    "gpu_source": None, "gpu_error": None,
    "gpus": {"index": None, "utilization_ratio": None, "memory_used_bytes": None, "memory_total_bytes": None,
             "temperature_celsius": None, "clock_event_reasons": None, "ecc_errors_corrected_volatile": None,
             "ecc_errors_uncorrected_volatile": None},
    "asr": {"up": None, "error": None, "in_flight": None,
            "requests": {"total": None, "by_class": None, "latency_sum_seconds": None, "audio_seconds_total": None},
            "streams": {"open": None, "oldest_seconds": None}},
    "model": {"state": None, "sha256": None, "error": None},
}


def brief(full: Any, keys: dict[str, Any] = BRIEF_KEYS) -> Any:
    """The brief view of a full status body (or of any part of one, by its BRIEF_KEYS): the keys it has of
    `keys`, in its order; a list of objects (gpus) item by item."""
    if isinstance(full, list):
        return [brief(item, keys) for item in full]
    if not isinstance(full, dict):
        return full  # null where the full body has null (requests without --proxy)
    return {k: v if keys[k] is None else brief(v, keys[k]) for k, v in full.items() if k in keys}


def model_dict(s: Snapshot) -> dict[str, Any]:
    m = s.model
    return {
        "schema": SCHEMA_VERSION,
        "node": s.node,
        "sha256": m.sha256,
        "state": m.state,
        "error": m.error,
        "files": [{"dir": f.dir, "path": f.path, "size": f.size, "sha256": f.sha256}
                  for d in m.dirs for f in d.file_list],
    }


def render_status(s: Snapshot) -> bytes:
    return json.dumps(status_dict(s), separators=(",", ":")).encode()


def render_status_brief(s: Snapshot) -> bytes:
    return json.dumps(brief(status_dict(s)), separators=(",", ":")).encode()


def render_model(s: Snapshot) -> bytes:
    return json.dumps(model_dict(s), separators=(",", ":")).encode()
