"""Budget: the demo cluster sustains 200 concurrent streams from load.py with zero failures for 60 s.

    .venv/bin/python tests/benchmarks/bench_demo_load.py [--concurrency 200] [--duration 60] [--rtf 0.1] [--slots 64]

Prints the load report, per-node counts from the simnodes (received == answered), and the CPU the whole
cluster used. Exit 1 on any failure or any node-side count mismatch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import psutil

from asrtop.demo.cluster import DemoCluster
from asrtop.demo.load import LoadGenerator


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            t = psutil.Process(p).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--rtf", type=float, default=0.1)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--agents", action="store_true", help="also run the agents (default: off, to measure the data path)")
    a = ap.parse_args()
    with DemoCluster(nodes=a.nodes, slots=a.slots, queue=256, rtf=a.rtf, agents=a.agents or False) as c:
        gen = LoadGenerator(c.url, a.concurrency, duration=a.duration)
        pids = c.pids()
        cpu0, me0, t0 = cpu_seconds(pids), time.process_time(), time.monotonic()
        report = gen.run()
        wall = time.monotonic() - t0
        cpu = cpu_seconds(pids) - cpu0
        me = time.process_time() - me0
        stats = [c.node_stats(i) for i in range(len(c.nodes))]
    print(report.summary())
    print(f"cluster CPU {cpu:.1f} s ({cpu / wall:.2f} cores), load generator CPU {me:.1f} s ({me / wall:.2f} cores), "
          f"{os.cpu_count()} cores")
    mismatch = False
    for s in stats:
        print(f"  {s['name']}: received {s['received']} answered {s['answered']} by status {s['by_status']} "
              f"audio {s['audio_seconds']:.0f} s")
        mismatch |= s["received"] != s["answered"]
    sent_nodes = sum(s["received"] for s in stats)
    print(f"requests sent {report.sent}, received by nodes {sent_nodes}, failures {sum(report.failures.values())}")
    ok = not report.failures and not mismatch and sent_nodes == report.sent
    print("BUDGET", "MET" if ok else "MISSED", f"({a.concurrency} streams, {a.duration:.0f} s, zero failures)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
