"""Fuzz: agent /v1/status bodies. Any JSON gives an AgentStatus or ONE-line StatusError, nothing else;
every number in the result is finite, never negative where the quantity cannot be, and comes from the
body (a reading is never made up: absent or wrong-typed in, None out)."""

from __future__ import annotations

import json
import math
from dataclasses import fields, is_dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrtop.agentstatus import AgentStatus, StatusError, parse_status

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-5, 5),
                        st.integers(min_value=2**1030, max_value=2**1100),  # ints a float cannot hold
                        st.floats(), st.floats(-1e3, 1e3), st.text(max_size=8),
                        st.sampled_from(["ok", "hashing", "missing", "error", "nvml", "none", "simulated", "2xx"]))
json_any = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=10)

GPU_KEYS = ["index", "uuid", "name", "utilization_ratio", "memory_used_bytes", "memory_total_bytes",
            "temperature_celsius", "power_watts", "power_limit_watts", "processes"]
HOST_KEYS = ["cpu_ratio", "load1", "load5", "load15", "memory_used_bytes", "memory_total_bytes", "error"]
ASR_KEYS = ["url", "up", "probe_latency_seconds", "error", "pid", "process_cpu_ratio", "process_rss_bytes",
            "in_flight", "in_flight_source", "requests"]
REQ_KEYS = ["total", "by_class", "in_flight", "latency_p50_seconds", "latency_p95_seconds",
            "latency_sum_seconds", "audio_seconds_total", "bytes_received_total", "bytes_sent_total"]
MODEL_KEYS = ["state", "sha256", "files", "bytes", "error", "dirs"]


def shaped(keys, special=None):
    special = special or {}
    return st.fixed_dictionaries({}, optional={k: special.get(k, json_any) for k in keys}) | json_any


process = shaped(["pid", "name", "gpu_memory_bytes"])
gpu = shaped(GPU_KEYS, {"processes": st.lists(process, max_size=3) | json_any})
requests = shaped(REQ_KEYS, {"by_class": st.dictionaries(st.sampled_from(["2xx", "5xx"]) | st.text(max_size=3),
                                                         json_scalar, max_size=3)})
model = shaped(MODEL_KEYS, {"dirs": st.lists(shaped(["path", "state", "sha256", "files", "bytes", "error"]),
                                             max_size=3) | json_any})
body = st.one_of(
    st.fixed_dictionaries(
        {"schema": st.just(1) | json_scalar, "node": st.sampled_from(["node-1", ""]) | json_scalar},
        optional={"agent_version": json_any, "collected_at": json_scalar, "interval_seconds": json_scalar,
                  "host": shaped(HOST_KEYS), "gpu_source": json_scalar, "gpu_error": json_scalar,
                  "gpus": st.lists(gpu, max_size=3) | json_any, "asr": shaped(ASR_KEYS, {"requests": requests}),
                  "model": model, "versions": json_any}),
    json_any,
)

SIGNED = {"temperature_celsius", "collected_at"}


def numbers(obj, path=""):
    """Every (path, number) inside a parsed result."""
    if is_dataclass(obj):
        for f in fields(obj):
            yield from numbers(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, tuple):
        for i, x in enumerate(obj):
            yield from numbers(x, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def same_number(out, src, key):
    """out came from src[key] (int() of it for integer fields), or out is None."""
    if out is None:
        return True
    v = src.get(key) if isinstance(src, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return out == v or out == int(v) or out == float(v)


def check(b):
    try:
        st_ = parse_status(b)
    except StatusError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "\r" not in msg
        return None
    assert isinstance(st_, AgentStatus)
    assert isinstance(b, dict) and b.get("schema") == 1 and isinstance(st_.node, str) and st_.node
    for path, v in numbers(st_):
        if path.startswith(".versions"):
            continue
        assert math.isfinite(v), (path, v)
        if path.rsplit(".", 1)[-1] not in SIGNED:
            assert v >= 0, (path, v)
    # nothing made up: each reading is the body's own value, or None
    h = b.get("host") if isinstance(b.get("host"), dict) else {}
    for k in HOST_KEYS[:-1]:
        assert same_number(getattr(st_.host, k), h, k), k
    a = b.get("asr") if isinstance(b.get("asr"), dict) else {}
    for k in ("probe_latency_seconds", "pid", "process_cpu_ratio", "process_rss_bytes", "in_flight"):
        assert same_number(getattr(st_.asr, k), a, k), k
    r = a.get("requests")
    assert (st_.asr.requests is None) == (not isinstance(r, dict))
    if st_.asr.requests is not None:
        for k in REQ_KEYS:
            if k != "by_class":
                assert same_number(getattr(st_.asr.requests, k), r, k), k
        src = r.get("by_class") if isinstance(r.get("by_class"), dict) else {}
        assert all(src.get(k) == v for k, v in st_.asr.requests.by_class.items())
    gpus_in = [g for g in (b.get("gpus") if isinstance(b.get("gpus"), list) else []) if isinstance(g, dict)]
    assert len(st_.gpus) == len(gpus_in)
    for g_out, g_in in zip(st_.gpus, gpus_in):
        for k in GPU_KEYS[3:-1]:
            assert same_number(getattr(g_out, k), g_in, k), k
        ratio = g_out.memory_ratio
        assert ratio is None or math.isfinite(ratio)
    for k in ("collected_at", "interval_seconds"):
        assert same_number(getattr(st_, k), b, k), k
    assert st_.model.state in {"ok", "hashing", "missing", "error"}
    assert st_.gpu_source in {"nvml", "none", "simulated"}
    return st_


@FUZZ
@given(body)
def test_parse_status_any_json_value(b):
    check(b)


@FUZZ
@given(st.text(max_size=120) | body.map(json.dumps))
def test_parse_status_any_json_text(text):
    """The poller's path: bytes off the wire -> json.loads -> parse_status (NaN/Infinity literals included)."""
    try:
        b = json.loads(text)
    except ValueError:
        return
    check(b)


def test_fuzz_finds_readings():
    """A well-formed body keeps its readings (guards against a parser that drops everything)."""
    st_ = check({"schema": 1, "node": "n", "host": {"cpu_ratio": 0.5, "memory_used_bytes": 10},
                 "gpus": [{"index": 0, "utilization_ratio": 0.9, "temperature_celsius": -3,
                           "processes": [{"pid": 7}]}]})
    assert st_.host.cpu_ratio == 0.5 and st_.host.memory_used_bytes == 10
    assert st_.gpus[0].temperature_celsius == -3 and st_.gpus[0].processes[0].pid == 7
    bad = check({"schema": 1, "node": "n", "host": {"memory_used_bytes": -1, "cpu_ratio": 2**1100},
                 "gpus": [{"processes": 5}]})
    assert bad.host.memory_used_bytes is None and bad.host.cpu_ratio is None and bad.gpus[0].processes == ()
