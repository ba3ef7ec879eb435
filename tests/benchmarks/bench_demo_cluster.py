"""Budgets: a 4-node demo cluster is ready in <= 5 s and torn down in <= 2 s (this 2-core machine).

    .venv/bin/python tests/benchmarks/bench_demo_cluster.py [--nodes 4] [--runs 5]

"Ready" means every node answers /health, every agent answers /v1/status and HAProxy reports every server
UP with a passed L7 check. "Torn down" means every process reaped and the temp dir gone. Baseline in the
same run: one bare `python -c "import aiohttp"`, the least each of the 2N+1 Python children must pay.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import psutil

from asrtop.demo.cluster import DemoCluster


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--busy-streams", type=int, default=64)
    a = ap.parse_args()
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", "import aiohttp"], check=True)
    baseline = time.monotonic() - t
    ready, down = [], []
    for _ in range(a.runs):
        t0 = time.monotonic()
        c = DemoCluster(nodes=a.nodes).start()
        ready.append(time.monotonic() - t0)
        pids, workdir = c.pids(), c.workdir
        agents = sum(1 for n in c.nodes if n.agent_url)
        t1 = time.monotonic()
        c.stop()
        while not all(gone(p) for p in pids) or workdir.exists():
            time.sleep(0.005)
        down.append(time.monotonic() - t1)
    fmt = lambda xs: f"median {statistics.median(xs):.2f} s, max {max(xs):.2f} s"  # noqa: E731
    print(f"{a.nodes} nodes, {agents} agents, {a.runs} runs on {psutil.cpu_count()} cores")
    print(f"baseline: one python+aiohttp start {baseline:.2f} s")
    print(f"ready:    {fmt(ready)}  ({statistics.median(ready) / baseline:.1f}x baseline)  budget 5 s: "
          f"{'MET' if max(ready) <= 5 else 'MISSED'}")
    print(f"teardown: {fmt(down)}  budget 2 s: {'MET' if max(down) <= 2 else 'MISSED'}")
    busy = teardown_under_load(a.nodes, a.busy_streams)
    print(f"teardown with {a.busy_streams} streams in flight: {busy:.2f} s  budget 2 s: {'MET' if busy <= 2 else 'MISSED'}")
    return 0 if max(ready) <= 5 and max(down) <= 2 and busy <= 2 else 1


def teardown_under_load(nodes: int, streams: int) -> float:
    """Stop the cluster while `streams` long requests are in flight (nodes must not wait for them)."""
    import threading

    from asrtop.demo.load import LoadGenerator

    c = DemoCluster(nodes=nodes, slots=64, rtf=0.5).start()
    gen = LoadGenerator(c.url, streams, duration=30, clip_seconds=(30, 60))
    t = threading.Thread(target=gen.run, daemon=True)
    t.start()
    while sum((c.node_stats(i) or {}).get("in_flight", 0) for i in range(nodes)) < streams:
        time.sleep(0.05)
    pids, workdir = c.pids(), c.workdir
    t1 = time.monotonic()
    c.stop()
    while not all(gone(p) for p in pids) or workdir.exists():
        time.sleep(0.005)
    took = time.monotonic() - t1
    gen.stop()
    t.join(10)
    return took


if __name__ == "__main__":
    sys.exit(main())
