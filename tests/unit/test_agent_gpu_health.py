"""NVML clock event (throttle) reasons and volatile ECC counts: decoded from pynvml's own constants, reported
where NVML offers them, absent (never 0) where it does not: in the snapshot, /v1/status and /metrics."""

from __future__ import annotations

import json
import re

import pynvml
import pytest

from asrtop.agentstatus import parse_status
from asrtop_agent.collectors.gpu import (CLOCK_EVENT_REASONS, NvmlGpuCollector, SimulatedGpuCollector,
                                         decode_clock_event_reasons)
from asrtop_agent.metrics import render
from asrtop_agent.snapshot import GpuReport
from asrtop_agent.status import render_status
from support.agent_nvml import HANDWRITTEN, REAL, REAL_IDLE, DriverBeforeR535, ReplayNvml, registry_for, snap_with


def collect(nv) -> GpuReport:
    return NvmlGpuCollector(nvml=nv).collect()


def _camel(name: str) -> str:
    return "".join(w.capitalize() for w in name.split("_"))


def test_reason_bits_are_pynvml_constants():
    for bit, name in CLOCK_EVENT_REASONS:
        # the current name, else (board_limit, reliability) the older one pynvml keeps them under
        const = getattr(pynvml, f"nvmlClocksEventReason{_camel(name)}", None)
        if const is None:
            const = getattr(pynvml, f"nvmlClocksThrottleReason{_camel(name)}")
        assert const == bit, name
    assert sum(b for b, _ in CLOCK_EVENT_REASONS) == pynvml.nvmlClocksThrottleReasonAll
    assert decode_clock_event_reasons(0) == ()
    assert decode_clock_event_reasons(0x60) == ("sw_thermal_slowdown", "hw_thermal_slowdown")
    assert decode_clock_event_reasons(0x1 | 0x1000) == ("gpu_idle", "unknown_0x1000")  # kept, not dropped


def test_reasons_and_ecc_present_where_nvml_reports_them():
    g0, g1 = collect(ReplayNvml.load(HANDWRITTEN)).gpus
    assert g0.clock_event_reasons == ("sw_power_cap",)
    assert len(g0.clock_event_reasons_supported) == 9 and "hw_thermal_slowdown" in g0.clock_event_reasons_supported
    assert (g0.ecc_errors_corrected_volatile, g0.ecc_errors_uncorrected_volatile) == (3, 0)  # a real 0 stays 0
    # GPU 1: reasons reported, its supported mask and its ECC counts NotSupported
    assert g1.clock_event_reasons == ("gpu_idle",) and g1.clock_event_reasons_supported is None
    assert (g1.ecc_errors_corrected_volatile, g1.ecc_errors_uncorrected_volatile) == (None, None)


def test_ecc_turned_off_or_not_supported_is_absent_not_zero():
    nv = ReplayNvml.load(HANDWRITTEN)
    for mode in ([0, 0], None):  # ECC turned off (the counts the fixture holds are not read); no ECC at all
        for d in nv.doc["devices"]:
            d["ecc_mode"] = mode
        for g in collect(nv).gpus:
            assert (g.ecc_errors_corrected_volatile, g.ecc_errors_uncorrected_volatile) == (None, None)
    assert "total_ecc_errors_volatile" not in nv.calls


@pytest.mark.parametrize("fixture", [REAL, REAL_IDLE])
def test_recordings_without_these_readings_stay_absent(fixture):
    (g,) = collect(ReplayNvml.load(fixture)).gpus
    assert g.clock_event_reasons is None and g.clock_event_reasons_supported is None
    assert g.ecc_errors_corrected_volatile is None and g.ecc_errors_uncorrected_volatile is None
    body = render(snap_with(collect(ReplayNvml.load(fixture)))).decode()
    assert "asr_gpu_clock_event_active{" not in body and "asr_gpu_ecc_errors_total{" not in body
    (r,) = parse_status(json.loads(render_status(snap_with(collect(ReplayNvml.load(fixture)))))).gpus
    assert r.clock_event_reasons is None and r.ecc_errors_corrected_volatile is None


def test_driver_before_r535_is_read_through_the_throttle_names():
    nv = DriverBeforeR535.load(HANDWRITTEN)
    g0 = collect(nv).gpus[0]
    assert g0.clock_event_reasons == ("sw_power_cap",) and len(g0.clock_event_reasons_supported) == 9
    assert "clocks_event_reasons_current (new name)" in nv.calls


def test_status_carries_the_keys_asrtop_parses():
    report = collect(ReplayNvml.load(HANDWRITTEN))
    body = json.loads(render_status(snap_with(report)))
    assert body["gpus"][0]["clock_event_reasons"] == ["sw_power_cap"]
    assert body["gpus"][0]["ecc_errors_corrected_volatile"] == 3
    assert body["gpus"][1]["ecc_errors_uncorrected_volatile"] is None
    r0, r1 = parse_status(body).gpus
    assert r0.clock_event_reasons == ("sw_power_cap",) and r1.clock_event_reasons == ("gpu_idle",)
    assert (r0.ecc_errors_corrected_volatile, r0.ecc_errors_uncorrected_volatile) == (3, 0)
    assert r1.ecc_errors_corrected_volatile is None


def test_metrics_one_sample_per_supported_reason_and_ecc_counter():
    report = collect(ReplayNvml.load(HANDWRITTEN))
    g0, g1 = report.gpus
    reg = registry_for(report)
    l0, l1 = {"gpu": "0", "uuid": g0.uuid}, {"gpu": "1", "uuid": g1.uuid}
    assert reg.get_sample_value("asr_gpu_clock_event_active", {**l0, "reason": "sw_power_cap"}) == 1
    assert reg.get_sample_value("asr_gpu_clock_event_active", {**l0, "reason": "hw_thermal_slowdown"}) == 0
    assert reg.get_sample_value("asr_gpu_clock_event_active", {**l1, "reason": "gpu_idle"}) == 1
    # GPU 1's supported reasons are unknown: no 0 is made up for them
    assert reg.get_sample_value("asr_gpu_clock_event_active", {**l1, "reason": "hw_thermal_slowdown"}) is None
    assert reg.get_sample_value("asr_gpu_ecc_errors_total", {**l0, "type": "corrected"}) == 3
    assert reg.get_sample_value("asr_gpu_ecc_errors_total", {**l0, "type": "uncorrected"}) == 0
    assert reg.get_sample_value("asr_gpu_ecc_errors_total", {**l1, "type": "corrected"}) is None
    body = render(snap_with(report)).decode()
    assert "# TYPE asr_gpu_ecc_errors_total counter" in body  # prometheus_client adds _total
    assert len(re.findall(r"^asr_gpu_clock_event_active\{gpu=\"0\"", body, re.M)) == 9
    assert len(re.findall(r"^asr_gpu_clock_event_active\{gpu=\"1\"", body, re.M)) == 1


def test_simulated_gpu_shows_the_simulated_nodes_leak_and_heat():
    faults = {"gpu_leaked_bytes": 0, "gpu_hot": False}
    col = SimulatedGpuCollector("node-7", slots=4, pid=lambda: 99, node_faults=lambda: dict(faults))
    calm = col.collect(0).gpus[0]
    assert calm.clock_event_reasons == () and calm.ecc_errors_corrected_volatile is None  # no ECC simulated
    faults.update(gpu_leaked_bytes=3 * 2**30, gpu_hot=True)
    hot = col.collect(0).gpus[0]
    assert hot.memory_used_bytes == calm.memory_used_bytes + 3 * 2**30
    assert hot.processes[0].gpu_memory_bytes == hot.memory_used_bytes
    assert hot.temperature_celsius >= 92 and "hw_thermal_slowdown" in hot.clock_event_reasons
    faults.update(gpu_leaked_bytes=500 * 2**30)  # leaks no further than the simulated GPU is big
    assert col.collect(0).gpus[0].memory_used_bytes == col.MEMORY_TOTAL
    gone = SimulatedGpuCollector("node-7", node_faults=lambda: None).collect(0).gpus[0]  # node not answering
    assert gone.memory_used_bytes == calm.memory_used_bytes and gone.temperature_celsius < 92
