"""GPU readings: NVML (real), simulated (demo only, labelled as such), or none.

pynvml is imported lazily (only with `--gpu nvml`): it is not needed for the agent's memory floor.
A reading NVML cannot take (NotSupported, N/A) is absent, never 0.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..snapshot import GpuProcessSnap, GpuReport, GpuSnap

# How often a failed nvmlInit (no driver yet, driver reloading) is retried.
NVML_RETRY_SECONDS = 30.0
NVML_VALUE_NOT_AVAILABLE = 2**64 - 1  # NVML's unsigned long long "N/A"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _process_name(psutil_mod: Any, pid: int) -> str | None:
    if psutil_mod is None:
        return None
    try:
        return psutil_mod.Process(pid).name()
    except Exception:  # gone, or another PID namespace (container): the name is unknown, not ""
        return None


class NvmlGpuCollector:
    source = "nvml"

    def __init__(self, nvml: Any = None, psutil_mod: Any = None, clock: Callable[[], float] = time.monotonic):
        self._nvml = nvml
        self.psutil = psutil_mod
        self.clock = clock
        self._ready = False
        self._init_error: str | None = None
        self._next_try = 0.0
        self.driver: str | None = None
        self.cuda: str | None = None

    def _module(self) -> Any:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py

            self._nvml = pynvml
        return self._nvml

    def _init(self) -> bool:
        if self._ready:
            return True
        now = self.clock()
        if now < self._next_try:
            return False
        self._next_try = now + NVML_RETRY_SECONDS
        try:
            nv = self._module()
            nv.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ImportError
            self._init_error = f"NVML unavailable: {_text(exc) or type(exc).__name__}"
            return False
        self._ready, self._init_error = True, None
        self.driver = self._opt(nv.nvmlSystemGetDriverVersion)
        cuda = self._opt(nv.nvmlSystemGetCudaDriverVersion_v2)
        if isinstance(cuda, int):
            self.cuda = f"{cuda // 1000}.{(cuda % 1000) // 10}"
        if isinstance(self.driver, bytes):
            self.driver = _text(self.driver)
        return True

    def _opt(self, fn: Callable, *args: Any) -> Any:
        """One reading; absent (None) when NVML says NotSupported / N/A or fails for this field."""
        try:
            return fn(*args)
        except self._module().NVMLError:
            return None

    def collect(self, in_flight: int | None = None) -> GpuReport:
        if not self._init():
            return GpuReport(source="none", error=self._init_error)
        nv = self._nvml
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            return GpuReport(source="none", error=f"NVML device count failed: {_text(exc)}",
                             driver=self.driver, cuda=self.cuda)
        gpus, errors = [], []
        for i in range(count):
            try:
                gpus.append(self._device(nv, i))
            except nv.NVMLError as exc:  # a fallen-off GPU is reported, the others still are
                errors.append(f"GPU {i}: {_text(exc)}")
        return GpuReport(source="nvml", error="; ".join(errors) or None, gpus=tuple(gpus),
                         driver=self.driver, cuda=self.cuda)

    def _device(self, nv: Any, index: int) -> GpuSnap:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        util = self._opt(nv.nvmlDeviceGetUtilizationRates, h)
        mem = self._opt(nv.nvmlDeviceGetMemoryInfo, h)
        temp = self._opt(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        power = self._opt(nv.nvmlDeviceGetPowerUsage, h)
        limit = self._opt(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        procs = self._opt(nv.nvmlDeviceGetComputeRunningProcesses, h) or ()
        uuid, name = self._opt(nv.nvmlDeviceGetUUID, h), self._opt(nv.nvmlDeviceGetName, h)
        processes = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)  # None when NVML reports N/A (e.g. under MIG) ...
            if used is not None and used >= NVML_VALUE_NOT_AVAILABLE:
                used = None  # ... or the raw N/A sentinel, as older nvidia-ml-py versions pass it through
            processes.append(GpuProcessSnap(int(p.pid), _process_name(self.psutil, int(p.pid)),
                                            int(used) if used is not None else None))
        return GpuSnap(
            index=index,
            uuid=_text(uuid) if uuid is not None else None,
            name=_text(name) if name is not None else None,
            utilization_ratio=util.gpu / 100.0 if util is not None else None,
            memory_used_bytes=int(mem.used) if mem is not None else None,
            memory_total_bytes=int(mem.total) if mem is not None else None,
            temperature_celsius=float(temp) if temp is not None else None,
            power_watts=power / 1000.0 if power is not None else None,  # NVML reports milliwatts
            power_limit_watts=limit / 1000.0 if limit is not None else None,
            processes=tuple(processes),
        )


class NoGpuCollector:
    source = "none"

    def collect(self, in_flight: int | None = None) -> GpuReport:
        return GpuReport(source="none", error="GPU collection disabled (--gpu none)")


class SimulatedGpuCollector:
    """Demo only: derives one GPU's load from the node's in-flight requests. Labelled simulated everywhere."""

    source = "simulated"
    MEMORY_TOTAL = 80 * 1024**3
    MODEL_MEMORY = 6 * 1024**3  # weights resident while idle
    PER_REQUEST_MEMORY = 1536 * 1024**2

    def __init__(self, node: str, slots: int = 4, pid: Callable[[], int | None] = lambda: None):
        self.node, self.slots, self.pid = node, max(1, slots), pid

    def collect(self, in_flight: int | None = None) -> GpuReport:
        busy = max(0, in_flight or 0)
        util = min(1.0, 0.02 + 0.96 * busy / self.slots)
        used = min(self.MEMORY_TOTAL, self.MODEL_MEMORY + self.PER_REQUEST_MEMORY * min(busy, self.slots * 2))
        pid = self.pid()
        procs = (GpuProcessSnap(pid, "simulated-asr", used),) if pid else ()
        gpu = GpuSnap(index=0, uuid=f"GPU-simulated-{self.node}-0", name="Simulated NVIDIA H100 80GB HBM3",
                      utilization_ratio=round(util, 3), memory_used_bytes=used,
                      memory_total_bytes=self.MEMORY_TOTAL, temperature_celsius=round(34 + 30 * util, 1),
                      power_watts=round(70 + 560 * util, 1), power_limit_watts=700.0, processes=procs)
        return GpuReport(source="simulated", error=None, gpus=(gpu,), driver="simulated", cuda="simulated")


def make_gpu_collector(kind: str, node: str, psutil_mod: Any = None,
                       asr_pid: Callable[[], int | None] = lambda: None) -> Any:
    if kind == "nvml":
        return NvmlGpuCollector(psutil_mod=psutil_mod)
    if kind == "simulated":
        return SimulatedGpuCollector(node, pid=asr_pid)
    return NoGpuCollector()
