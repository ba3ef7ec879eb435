"""Fleet-scale benchmark of the agent source (issue 7): N synthetic agents on loopback, polled every second.

    .venv/bin/python tests/benchmarks/bench_sources_agents.py [--agents 1000] [--rounds 10] [--no-httpx-shared]

One subprocess serves N+N/10 agents on distinct ports (realistic ~1.5 KB /v1/status, one GPU; the last
N/10 accept and never answer). This process polls them with:
  1. asrtop's AgentPoller (aiohttp, one session)           -- the budget: <= 50 % of a core, <= 500 ms/round
  2. AgentPoller with 10 % of the fleet black-holed         -- round must end by the timeout (0.8 s)
  3. httpx, one AsyncClient per agent                        -- DESIGN.md's comparison
  4. httpx, one shared AsyncClient                           -- (slow: one round only)
  5. bare asyncio streams with keep-alive                    -- the floor
and prints CPU seconds (time.process_time) and wall seconds per round, and ratios against aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from asrtop.config import NodeConfig  # noqa: E402
from asrtop.sources.agents import AgentPoller  # noqa: E402
from support.sources_synth import raise_nofile  # noqa: E402

REFRESH = 1.0


def start_agents(n: int, black: int) -> tuple[subprocess.Popen, dict[str, int]]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/support/sources_synth.py"), str(n), str(black)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("agent server failed to start")
    return proc, json.loads(line)


async def rounds(poll, n_rounds: int, label: str, check=None) -> dict:
    """Warm-up round (connections opened), then n_rounds at the refresh cadence; per-round CPU and wall."""
    await poll()
    cpu, wall = [], []
    for _ in range(n_rounds):
        t_start = time.monotonic()
        c0, w0 = time.process_time(), time.perf_counter()
        result = await poll()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        if check:
            check(result)
        await asyncio.sleep(max(0.0, REFRESH - (time.monotonic() - t_start)))
    out = {"label": label, "cpu_mean": statistics.mean(cpu), "cpu_max": max(cpu),
           "wall_mean": statistics.mean(wall), "wall_max": max(wall)}
    print(f"  {label:<42} CPU/round mean {out['cpu_mean']:.3f}s max {out['cpu_max']:.3f}s | "
          f"wall/round mean {out['wall_mean']:.3f}s max {out['wall_max']:.3f}s", flush=True)
    return out


def nodes_for(ports: dict[str, int], names: list[str]) -> list[NodeConfig]:
    return [NodeConfig(n, agent=f"http://127.0.0.1:{ports[n]}") for n in names]


async def bench_aiohttp(nodes, n_rounds, label, expect_errors=0):
    poller = AgentPoller(refresh=REFRESH)
    extra = []  # errors beyond the black-holed ones: agents the round's deadline cut off

    def check(r):
        assert len(r) == len(nodes), (len(r), len(nodes))
        errors = [x.error for x in r.values() if x.error]
        extra.append(len(errors) - expect_errors)

    try:
        out = await rounds(lambda: poller.poll(nodes), n_rounds, label, check)
    finally:
        await poller.close()
    out["unexpected_errors"] = extra
    print(f"  {'':<42} errors beyond the {expect_errors} black-holed, per round: {extra}")
    return out


async def bench_httpx_per_agent(nodes, n_rounds):
    import httpx

    sem = asyncio.Semaphore(256)
    clients = [httpx.AsyncClient(timeout=0.8) for _ in nodes]

    async def one(c, url):
        async with sem:
            r = await c.get(url)
            return json.loads(r.content)

    async def poll():
        return await asyncio.gather(*(one(c, n.agent + "/v1/status") for c, n in zip(clients, nodes)))
    try:
        return await rounds(poll, n_rounds, "httpx, one AsyncClient per agent")
    finally:
        for c in clients:
            await c.aclose()


async def bench_httpx_shared(nodes):
    import httpx

    sem = asyncio.Semaphore(256)
    limits = httpx.Limits(max_connections=len(nodes), max_keepalive_connections=len(nodes))
    client = httpx.AsyncClient(timeout=60, limits=limits)

    async def one(url):
        async with sem:
            r = await client.get(url)
            return json.loads(r.content)

    async def poll():
        return await asyncio.gather(*(one(n.agent + "/v1/status") for n in nodes))
    try:
        return await rounds(poll, 1, "httpx, one shared AsyncClient (1 round)")
    finally:
        await client.aclose()


async def bench_bare(nodes, n_rounds):
    """The floor: raw keep-alive HTTP/1.1 over asyncio streams, Content-Length framing only."""
    conns: dict[str, tuple] = {}
    sem = asyncio.Semaphore(256)

    async def one(n):
        async with sem:
            host, port = n.agent[len("http://"):].split(":")
            if n.name not in conns:
                conns[n.name] = await asyncio.open_connection(host, int(port))
            reader, writer = conns[n.name]
            writer.write(f"GET /v1/status HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            return json.loads(await reader.readexactly(length))

    async def poll():
        return await asyncio.gather(*(one(n) for n in nodes))
    try:
        return await rounds(poll, n_rounds, "bare asyncio streams (floor)")
    finally:
        for _, w in conns.values():
            w.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--no-httpx-shared", action="store_true", help="skip the slow shared-client round")
    args = ap.parse_args()
    print(f"RLIMIT_NOFILE {raise_nofile()}; load average {os.getloadavg()} on {os.cpu_count()} CPUs")
    n, black = args.agents, args.agents // 10
    proc, ports = start_agents(n + black, black)
    try:
        names = sorted(ports)
        good, holes = names[:n], names[n:]
        print(f"{n} agents on loopback ({len(holes)} more black-holed), refresh {REFRESH}s, "
              f"{args.rounds} rounds after a warm-up round")
        base = await bench_aiohttp(nodes_for(ports, good), args.rounds, "asrtop AgentPoller (aiohttp)")
        mixed = nodes_for(ports, good[: n - black] + holes)
        bh = await bench_aiohttp(mixed, max(3, args.rounds // 2), f"AgentPoller, {black} of {n} black-holed",
                                 expect_errors=black)
        floor = await bench_bare(nodes_for(ports, good), args.rounds)
        per = await bench_httpx_per_agent(nodes_for(ports, good), max(3, args.rounds // 3))
        shared = None if args.no_httpx_shared else await bench_httpx_shared(nodes_for(ports, good))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)

    print("\nbudgets (issue 7):")
    share = base["cpu_mean"] / REFRESH
    print(f"  CPU {share:.0%} of one core at 1 refresh/s (budget <= 50%): {'OK' if share <= 0.5 else 'OVER'}")
    print(f"  round wall max {base['wall_max']*1000:.0f} ms (budget <= 500 ms): "
          f"{'OK' if base['wall_max'] <= 0.5 else 'OVER'}")
    limit = AgentPoller(refresh=REFRESH).timeout
    print(f"  10% black-holed: round wall max {bh['wall_max']*1000:.0f} ms, timeout {limit*1000:.0f} ms "
          f"(budget: not past the timeout + 100 ms): {'OK' if bh['wall_max'] <= limit + 0.1 else 'OVER'}")
    print("ratios of CPU per round against aiohttp (same run):")
    for r in (floor, per, shared):
        if r:
            print(f"  {r['label']:<42} x{r['cpu_mean'] / base['cpu_mean']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
