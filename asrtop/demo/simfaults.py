"""The simulated node's fault knobs (POST /_sim/fault), checked all at once and applied all at once.

    {"error_rate": 0..1, "slowdown": >0, "gpu_leak_mb_s": 0..MAX_LEAK, "rss_leak_mb_s": 0..MAX_LEAK,
     "crash_loop": true | false | SECONDS, "gpu_hot": bool, "crash": true, "clear": true}

- gpu_leak_mb_s: the node's SIMULATED GPU memory grows at that rate (MiB/s) until the simulated GPU is full.
  The node holds no real GPU: it reports the figure in GET /_sim/stats ("gpu_leaked_bytes"), and the agent's
  simulated GPU collector (demo only) adds it to the memory it shows.
- rss_leak_mb_s: the node process REALLY allocates (and touches) memory at that rate (MiB/s), at most
  RSS_LEAK_CAP (1 GiB) in all; released on clear (or a rate of 0).
- crash_loop: the process exits (code 70) CRASH_AFTER seconds (or the number given) after each start (once
  it listens), until cleared. Kept in the node's fault-state file (--fault-state), so it survives the
  restart that the demo cluster (as systemd would) makes.
- gpu_hot: the simulated GPU reports HOT_CELSIUS and thermal clock event reasons.
- clear: everything back to normal (error_rate 0, slowdown 1, no leak, no crash loop, not hot); applied
  before the other knobs of the same request.
A bad value answers one line and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

MiB = 2**20
MAX_LEAK = 10_000.0  # MiB/s: enough for any demo, small enough to mean a typo above it
# real memory a process leak may take on the demo's machine: enough for a leak of a few MiB/s to last the
# leak rule's window (default 120 s + 30 s at >= 5 MB/s), small enough for a laptop
RSS_LEAK_CAP = 1024 * MiB
SIMULATED_GPU_BYTES = 80 * 1024**3  # the simulated GPU's size (the agent's SimulatedGpuCollector.MEMORY_TOTAL)
CRASH_AFTER = 3.0  # seconds from a start to the crash of a crash loop
CRASH_EXIT = 70
KNOBS = ("error_rate", "slowdown", "gpu_leak_mb_s", "rss_leak_mb_s", "crash_loop", "gpu_hot", "crash", "clear")


class FaultError(ValueError):
    """One line: which knob is wrong and what it takes."""


def _number(body: dict, key: str, ok: Callable[[float], bool], what: str) -> float | None:
    if key not in body:
        return None
    v = body[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
        raise FaultError(f"{key} must be {what}, got {v!r}")
    return float(v)


def _flag(body: dict, key: str) -> bool | None:
    if key not in body:
        return None
    if not isinstance(body[key], bool):
        raise FaultError(f"{key} must be true or false, got {body[key]!r}")
    return body[key]


def parse(body: Any) -> dict[str, Any]:
    """The knobs a request sets, checked; FaultError (one line) for the first bad one."""
    if not isinstance(body, dict):
        raise FaultError("expected a JSON object of fault knobs: " + ", ".join(KNOBS))
    unknown = sorted(set(body) - set(KNOBS))
    if unknown:
        raise FaultError(f"unknown fault knob {unknown[0]!r}; known: {', '.join(KNOBS)}")
    out: dict[str, Any] = {}
    for key, ok, what in (("error_rate", lambda v: 0 <= v <= 1, "a number in 0..1"),
                          ("slowdown", lambda v: 0 < v <= 1000, "a number in (0, 1000]"),
                          ("gpu_leak_mb_s", lambda v: 0 <= v <= MAX_LEAK, f"MiB/s in 0..{MAX_LEAK:g}"),
                          ("rss_leak_mb_s", lambda v: 0 <= v <= MAX_LEAK, f"MiB/s in 0..{MAX_LEAK:g}")):
        v = _number(body, key, ok, what)
        if v is not None:
            out[key] = v
    if "crash_loop" in body:
        v = body["crash_loop"]
        if isinstance(v, bool):
            out["crash_loop"] = CRASH_AFTER if v else None
        elif isinstance(v, (int, float)) and 0.2 <= v <= 600:
            out["crash_loop"] = float(v)
        else:
            raise FaultError(f"crash_loop must be true, false or seconds after start in 0.2..600, got {v!r}")
    for key in ("gpu_hot", "crash", "clear"):
        v = _flag(body, key)
        if v is not None:
            out[key] = v
    return out


class Leak:
    """A quantity growing at a rate since it was set, capped; a new rate goes on from the current value."""

    def __init__(self, cap: int, clock: Callable[[], float] = time.monotonic):
        self.cap, self.clock = cap, clock
        self.rate = 0.0  # bytes per second
        self._base, self._since = 0.0, clock()

    def set_rate(self, mib_s: float) -> None:
        self._base, self._since = self.value(), self.clock()
        self.rate = mib_s * MiB

    def value(self) -> int:
        return int(min(self.cap, self._base + self.rate * (self.clock() - self._since)))

    def clear(self) -> None:
        self.rate, self._base, self._since = 0.0, 0.0, self.clock()


class Ballast:
    """Real memory held by the process, grown to follow a Leak (bytes written, so they are resident)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.held = 0

    def grow_to(self, target: int) -> None:
        if target > self.held:
            self.chunks.append(b"\xa5" * (target - self.held))
            self.held = target

    def release(self) -> None:
        self.chunks.clear()  # large blocks go back to the system (munmap), so the RSS falls
        self.held = 0


class CrashLoopFile:
    """The crash loop's persistence: a JSON file the next start reads. No file: no crash loop."""

    def __init__(self, path: Path | None):
        self.path = path

    def read(self) -> float | None:
        if self.path is None:
            return None
        try:
            v = json.loads(self.path.read_text()).get("crash_loop")
        except (OSError, ValueError, AttributeError):
            return None
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None

    def write(self, seconds: float | None) -> None:
        if self.path is None and seconds is None:
            return  # nothing kept, nothing to clear
        if self.path is None:
            raise FaultError("crash_loop needs the node started with --fault-state FILE (the demo cluster does): "
                             "it must survive the restart")
        if seconds is None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"crash_loop": seconds}) + "\n")
        os.replace(tmp, self.path)


class NodeFaults:
    """One node's knobs. `settings` is the node's NodeSettings (error_rate and slowdown are read from it per
    request)."""

    def __init__(self, settings: Any, crash_file: CrashLoopFile):
        self.settings, self.crash_file = settings, crash_file
        self.gpu_leak = Leak(SIMULATED_GPU_BYTES)  # simulated: only reported, never allocated
        self.rss_leak = Leak(RSS_LEAK_CAP)  # real: the ballast follows it
        self.ballast = Ballast()
        self.gpu_hot = False
        self.crash_loop = crash_file.read()  # seconds from start to crash; None: no crash loop
        self._crash_at: Any = None  # the asyncio TimerHandle of the coming crash

    def keep(self, knobs: dict) -> None:
        """Write a crash loop change to the fault-state file first (FaultError / OSError: nothing changed)."""
        if knobs.get("clear") or "crash_loop" in knobs:
            self.crash_file.write(knobs.get("crash_loop") if "crash_loop" in knobs else None)

    def apply(self, knobs: dict) -> None:
        """Set checked knobs (parse); `clear` first, so {"clear": true, "slowdown": 3} leaves one fault."""
        s = self.settings
        if knobs.get("clear"):
            s.error_rate, s.slowdown, self.gpu_hot = 0.0, 1.0, False
            self.gpu_leak.clear()
            self._stop_rss_leak()
            self._set_crash_loop(None)
        s.error_rate = knobs.get("error_rate", s.error_rate)
        s.slowdown = knobs.get("slowdown", s.slowdown)
        self.gpu_hot = knobs.get("gpu_hot", self.gpu_hot)
        if "gpu_leak_mb_s" in knobs:
            self.gpu_leak.set_rate(knobs["gpu_leak_mb_s"])
        if knobs.get("rss_leak_mb_s") == 0:
            self._stop_rss_leak()
        elif "rss_leak_mb_s" in knobs:
            self.rss_leak.set_rate(knobs["rss_leak_mb_s"])
        if "crash_loop" in knobs:
            self._set_crash_loop(knobs["crash_loop"])

    def _stop_rss_leak(self) -> None:
        self.rss_leak.clear()
        self.ballast.release()

    def now(self) -> dict:
        """The knobs as they are now, and what they did (the simulated GPU's leaked bytes, the real ballast)."""
        s = self.settings
        return {"name": s.name, "error_rate": s.error_rate, "slowdown": s.slowdown, "gpu_leak_mb_s": self.gpu_leak.rate / MiB,
                "gpu_leaked_bytes": self.gpu_leak.value(), "rss_leak_mb_s": self.rss_leak.rate / MiB,
                "rss_leaked_bytes": self.ballast.held, "crash_loop": self.crash_loop, "gpu_hot": self.gpu_hot}

    def _set_crash_loop(self, seconds: float | None) -> None:
        """Crash `seconds` from now (None: no more)."""
        self.crash_loop = seconds
        if self._crash_at is not None:
            self._crash_at.cancel()
            self._crash_at = None
        if seconds is not None:
            self._crash_at = asyncio.get_running_loop().call_later(seconds, os._exit, CRASH_EXIT)

    async def run(self, name: str) -> None:
        """In the background once the node listens: a crash loop kept from before the restart (counted from
        now, so a slow start still answers a while, e.g. to a clear), the RSS leak."""
        if self.crash_loop is not None:
            print(f"simnode {name}: crash loop, exiting {self.crash_loop:g} s after start", flush=True)
            self._set_crash_loop(self.crash_loop)
        while True:
            if self.rss_leak.rate > 0:
                self.ballast.grow_to(self.rss_leak.value())
            await asyncio.sleep(0.2)
