"""GPU readings: NVML (real), simulated (demo only, labelled as such), or none.

pynvml is imported lazily (only with `--gpu nvml`): it is not needed for the agent's memory floor.
A reading NVML cannot take (NotSupported, N/A) is absent, never 0.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from ..snapshot import GpuProcessSnap, GpuReport, GpuSnap

# How often a failed nvmlInit (no driver yet, driver reloading) is retried.
NVML_RETRY_SECONDS = 30.0
NVML_VALUE_NOT_AVAILABLE = 2**64 - 1  # NVML's unsigned long long "N/A"

# NVML's clock event (throttle) reason bits, named as pynvml names them (nvmlClocksEventReason*; board_limit
# and reliability exist only under the older nvmlClocksThrottleReason* names). Checked against pynvml in tests.
CLOCK_EVENT_REASONS = (
    (0x001, "gpu_idle"), (0x002, "applications_clocks_setting"), (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"), (0x010, "sync_boost"), (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"), (0x080, "hw_power_brake_slowdown"), (0x100, "display_clock_setting"),
    (0x200, "board_limit"), (0x400, "reliability"),
)
_KNOWN_BITS = sum(bit for bit, _ in CLOCK_EVENT_REASONS)


def decode_clock_event_reasons(mask: int) -> tuple[str, ...]:
    """Names of the bits set in an NVML clock event reason mask; a bit this agent does not know is kept
    as unknown_0x... rather than dropped."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    rest = mask & ~_KNOWN_BITS
    return tuple(names + [f"unknown_{1 << i:#x}" for i in range(64) if rest >> i & 1])


def clock_event_mask(nv: Any, handle: Any, current: bool = True) -> int | None:
    """The raw reason mask (active now, or supported); None when NVML does not report it. Drivers before
    R535 lack the ...ClocksEventReasons functions (NVMLError_FunctionNotFound): their ...ThrottleReasons."""
    new, old = ((nv.nvmlDeviceGetCurrentClocksEventReasons, nv.nvmlDeviceGetCurrentClocksThrottleReasons) if current
                else (nv.nvmlDeviceGetSupportedClocksEventReasons, nv.nvmlDeviceGetSupportedClocksThrottleReasons))
    try:
        return int(new(handle))
    except nv.NVMLError as exc:
        if exc.value != nv.NVML_ERROR_FUNCTION_NOT_FOUND:
            return None
    try:
        return int(old(handle))
    except nv.NVMLError:
        return None


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
        # per GPU index: (handle, uuid, name, supported clock event mask), fixed while NVML stays initialised
        self._identity: dict[int, tuple] = {}
        self._count: int | None = None

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
        self._identity.clear()
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
        if count != self._count:  # a GPU fell off or came back: indexes may name other GPUs now
            self._identity.clear()
            self._count = count
        gpus, errors = [], []
        for i in range(count):
            try:
                gpus.append(self._device(nv, i))
            except nv.NVMLError as exc:  # a fallen-off GPU is reported, the others still are
                errors.append(f"GPU {i}: {_text(exc)}")
        return GpuReport(source="nvml", error="; ".join(errors) or None, gpus=tuple(gpus),
                         driver=self.driver, cuda=self.cuda)

    def _static(self, nv: Any, index: int) -> tuple:
        """Handle, UUID, name and supported clock event reasons of GPU `index`: read once, not every round
        (each NVML call costs, per GPU, per round); read again until UUID and name are both known."""
        known = self._identity.get(index)
        if known is None:
            h = nv.nvmlDeviceGetHandleByIndex(index)
            known = (h, self._opt(nv.nvmlDeviceGetUUID, h), self._opt(nv.nvmlDeviceGetName, h),
                     clock_event_mask(nv, h, current=False))
            if known[1] is not None and known[2] is not None:
                self._identity[index] = known
        return known

    def _device(self, nv: Any, index: int) -> GpuSnap:
        h, uuid, name, supported = self._static(nv, index)
        util = self._opt(nv.nvmlDeviceGetUtilizationRates, h)
        mem = self._opt(nv.nvmlDeviceGetMemoryInfo, h)
        temp = self._opt(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        power = self._opt(nv.nvmlDeviceGetPowerUsage, h)
        limit = self._opt(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        procs = self._opt(nv.nvmlDeviceGetComputeRunningProcesses, h) or ()
        active = clock_event_mask(nv, h, current=True)
        corrected, uncorrected = self._ecc(nv, h)
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
            clock_event_reasons=None if active is None else decode_clock_event_reasons(active),
            clock_event_reasons_supported=None if supported is None else decode_clock_event_reasons(supported),
            ecc_errors_corrected_volatile=corrected,
            ecc_errors_uncorrected_volatile=uncorrected,
        )

    def _ecc(self, nv: Any, h: Any) -> tuple[int | None, int | None]:
        """Volatile (since the driver loaded) corrected and uncorrected ECC error counts. A GPU without ECC,
        or with ECC turned off, has none: absent, not 0."""
        mode = self._opt(nv.nvmlDeviceGetEccMode, h)  # [current, pending]
        if mode is None or mode[0] != nv.NVML_FEATURE_ENABLED:
            return None, None
        counts = [self._opt(nv.nvmlDeviceGetTotalEccErrors, h, kind, nv.NVML_VOLATILE_ECC)
                  for kind in (nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)]
        return tuple(int(c) if c is not None else None for c in counts)  # type: ignore[return-value]


class NoGpuCollector:
    source = "none"

    def collect(self, in_flight: int | None = None) -> GpuReport:
        return GpuReport(source="none", error="GPU collection disabled (--gpu none)")


def simulated_node_faults(asr_url: str, timeout: float = 0.5) -> dict | None:
    """DEMO ONLY: the simulated node's own report of its simulated GPU (GET /_sim/stats: gpu_leaked_bytes,
    gpu_hot); None when it does not answer (a crashed process holds no GPU memory). A plain HTTP/1.0 GET on a
    socket (the body runs to the close): asked every round, where urllib's import and machinery cost more
    than the rest of the round."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(asr_url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
            sock.sendall(f"GET /_sim/stats HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode("latin-1"))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        if head.split(b" ", 2)[1:2] != [b"200"]:
            return None
        body = json.loads(payload)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


class SimulatedGpuCollector:
    """Demo only: derives one GPU's load from the node's in-flight requests, and its leaked memory and heat
    from the simulated node's fault knobs (`node_faults`, read from its /_sim/stats). Labelled simulated
    everywhere; a simulated GPU has no ECC (absent) and reports only thermal clock event reasons."""

    source = "simulated"
    MEMORY_TOTAL = 80 * 1024**3
    MODEL_MEMORY = 6 * 1024**3  # weights resident while idle
    PER_REQUEST_MEMORY = 1536 * 1024**2
    HOT_CELSIUS = 94.0
    THERMAL_REASONS = ("sw_thermal_slowdown", "hw_thermal_slowdown")

    def __init__(self, node: str, slots: int = 4, pid: Callable[[], int | None] = lambda: None,
                 node_faults: Callable[[], dict | None] = lambda: None):
        self.node, self.slots, self.pid, self.node_faults = node, max(1, slots), pid, node_faults

    def collect(self, in_flight: int | None = None) -> GpuReport:
        busy = max(0, in_flight or 0)
        util = min(1.0, 0.02 + 0.96 * busy / self.slots)
        faults = self.node_faults() or {}
        leaked = faults.get("gpu_leaked_bytes")
        leaked = leaked if isinstance(leaked, int) and not isinstance(leaked, bool) and leaked > 0 else 0
        hot = faults.get("gpu_hot") is True
        used = min(self.MEMORY_TOTAL,
                   self.MODEL_MEMORY + self.PER_REQUEST_MEMORY * min(busy, self.slots * 2) + leaked)
        pid = self.pid()
        procs = (GpuProcessSnap(pid, "simulated-asr", used),) if pid else ()
        gpu = GpuSnap(index=0, uuid=f"GPU-simulated-{self.node}-0", name="Simulated NVIDIA H100 80GB HBM3",
                      utilization_ratio=round(util, 3), memory_used_bytes=used,
                      memory_total_bytes=self.MEMORY_TOTAL,
                      temperature_celsius=self.HOT_CELSIUS if hot else round(34 + 30 * util, 1),
                      power_watts=round(70 + 560 * util, 1), power_limit_watts=700.0, processes=procs,
                      clock_event_reasons=self.THERMAL_REASONS if hot else (),
                      clock_event_reasons_supported=self.THERMAL_REASONS)
        return GpuReport(source="simulated", error=None, gpus=(gpu,), driver="simulated", cuda="simulated")


def make_gpu_collector(kind: str, node: str, psutil_mod: Any = None,
                       asr_pid: Callable[[], int | None] = lambda: None, asr_url: str | None = None) -> Any:
    if kind == "nvml":
        return NvmlGpuCollector(psutil_mod=psutil_mod)
    if kind == "simulated":
        faults = (lambda: simulated_node_faults(asr_url)) if asr_url else (lambda: None)
        return SimulatedGpuCollector(node, pid=asr_pid, node_faults=faults)
    return NoGpuCollector()
