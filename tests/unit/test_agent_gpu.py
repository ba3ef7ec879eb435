"""NVML collector replaying recorded H100 readings; simulated and disabled GPU sources; GPU metrics."""

from __future__ import annotations

import pynvml
from prometheus_client import CollectorRegistry

from asrtop_agent.collectors.gpu import NoGpuCollector, NvmlGpuCollector, SimulatedGpuCollector
from asrtop_agent.metrics import GpuMetrics
from asrtop_agent.snapshot import AsrSnap, GpuReport, HostSnap, ModelSnap, Snapshot
from asrtop_agent.tools.record_nvml import record
from support.agent_nvml import NVML_FUNCTIONS, ReplayNvml


class FakePsutil:
    class Process:
        def __init__(self, pid):
            if pid == 5151:
                raise ProcessLookupError(pid)  # e.g. a PID from another namespace
            self.pid = pid

        def name(self):
            return "python3"


def snap_with(gpu: GpuReport) -> Snapshot:
    return Snapshot(node="n1", agent_version="0.1.0", collected_at=1.0, interval_seconds=1.0, host=HostSnap(),
                    gpu=gpu, asr=AsrSnap(url="http://127.0.0.1:1"), model=ModelSnap())


def registry_for(gpu: GpuReport) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    s = snap_with(gpu)
    reg.register(GpuMetrics(lambda: s))
    return reg


def test_stand_in_only_uses_real_pynvml_names():
    missing = [n for n in NVML_FUNCTIONS if not hasattr(pynvml, n)]
    assert not missing


def test_nvml_collector_converts_recorded_readings():
    nv = ReplayNvml.load()
    report = NvmlGpuCollector(nvml=nv, psutil_mod=FakePsutil).collect()
    assert report.source == "nvml" and report.error is None
    assert report.driver == "550.54.15" and report.cuda == "12.4"
    g0, g1 = report.gpus
    assert g0.name == "NVIDIA H100 80GB HBM3" and g0.uuid.startswith("GPU-")
    assert g0.utilization_ratio == 0.93
    assert g0.memory_used_bytes == 24134877184 and g0.memory_total_bytes == 85520809984
    assert g0.temperature_celsius == 61.0
    assert g0.power_watts == 412.537 and g0.power_limit_watts == 700.0
    assert [(p.pid, p.name, p.gpu_memory_bytes) for p in g0.processes] == [(4242, "python3", 23488102400)]


def test_not_supported_readings_are_absent_not_zero():
    report = NvmlGpuCollector(nvml=ReplayNvml.load(), psutil_mod=FakePsutil).collect()
    g1 = report.gpus[1]
    assert g1.utilization_ratio is None
    assert g1.processes[0].gpu_memory_bytes is None and g1.processes[0].name is None
    reg = registry_for(report)
    assert reg.get_sample_value("asr_gpu_utilization_ratio", {"gpu": "0", "uuid": g0_uuid(report)}) == 0.93
    assert reg.get_sample_value("asr_gpu_utilization_ratio", {"gpu": "1", "uuid": g1.uuid}) is None
    assert reg.get_sample_value("asr_gpu_power_watts", {"gpu": "1", "uuid": g1.uuid}) == 71.204
    assert reg.get_sample_value("asr_gpu_process_memory_bytes",
                                {"gpu": "0", "uuid": g0_uuid(report), "pid": "4242", "process": "python3"}) == 23488102400
    assert reg.get_sample_value("asr_gpu_process_memory_bytes",
                                {"gpu": "1", "uuid": g1.uuid, "pid": "5151", "process": ""}) is None
    assert reg.get_sample_value("asr_gpu_info", {"gpu": "1", "uuid": g1.uuid, "name": "NVIDIA H100 80GB HBM3"}) == 1


def g0_uuid(report):
    return report.gpus[0].uuid


def test_missing_driver_gives_source_none_with_reason_and_retries_later():
    now = [0.0]
    nv = ReplayNvml.load(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    col = NvmlGpuCollector(nvml=nv, clock=lambda: now[0])
    r = col.collect()
    assert r.source == "none" and r.gpus == ()
    assert "NVML unavailable" in r.error and "Not Found" in r.error
    col.collect()
    assert nv.calls.count("init") == 1  # not hammered every interval
    nv.init_error = None  # the driver came back
    now[0] = 31.0
    assert col.collect().source == "nvml"


def test_raw_not_available_sentinel_is_absent():
    nv = ReplayNvml.load()
    nv.doc["devices"][0]["compute_processes"][0]["usedGpuMemory"] = 2**64 - 1
    report = NvmlGpuCollector(nvml=nv, psutil_mod=FakePsutil).collect()
    assert report.gpus[0].processes[0].gpu_memory_bytes is None


def test_recorder_writes_the_format_the_stand_in_replays():
    nv = ReplayNvml.load()
    doc = record(nv)
    assert doc["devices"] == nv.doc["devices"]
    assert doc["driver_version"] == nv.doc["driver_version"]
    assert doc["cuda_driver_version"] == nv.doc["cuda_driver_version"]


def test_simulated_gpu_follows_in_flight_and_says_so():
    col = SimulatedGpuCollector("node-7", slots=4, pid=lambda: 99)
    idle, busy = col.collect(0), col.collect(4)
    assert idle.source == busy.source == "simulated"
    g_idle, g_busy = idle.gpus[0], busy.gpus[0]
    assert g_idle.name.startswith("Simulated ") and "simulated" in g_idle.uuid
    assert g_idle.utilization_ratio < 0.1 < 0.9 < g_busy.utilization_ratio <= 1.0
    assert g_idle.memory_used_bytes < g_busy.memory_used_bytes <= g_busy.memory_total_bytes
    assert g_idle.power_watts < g_busy.power_watts <= g_busy.power_limit_watts
    assert g_busy.processes[0].pid == 99


def test_disabled_gpu_has_no_series():
    report = NoGpuCollector().collect()
    assert report.source == "none" and report.error
    reg = registry_for(report)
    assert reg.get_sample_value("asr_gpu_memory_total_bytes", {"gpu": "0", "uuid": ""}) is None
