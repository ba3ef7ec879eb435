"""Host facts through psutil: CPU ratio over the last interval, load average, memory."""

from __future__ import annotations

from typing import Any

from ..snapshot import HostSnap


class HostCollector:
    def __init__(self, psutil_mod: Any = None):
        if psutil_mod is None:
            import psutil as psutil_mod
        self.psutil = psutil_mod
        # cpu_percent(None) compares with the previous call; prime it so the first round is meaningful.
        try:
            self.psutil.cpu_percent(interval=None)
        except Exception:
            pass

    def collect(self) -> HostSnap:
        errors = []
        cpu = load = mem = None
        try:
            cpu = self.psutil.cpu_percent(interval=None) / 100.0
        except Exception as exc:
            errors.append(f"cpu: {exc}")
        try:
            load = self.psutil.getloadavg()
        except Exception as exc:
            errors.append(f"load: {exc}")
        try:
            vm = self.psutil.virtual_memory()
            mem = (int(vm.total - vm.available), int(vm.total))
        except Exception as exc:
            errors.append(f"memory: {exc}")
        return HostSnap(
            cpu_ratio=cpu,
            load1=load[0] if load else None,
            load5=load[1] if load else None,
            load15=load[2] if load else None,
            memory_used_bytes=mem[0] if mem else None,
            memory_total_bytes=mem[1] if mem else None,
            error="; ".join(errors) or None,
        )
