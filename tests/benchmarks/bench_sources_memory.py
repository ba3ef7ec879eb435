"""asrtop's memory with 1,000 nodes and 10 minutes of history (issue 7 budget: <= 200 MB RSS).

    .venv/bin/python tests/benchmarks/bench_sources_memory.py [--agents 1000] [--history 600]

What the TUI process holds: textual imported, the AgentPoller with its session and last readings, the
current FleetSnapshot (nodes + an HA pair of balancers with 1,000 servers each) and asrtop.history's
FleetHistory of 600 samples (10 minutes at 1 s). Real polling rounds against N synthetic agents (separate
process), then the rest of the 600 samples recorded from fresh merges. For scale, the same run measures
what keeping whole snapshots instead would cost (30 retained, extrapolated to 600).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

MB = 1024 * 1024


def rss() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / MB


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--history", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=30, help="real polling rounds (the rest are re-merges)")
    args = ap.parse_args()
    r0 = rss()
    import textual.app  # noqa: F401  (the TUI's process has it loaded)

    from asrtop.balancers.base import AdminState, Health, ServerState
    from asrtop.config import NodeConfig
    from asrtop.fleet import BalancerReading, merge
    from asrtop.history import METRICS, FleetHistory
    from asrtop.sources.agents import AgentPoller
    from bench_sources_agents import start_agents
    from support.sources_synth import raise_nofile

    raise_nofile()
    r_import = rss()
    proc, ports = start_agents(args.agents, 0)
    try:
        nodes = [NodeConfig(name, server=name, address=f"127.0.0.1:{10000 + i}",
                            agent=f"http://127.0.0.1:{port}") for i, (name, port) in enumerate(sorted(ports.items()))]
        poller = AgentPoller(refresh=1.0)
        history = FleetHistory(args.history)

        def balancers(t: float) -> tuple[BalancerReading, ...]:
            servers = tuple(ServerState(name=n.name, address="127.0.0.1", port=10000 + i, admin=AdminState.READY,
                                        health=Health.UP, weight=3, backup=False, active_sessions=i % 7,
                                        request_rate=float(i % 11), errors_5xx_total=i % 3)
                            for i, n in enumerate(nodes))
            return (BalancerReading("haproxy-a", "haproxy", servers, None, t),
                    BalancerReading("haproxy-b", "haproxy", servers, None, t))

        snap = None
        r_before_poll = rss()
        for i in range(args.rounds):  # real rounds, as the TUI does: each snapshot replaces the last
            readings = await poller.poll(nodes)
            now = time.time()
            snap = merge(nodes, readings, balancers(now), now, 1.0)
            history.record(snap)
            if i == 0:
                r_first = rss()
        for i in range(args.rounds, args.history):
            now = time.time() + i
            snap = merge(nodes, poller.readings, balancers(now), now, 1.0)
            history.record(snap)
        r_full = rss()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # the alternative design, measured after the budget figures: whole snapshots kept as history
        kept = []
        r_k0 = rss()
        for i in range(args.rounds):
            readings = await poller.poll(nodes)
            kept.append(merge(nodes, readings, balancers(time.time()), time.time(), 1.0))
        per_kept = (rss() - r_k0) / len(kept)
        await poller.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)

    ring_bytes = len(history.nodes()) * len(METRICS) * history.capacity * 4
    print(f"{args.agents} nodes, {len(history)} history samples, 2 balancers x {args.agents} servers")
    print(f"  RSS at start {r0:.0f} MB; after importing textual+asrtop {r_import:.0f} MB")
    print(f"  after first polled snapshot {r_first:.0f} MB (+{r_first - r_before_poll:.0f} MB for readings, "
          f"snapshot, aiohttp connections)")
    print(f"  with {len(history)} samples of history {r_full:.0f} MB; history rings hold {ring_bytes / MB:.1f} MB; "
          f"peak RSS {peak:.0f} MB")
    print(f"  whole snapshots as history instead: ~{per_kept:.1f} MB each -> ~{per_kept * args.history:.0f} MB "
          f"for {args.history} (x{per_kept * args.history / max(ring_bytes / MB, 0.1):.0f} the rings)")
    ok = r_full <= 200
    print(f"\nbudget (issue 7): RSS with {args.agents} nodes and 10 min of history <= 200 MB: "
          f"{r_full:.0f} MB {'OK' if ok else 'OVER'}")


if __name__ == "__main__":
    asyncio.run(main())
