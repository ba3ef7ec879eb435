"""An NVML stand-in that replays a fixture (tests/fixtures/nvml_*.json) through pynvml's call shapes.

nvml_h200_recorded.json (the default) and nvml_h200_idle_recorded.json are REAL readings of an H200
(record_nvml, under a torch bf16 matmul load and idle); nvml_h100_handwritten.json is written by hand for
the shapes that machine did not show (two GPUs, MIG: NotSupported utilization, N/A process memory; ECC
counts and clock event reasons, which the H200 recordings predate).

A reading the fixture lacks (recorded before record_nvml took it) replays as NotSupported: absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pynvml
from prometheus_client import CollectorRegistry

from asrtop_agent.metrics import GpuMetrics
from asrtop_agent.snapshot import AsrSnap, GpuReport, HostSnap, ModelSnap, Snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REAL = "nvml_h200_recorded.json"  # real H200 under load
REAL_IDLE = "nvml_h200_idle_recorded.json"  # the same H200, idle, no process
HANDWRITTEN = "nvml_h100_handwritten.json"  # MIG / NotSupported / N/A shapes, two GPUs
ALL_FIXTURES = (REAL, REAL_IDLE, HANDWRITTEN)


def _not_supported():
    return pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # pynvml maps this to NVMLError_NotSupported


class ReplayNvml:
    """Same names as pynvml; readings from the fixture; null -> NVMLError_NotSupported."""

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_ERROR_FUNCTION_NOT_FOUND = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_FEATURE_ENABLED = pynvml.NVML_FEATURE_ENABLED
    NVML_MEMORY_ERROR_TYPE_CORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC

    def __init__(self, doc: dict, init_error: int | None = None):
        self.doc = doc
        self.init_error = init_error
        self.calls: list[str] = []

    @classmethod
    def load(cls, name: str = REAL, **kw) -> "ReplayNvml":
        return cls(json.loads((FIXTURES / name).read_text()), **kw)

    def _value(self, handle: int, key: str):
        self.calls.append(key)
        value = self.doc["devices"][handle].get(key)
        if value is None:
            raise _not_supported()
        return value

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return self.doc["driver_version"]

    def nvmlSystemGetCudaDriverVersion_v2(self):
        return self.doc["cuda_driver_version"]

    def nvmlDeviceGetCount(self):
        return len(self.doc["devices"])

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.doc["devices"]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetUUID(self, h):
        return self._value(h, "uuid")

    def nvmlDeviceGetName(self, h):
        return self._value(h, "name")

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(**self._value(h, "utilization"))

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(**self._value(h, "memory"))

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._value(h, "temperature_gpu")

    def nvmlDeviceGetPowerUsage(self, h):
        return self._value(h, "power_usage_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._value(h, "enforced_power_limit_mw")

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(**p) for p in self._value(h, "compute_processes")]


    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._value(h, "clocks_event_reasons_current")

    def nvmlDeviceGetSupportedClocksEventReasons(self, h):
        return self._value(h, "clocks_event_reasons_supported")

    # the names before R535; the collector calls them only where the new ones are not found
    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return self._value(h, "clocks_event_reasons_current")

    def nvmlDeviceGetSupportedClocksThrottleReasons(self, h):
        return self._value(h, "clocks_event_reasons_supported")

    def nvmlDeviceGetEccMode(self, h):
        return list(self._value(h, "ecc_mode"))  # [current, pending]

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        assert counter_type == pynvml.NVML_VOLATILE_ECC
        kind = {pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "corrected",
                pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "uncorrected"}[error_type]
        count = self._value(h, "total_ecc_errors_volatile")[kind]
        if count is None:
            raise _not_supported()
        return count


class DriverBeforeR535(ReplayNvml):
    """A driver that lacks the ...ClocksEventReasons functions: pynvml raises FunctionNotFound for them."""

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        self.calls.append("clocks_event_reasons_current (new name)")
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    def nvmlDeviceGetSupportedClocksEventReasons(self, h):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)


NVML_FUNCTIONS = [n for n in dir(ReplayNvml) if n.startswith("nvml")]


# A snapshot around one GPU report, and a registry rendering its GPU metrics (the /metrics tests).
def snap_with(gpu: GpuReport) -> Snapshot:
    return Snapshot(node="n1", agent_version="0.1.0", collected_at=1.0, interval_seconds=1.0, host=HostSnap(),
                    gpu=gpu, asr=AsrSnap(url="http://127.0.0.1:1"), model=ModelSnap())


def registry_for(gpu: GpuReport) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    s = snap_with(gpu)
    reg.register(GpuMetrics(lambda: s))
    return reg
