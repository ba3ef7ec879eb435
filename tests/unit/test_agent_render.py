"""/v1/status and /metrics rendering of a snapshot; the collection loop with stand-in collectors."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from asrtop.agentstatus import parse_status
from asrtop_agent.collectors.requests import RequestCounters
from asrtop_agent.metrics import (AgentMetrics, AsrMetrics, HostMetrics, ModelMetrics, RequestMetrics, render)
from asrtop_agent.snapshot import (AsrSnap, CollectionLoop, GpuProcessSnap, GpuReport, GpuSnap, HostSnap,
                                   ModelDirSnap, ModelFile, ModelSnap, Snapshot)
from asrtop_agent.status import model_dict, render_status, status_dict

SHA = "ab" * 32


def full_snapshot(requests=True) -> Snapshot:
    c = RequestCounters()
    for status, secs, audio in [(200, 0.4, 10.0), (200, 1.5, 30.0), (503, 0.01, None)]:
        c.started()
        c.finished(status, secs, audio)
    c.started()
    c.bytes_received, c.bytes_sent = 3_000_000, 900
    gpu = GpuSnap(index=0, uuid="GPU-1", name="NVIDIA H100 80GB HBM3", utilization_ratio=0.93,
                  memory_used_bytes=24 * 2**30, memory_total_bytes=80 * 2**30, temperature_celsius=61.0,
                  power_watts=412.5, power_limit_watts=700.0, processes=(GpuProcessSnap(4242, "python3", 2**34),))
    files = (ModelFile("/models/x", "model.pt", 10, SHA),)
    return Snapshot(
        node="node-1", agent_version="0.1.0", collected_at=1700000000.5, interval_seconds=1.0,
        host=HostSnap(0.25, 1.5, 1.0, 0.5, 8 * 2**30, 64 * 2**30, None),
        gpu=GpuReport("nvml", None, (gpu,), "550.54.15", "12.4"),
        asr=AsrSnap(url="http://127.0.0.1:7860", up=True, probe_latency_seconds=0.002, pid=4242,
                    process_cpu_ratio=0.35, process_rss_bytes=2**30, in_flight=1,
                    in_flight_source="proxy" if requests else "connections",
                    requests=c.snapshot() if requests else None, python="3.10.14", packages=(("funasr", "1.2.7"),)),
        model=ModelSnap("ok", SHA, 1, 10, None, (ModelDirSnap("/models/x", "ok", SHA, 1, 10, None, files),)),
    )


def test_status_has_exactly_the_contract_keys_and_parses():
    body = json.loads(render_status(full_snapshot()))
    assert set(body) >= {"schema", "node", "agent_version", "collected_at", "interval_seconds", "host",
                         "gpu_source", "gpu_error", "gpus", "asr", "model", "versions"}
    assert set(body["host"]) == {"cpu_ratio", "load1", "load5", "load15", "memory_used_bytes",
                                 "memory_total_bytes", "error"}
    assert set(body["gpus"][0]) == {"index", "uuid", "name", "utilization_ratio", "memory_used_bytes",
                                    "memory_total_bytes", "temperature_celsius", "power_watts",
                                    "power_limit_watts", "processes", "clock_event_reasons",
                                    "ecc_errors_corrected_volatile", "ecc_errors_uncorrected_volatile"}
    req = body["asr"]["requests"]
    assert req["total"] == 3 and req["by_class"] == {"2xx": 2, "5xx": 1} and req["in_flight"] == 1
    assert req["audio_seconds_total"] == 40.0 and req["bytes_received_total"] == 3_000_000
    assert 0.25 < req["latency_p50_seconds"] <= 0.5 and 1.0 < req["latency_p95_seconds"] <= 2.5
    assert body["versions"]["packages"] == {"funasr": "1.2.7"} and body["versions"]["cuda"] == "12.4"
    status = parse_status(body)  # the operator side's own parser accepts it field for field
    assert status.node == "node-1" and status.gpu_source == "nvml"
    assert status.gpus[0].utilization_ratio == 0.93 and status.gpus[0].processes[0].pid == 4242
    assert status.asr.requests.by_class == {"2xx": 2, "5xx": 1} and status.asr.in_flight_source == "proxy"
    assert status.model.sha256 == SHA and status.model.dirs[0].state == "ok"
    assert status.host.memory_total_bytes == 64 * 2**30


def test_absent_readings_are_null_in_status_and_missing_in_metrics():
    s = Snapshot(node="n", agent_version="0.1.0", collected_at=1.0, interval_seconds=1.0, host=HostSnap(error="x"),
                 gpu=GpuReport("none", "NVML unavailable: no driver"), asr=AsrSnap(url="http://127.0.0.1:1", up=False,
                 error="refused"), model=ModelSnap("missing", error="no such directory: /m"))
    body = status_dict(s)
    assert body["host"]["cpu_ratio"] is None and body["gpus"] == [] and body["asr"]["requests"] is None
    assert body["asr"]["probe_latency_seconds"] is None and body["model"]["sha256"] is None
    names = {smp.name for fam in text_string_to_metric_families(render(s).decode()) for smp in fam.samples}
    for absent in ("asr_host_cpu_ratio", "asr_service_probe_latency_seconds", "asr_service_process_cpu_ratio",
                   "asr_service_in_flight_requests", "asr_requests_total", "asr_model_info", "asr_model_files",
                   "asr_gpu_utilization_ratio"):
        assert absent not in names
    assert {"asr_service_up", "asr_model_state", "asr_node_info"} <= names


def test_metric_collectors_on_fresh_registries():
    s = full_snapshot()
    reg = CollectorRegistry(auto_describe=False)
    for cls in (AgentMetrics, HostMetrics, AsrMetrics, RequestMetrics, ModelMetrics):
        reg.register(cls(lambda: s))
    v = reg.get_sample_value
    assert v("asr_node_info", {"node": "node-1", "agent_version": "0.1.0", "gpu_source": "nvml"}) == 1
    assert v("asr_host_memory_total_bytes") == 64 * 2**30 and v("asr_host_load1") == 1.5
    assert v("asr_service_up") == 1 and v("asr_service_in_flight_requests", {"source": "proxy"}) == 1
    assert v("asr_requests_total", {"class": "2xx"}) == 2 and v("asr_requests_total", {"class": "5xx"}) == 1
    assert v("asr_request_duration_seconds_bucket", {"le": "0.5"}) == 2
    assert v("asr_request_duration_seconds_bucket", {"le": "+Inf"}) == 3
    assert v("asr_request_duration_seconds_count") == 3
    assert v("asr_request_received_bytes_total") == 3_000_000 and v("asr_response_sent_bytes_total") == 900
    assert v("asr_audio_seconds_total") == 40.0
    assert v("asr_model_info", {"sha256": SHA}) == 1 and v("asr_model_dir_info", {"path": "/models/x", "sha256": SHA}) == 1
    assert v("asr_model_state", {"state": "ok"}) == 1 and v("asr_model_state", {"state": "hashing"}) == 0
    without = full_snapshot(requests=False)
    reg2 = CollectorRegistry(auto_describe=False)
    reg2.register(RequestMetrics(lambda: without))
    assert reg2.get_sample_value("asr_requests_total", {"class": "2xx"}) is None


def test_model_view_lists_files():
    body = model_dict(full_snapshot())
    assert body["files"] == [{"dir": "/models/x", "path": "model.pt", "size": 10, "sha256": SHA}]
    assert body["schema"] == 1 and body["state"] == "ok"


class Raising:
    url = "http://127.0.0.1:1"

    def collect(self, *a):
        raise RuntimeError("collector bug")


class Stub:
    url = "http://127.0.0.1:1"

    def __init__(self, value):
        self.value = value
        self.seen = []

    def collect(self, *a):
        self.seen.append(a)
        return self.value

    def poll(self):
        return self.value


async def test_collection_loop_isolates_failing_collectors():
    class AsyncAsr(Stub):
        async def collect(self):
            return self.value

    gpu = Stub(GpuReport("simulated"))
    loop = CollectionLoop(node="n", version="0.1.0", interval=1.0, host=Raising(), gpu=gpu,
                          asr=AsyncAsr(AsrSnap(url="u", up=True, in_flight=3)), model=Stub(ModelSnap("ok", SHA)),
                          clock=lambda: 42.0)
    assert loop.latest.gpu.error == "not collected yet"
    snap = await loop.collect_once()
    assert loop.latest is snap and snap.collected_at == 42.0
    assert "collector bug" in snap.host.error and snap.host.cpu_ratio is None
    assert snap.gpu.source == "simulated" and gpu.seen == [(3,)]  # in-flight feeds the simulated GPU
    assert snap.model.sha256 == SHA
    errors = {c.name: c.errors_total for c in snap.collectors}
    assert errors == {"host": 1, "gpu": 0, "asr": 0, "model": 0}
    assert snap.rendered("status", render_status) is snap.rendered("status", render_status)  # rendered once
