"""Dump real NVML readings in the fixture format the agent's NVML tests replay.

    python -m asrtop_agent.tools.record_nvml --note "under FunASR load" > tests/fixtures/nvml_NODE_recorded.json

(tests/fixtures/nvml_h200_recorded.json was recorded so, on an H200 under a torch bf16 matmul load.)

Run it on a GPU node (ideally while the ASR service is under load); --note is appended to the `_comment`
(which already says where, when and with which nvidia-ml-py it was recorded). Each reading is stored in the shape
the NVML call returns (milliwatts, bytes, percent); a reading NVML cannot take is stored as null, which
the replaying stand-in turns back into NVMLError_NotSupported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import sys
from typing import Any, Callable

from ..collectors.gpu import clock_event_mask


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _nvml_py_version() -> str:
    try:
        from importlib.metadata import version

        return f"nvidia-ml-py {version('nvidia-ml-py')}"
    except Exception:  # not installed as a distribution (a vendored copy): unknown, not guessed
        return "nvidia-ml-py (version unknown)"


def record(nv: Any, note: str | None = None) -> dict:
    def opt(fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except nv.NVMLError:
            return None

    nv.nvmlInit()
    try:
        devices = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            util = opt(nv.nvmlDeviceGetUtilizationRates, h)
            mem = opt(nv.nvmlDeviceGetMemoryInfo, h)
            procs = opt(nv.nvmlDeviceGetComputeRunningProcesses, h)
            ecc_mode = opt(nv.nvmlDeviceGetEccMode, h)
            devices.append({
                "index": i,
                "uuid": _text(opt(nv.nvmlDeviceGetUUID, h)),
                "name": _text(opt(nv.nvmlDeviceGetName, h)),
                "utilization": None if util is None else {"gpu": util.gpu, "memory": util.memory},
                "memory": None if mem is None else {"total": mem.total, "free": mem.free, "used": mem.used},
                "temperature_gpu": opt(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
                "power_usage_mw": opt(nv.nvmlDeviceGetPowerUsage, h),
                "enforced_power_limit_mw": opt(nv.nvmlDeviceGetEnforcedPowerLimit, h),
                "compute_processes": None if procs is None else [
                    {"pid": p.pid, "usedGpuMemory": getattr(p, "usedGpuMemory", None)} for p in procs],
                # raw masks (the new NVML names, or the pre-R535 ones where those are not found)
                "clocks_event_reasons_current": clock_event_mask(nv, h, current=True),
                "clocks_event_reasons_supported": clock_event_mask(nv, h, current=False),
                "ecc_mode": None if ecc_mode is None else list(ecc_mode),  # [current, pending]
                "total_ecc_errors_volatile": None if ecc_mode is None else {
                    kind: opt(nv.nvmlDeviceGetTotalEccErrors, h, code, nv.NVML_VOLATILE_ECC)
                    for kind, code in (("corrected", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                                       ("uncorrected", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED))},
            })
        return {
            "_comment": f"Recorded with asrtop_agent.tools.record_nvml ({_nvml_py_version()}) on "
                        f"{socket.gethostname()} at "
                        f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}."
                        + (f" {note}" if note else ""),
            "format": 1,
            "driver_version": _text(opt(nv.nvmlSystemGetDriverVersion)),
            "cuda_driver_version": opt(nv.nvmlSystemGetCudaDriverVersion_v2),
            "devices": devices,
        }
    finally:
        nv.nvmlShutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="record_nvml", description="Dump NVML readings as a replayable fixture.")
    ap.add_argument("--note", default=None, help="text appended to the fixture's _comment (e.g. the load)")
    args = ap.parse_args(argv)
    try:
        import pynvml
    except ImportError:
        print("record_nvml: pynvml (nvidia-ml-py) is not installed", file=sys.stderr)
        return 1
    try:
        doc = record(pynvml, note=args.note)
    except pynvml.NVMLError as exc:
        print(f"record_nvml: NVML unavailable: {exc}", file=sys.stderr)
        return 1
    json.dump(doc, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
