"""NVML collector replaying REAL H200 readings (idle and under load, cross-checked against nvidia-smi and
the real agent's /v1/status of the same run) and hand-written H100/MIG shapes; simulated and disabled GPU
sources; GPU metrics."""

from __future__ import annotations

import json
import re

import pynvml
import pytest

from asrtop.agentstatus import parse_status
from asrtop_agent.collectors.gpu import NoGpuCollector, NvmlGpuCollector, SimulatedGpuCollector
from asrtop_agent.tools.record_nvml import record
from support.agent_nvml import (ALL_FIXTURES, FIXTURES, HANDWRITTEN, NVML_FUNCTIONS, REAL, REAL_IDLE,
                                ReplayNvml, registry_for)

MiB = 2**20
NEW_READINGS = ("clocks_event_reasons_current", "clocks_event_reasons_supported", "ecc_mode",
                "total_ecc_errors_volatile")


class FakePsutil:
    class Process:
        def __init__(self, pid):
            if pid == 5151:
                raise ProcessLookupError(pid)  # e.g. a PID from another namespace
            self.pid = pid

        def name(self):
            return "python3"


def test_stand_in_only_uses_real_pynvml_names():
    missing = [n for n in NVML_FUNCTIONS if not hasattr(pynvml, n)]
    assert not missing


class CallLog:
    """Wraps an NVML module and notes every nvml* name read from it."""

    def __init__(self, nv):
        self._nv, self.names = nv, set()

    def __getattr__(self, name):
        if name.startswith("nvml"):
            self.names.add(name)
        return getattr(self._nv, name)


def test_recorder_stores_every_nvml_call_the_collector_makes():
    collector_nv, recorder_nv = CallLog(ReplayNvml.load()), CallLog(ReplayNvml.load())
    NvmlGpuCollector(nvml=collector_nv, psutil_mod=FakePsutil).collect()
    record(recorder_nv)
    assert collector_nv.names <= recorder_nv.names
    assert collector_nv.names <= set(NVML_FUNCTIONS)  # and the stand-in replays each of them


def _expected_cuda(v: int) -> str:
    major, minor = divmod(v, 1000)
    return f"{major}.{minor // 10}"


@pytest.mark.parametrize("fixture", [REAL, REAL_IDLE])
def test_nvml_collector_converts_real_h200_readings(fixture):
    nv = ReplayNvml.load(fixture)
    doc = nv.doc
    assert "record_nvml" in doc["_comment"] and "NOT RECORDED" not in doc["_comment"]
    report = NvmlGpuCollector(nvml=nv, psutil_mod=FakePsutil).collect()
    assert report.source == "nvml" and report.error is None
    assert report.driver == doc["driver_version"] and report.cuda == _expected_cuda(doc["cuda_driver_version"])
    assert len(report.gpus) == len(doc["devices"]) == 1
    for g, d in zip(report.gpus, doc["devices"]):
        assert g.index == d["index"] and g.uuid == d["uuid"] and g.name == d["name"] == "NVIDIA H200"
        assert g.utilization_ratio == d["utilization"]["gpu"] / 100
        assert g.memory_used_bytes == d["memory"]["used"] and g.memory_total_bytes == d["memory"]["total"]
        assert d["memory"]["used"] + d["memory"]["free"] == d["memory"]["total"]
        assert g.temperature_celsius == float(d["temperature_gpu"])
        assert g.power_watts == d["power_usage_mw"] / 1000
        assert g.power_limit_watts == d["enforced_power_limit_mw"] / 1000
        assert [(p.pid, p.name, p.gpu_memory_bytes) for p in g.processes] == \
            [(p["pid"], "python3", p["usedGpuMemory"]) for p in d["compute_processes"]]
    g = report.gpus[0]
    if fixture == REAL:  # a real compute process under a bf16 matmul load
        assert g.utilization_ratio > 0.9 and g.power_watts > 0.5 * g.power_limit_watts
        (proc,) = g.processes
        assert 20 * 2**30 <= proc.gpu_memory_bytes <= g.memory_used_bytes
    else:  # idle: a real 0 stays 0 (not absent), no process, yet NVML counts the driver's reserve as used
        assert g.utilization_ratio == 0.0 and g.processes == ()
        assert 0 < g.memory_used_bytes < 2 * 2**30


def _nvidia_smi_tables() -> list[dict]:
    """The idle and the under-load nvidia-smi tables of the recording run, the fields we compare."""
    text = (FIXTURES / "nvml_h200_nvidia_smi.txt").read_text()
    tables = []
    for part in re.split(r"^== .*$", text, flags=re.M)[1:]:
        head = re.search(r"Driver Version: (\S+)\s+CUDA Version: (\S+)", part)
        gpu = re.search(r"^\|\s+0\s+(NVIDIA [^|]*?)\s+(?:On|Off)\s+\|", part, re.M)
        row = re.search(r"(\d+)C\s+P\d+\s+(\d+)W\s*/\s*(\d+)W\s*\|\s*(\d+)MiB\s*/\s*(\d+)MiB\s*\|\s*(\d+)%", part)
        procs = [(int(pid), int(mib)) for pid, mib in
                 re.findall(r"^\|\s+0\s+N/A\s+N/A\s+(\d+)\s+C\s+\S+\s+(\d+)MiB", part, re.M)]
        temp, watts, cap, used, total, util = map(int, row.groups())
        tables.append(dict(driver=head[1], cuda=head[2], name=gpu[1], temp=temp, watts=watts, cap=cap,
                           used_mib=used, total_mib=total, util=util, procs=procs))
    return tables


def test_real_h200_readings_agree_with_nvidia_smi_of_the_same_second():
    idle, loaded = _nvidia_smi_tables()
    for smi, fixture in ((idle, REAL_IDLE), (loaded, REAL)):
        report = NvmlGpuCollector(nvml=ReplayNvml.load(fixture), psutil_mod=FakePsutil).collect()
        (g,) = report.gpus
        assert (report.driver, report.cuda, g.name) == (smi["driver"], smi["cuda"], smi["name"])
        assert g.memory_total_bytes == smi["total_mib"] * MiB
        assert g.power_limit_watts == smi["cap"]
        assert round(g.utilization_ratio * 100) == smi["util"]
        # a sample of another instant in the same second (idle: nvidia-smi 96 W vs NVML 77.9 W, 691 vs 689.8 W loaded)
        assert abs(g.power_watts - smi["watts"]) <= 0.05 * smi["cap"]
        assert abs(g.temperature_celsius - smi["temp"]) <= 2
        assert [(p.pid, p.gpu_memory_bytes) for p in g.processes] == [(pid, mib * MiB) for pid, mib in smi["procs"]]
        # nvmlDeviceGetMemoryInfo (v1) counts the driver's reserved memory (~0.6 GiB on this H200) as used;
        # nvidia-smi leaves it out (0 MiB when idle).
        reserve = g.memory_used_bytes - smi["used_mib"] * MiB
        assert 0 < reserve < 1024 * MiB


def test_real_h200_readings_as_metrics():
    nv = ReplayNvml.load()
    d = nv.doc["devices"][0]
    report = NvmlGpuCollector(nvml=nv, psutil_mod=FakePsutil).collect()
    reg = registry_for(report)
    labels = {"gpu": "0", "uuid": d["uuid"]}
    assert reg.get_sample_value("asr_gpu_utilization_ratio", labels) == d["utilization"]["gpu"] / 100
    assert reg.get_sample_value("asr_gpu_memory_used_bytes", labels) == d["memory"]["used"]
    assert reg.get_sample_value("asr_gpu_memory_total_bytes", labels) == d["memory"]["total"]
    assert reg.get_sample_value("asr_gpu_power_watts", labels) == d["power_usage_mw"] / 1000
    assert reg.get_sample_value("asr_gpu_power_limit_watts", labels) == d["enforced_power_limit_mw"] / 1000
    assert reg.get_sample_value("asr_gpu_info", {**labels, "name": d["name"]}) == 1
    for p in d["compute_processes"]:
        assert reg.get_sample_value("asr_gpu_process_memory_bytes",
                                    {**labels, "pid": str(p["pid"]), "process": "python3"}) == p["usedGpuMemory"]


def test_real_agent_status_of_the_recording_run_parses_and_matches_nvml():
    """The real asrtop-agent's /v1/status, fetched on the H200 8 s into the same load, read by asrtop."""
    st = parse_status(json.loads((FIXTURES / "agent_status_h200_nvml.json").read_text()))
    report = NvmlGpuCollector(nvml=ReplayNvml.load(), psutil_mod=FakePsutil).collect()
    (g,), (r,) = report.gpus, st.gpus
    assert st.gpu_source == "nvml" and st.gpu_error is None
    assert (st.versions["driver"], st.versions["cuda"]) == (report.driver, report.cuda)
    # facts that do not move between the two readings are equal ...
    assert (r.index, r.uuid, r.name) == (g.index, g.uuid, g.name)
    assert (r.memory_total_bytes, r.power_limit_watts) == (g.memory_total_bytes, g.power_limit_watts)
    assert r.memory_used_bytes == g.memory_used_bytes  # the 20 GiB allocation was held throughout
    assert [(p.pid, p.gpu_memory_bytes) for p in r.processes] == [(p.pid, p.gpu_memory_bytes) for p in g.processes]
    # ... the sampled ones agree within what a second apart allows
    assert abs(r.utilization_ratio - g.utilization_ratio) <= 0.05
    assert abs(r.power_watts - g.power_watts) <= 0.05 * g.power_limit_watts
    assert abs(r.temperature_celsius - g.temperature_celsius) <= 3
    assert 0 < r.memory_ratio < 1
    # the stand-in ASR service the agent attached to (by its listening port) is the GPU's compute process
    assert st.asr.up is True and st.asr.pid == r.processes[0].pid


def test_handwritten_h100_readings_convert():
    nv = ReplayNvml.load(HANDWRITTEN)
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
    report = NvmlGpuCollector(nvml=ReplayNvml.load(HANDWRITTEN), psutil_mod=FakePsutil).collect()
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


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_recorder_writes_the_format_the_stand_in_replays(fixture):
    nv = ReplayNvml.load(fixture)
    doc = record(nv, note="under test")
    assert doc["_comment"].startswith("Recorded with asrtop_agent.tools.record_nvml (nvidia-ml-py ")
    assert doc["_comment"].endswith(" under test")
    # a reading the fixture predates is recorded as null (NotSupported), as the stand-in replays it
    assert doc["devices"] == [{**{k: None for k in NEW_READINGS}, **d} for d in nv.doc["devices"]]
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
