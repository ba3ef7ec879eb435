"""Fleet-scale benchmark of the Prometheus source (issue 7): a real Prometheus scraping N synthetic agents.

    .venv/bin/python tests/benchmarks/bench_sources_prometheus.py [--agents 1000] [--rounds 20] [--scrape 2s]

One subprocess serves N agents' /metrics (the agreed asr_* names, one GPU each); /usr/bin/prometheus
scrapes them on a free loopback port; asrtop's PrometheusSource then builds every node's reading per
round. Prints wall and CPU per round (budget: <= 200 ms per round for 1,000 nodes), the answer sizes,
and, in the same run, the cost of the naive alternative (one query per node) for a few nodes as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from asrtop.config import NodeConfig  # noqa: E402
from asrtop.sources.prometheus import QUERIES, PrometheusSource  # noqa: E402
from bench_sources_agents import start_agents  # noqa: E402
from support.sources_prom import prometheus, wait_scraped  # noqa: E402
from support.sources_synth import raise_nofile  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--scrape", default="2s", help="Prometheus scrape interval (default 2s)")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    args = ap.parse_args()
    raise_nofile()
    print(f"load average {os.getloadavg()} on {os.cpu_count()} CPUs")
    proc, ports = start_agents(args.agents, 0)
    refresh = float(args.scrape.rstrip("s"))
    try:
        nodes = [NodeConfig(name, agent=f"http://127.0.0.1:{port}") for name, port in sorted(ports.items())]
        with tempfile.TemporaryDirectory() as tmp, \
                prometheus(args.prometheus, [f"127.0.0.1:{p}" for p in ports.values()], Path(tmp),
                           scrape_interval=args.scrape) as base:
            t0 = time.monotonic()
            await asyncio.to_thread(wait_scraped, base, args.agents, 180)
            print(f"{args.agents} agents scraped every {args.scrape} by {base} "
                  f"(all up after {time.monotonic() - t0:.1f}s); {len(QUERIES)} queries per round")
            src = PrometheusSource(base, refresh=refresh, timeout=10)
            try:
                await src.poll(nodes)  # warm-up: connections, Prometheus' caches; everybody's details
                sizes = {}
                # one slice of the fleet per round; the state series of the nodes known not to be "ok"
                for key, q in src.round_queries().items():
                    sizes[key] = len(await src.query(q))
                print("  series per query: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
                wall, cpu, qs, bs = [], [], [], []
                for _ in range(args.rounds):
                    c0, w0 = time.process_time(), time.perf_counter()
                    r = await src.poll(nodes)
                    wall.append(time.perf_counter() - w0)
                    cpu.append(time.process_time() - c0)
                    qs.append(src.last_query_seconds)
                    bs.append(src.last_build_seconds)
                    bad = [x.error for x in r.values() if x.error]
                    assert len(r) == args.agents and not bad, (len(r), bad[:3])
                    await asyncio.sleep(max(0.0, refresh - wall[-1]))
                print(f"  PrometheusSource.poll, {args.agents} nodes: wall/round mean {statistics.mean(wall)*1000:.0f} ms "
                      f"median {statistics.median(wall)*1000:.0f} ms max {max(wall)*1000:.0f} ms | "
                      f"asrtop CPU/round mean {statistics.mean(cpu)*1000:.0f} ms")
                print(f"  of which: queries answered and parsed (median) {statistics.median(qs)*1000:.0f} ms, "
                      f"joining/building readings (median) {statistics.median(bs)*1000:.0f} ms")
                slow = [(w, q, b) for w, q, b in zip(wall, qs, bs) if w > 0.2]
                print(f"  rounds over 200 ms: {len(slow)} of {len(wall)}"
                      + "".join(f"; {w*1000:.0f} ms (queries {q*1000:.0f}, building {b*1000:.0f})" for w, q, b in slow))
                # the naive way, one query per node (for 20 nodes, scaled): what "a handful" saves
                few = nodes[:20]
                w0 = time.perf_counter()
                for n in few:
                    await src.query(f'{{__name__=~"asr_.+",instance="{n.agent[7:]}"}}')
                per_node = (time.perf_counter() - w0) / len(few)
                print(f"  naive one-query-per-node: {per_node*1000:.1f} ms per node -> "
                      f"~{per_node * args.agents:.1f} s per round sequential "
                      f"(x{per_node * args.agents / statistics.mean(wall):.0f} the grouped queries)")
                ok = max(wall) <= 0.2
                print(f"\nbudget (issue 7): {args.agents}-node round <= 200 ms: max {max(wall)*1000:.0f} ms "
                      f"{'OK' if ok else 'OVER'} (median {statistics.median(wall)*1000:.0f} ms)")
            finally:
                await src.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
