"""Figures for the reliability issue: agent death -> stale mark -> recovery, and node death -> HAProxy DOWN.

    .venv/bin/python tests/benchmarks/bench_reliability_faults.py [--runs 5] [--refresh 1.0]

On a 3-node demo cluster (real agents, real HAProxy): SIGKILL node-2's agent and take a snapshot every
`refresh` seconds, as the TUI does, until node-2 is stale; restart the agent on the same port and poll
until it is fresh. The stale rule is "no good answer for 3 refresh intervals" (asrtop.fleet), so the
expected floor is 3 x refresh, reported beside the figures as the baseline. Then SIGKILL node-1's ASR
process under no load and time until HAProxy's health check marks it DOWN (inter 500 ms, fall 2).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import statistics
import time

from asrtop.balancers.factory import build_balancers
from asrtop.config import load_config
from asrtop.demo.cluster import DemoCluster
from asrtop.fleet import STALE_AFTER_MISSED
from asrtop.sources.factory import build_fleet_source


async def until(source, pred, refresh: float, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        started = time.monotonic()
        if pred(await source.snapshot()):
            return time.monotonic() - t0
        await asyncio.sleep(max(0.0, refresh - (time.monotonic() - started)))
    raise RuntimeError("timed out")


async def agent_cycle(c: DemoCluster, refresh: float, runs: int) -> tuple[list[float], list[float]]:
    cfg = dataclasses.replace(load_config(c.config_path), refresh=refresh)
    source = build_fleet_source(cfg, build_balancers(cfg))
    stale, fresh = [], []
    try:
        await until(source, lambda s: all(not n.stale for n in s.nodes), refresh)
        for _ in range(runs):
            victim = c.nodes[1]
            victim.agent_proc.send_signal(signal.SIGKILL)
            victim.agent_proc.wait(5)
            stale.append(await until(source, lambda s: s.node(victim.name).stale, refresh))
            c._start_agent(victim)
            fresh.append(await until(source, lambda s: not s.node(victim.name).stale
                                     and s.node(victim.name).agent.error is None, refresh))
    finally:
        await source.close()
    return stale, fresh


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--refresh", type=float, default=1.0)
    a = ap.parse_args()
    with DemoCluster(nodes=3, agent_interval="1s") as c:
        stale, fresh = asyncio.run(agent_cycle(c, a.refresh, a.runs))
        t = time.monotonic()
        c.kill_node(0, signal.SIGKILL)
        while not c.server_states()["node-1"]["status"].startswith("DOWN"):
            time.sleep(0.01)
        down = time.monotonic() - t
    fmt = lambda xs: f"mean {statistics.mean(xs):.2f} s, min {min(xs):.2f} s, max {max(xs):.2f} s"  # noqa: E731
    print(f"refresh {a.refresh:g} s, stale after {STALE_AFTER_MISSED} missed: baseline (floor) "
          f"{STALE_AFTER_MISSED * a.refresh:.2f} s; {a.runs} runs")
    print(f"agent SIGKILL -> row stale:        {fmt(stale)}  (ratio to floor {statistics.mean(stale) / (STALE_AFTER_MISSED * a.refresh):.2f})")
    print(f"agent restart -> row fresh again:  {fmt(fresh)}  (includes the agent's own start-up)")
    print(f"node SIGKILL -> HAProxy DOWN:      {down:.2f} s (check inter 500 ms, fall 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
