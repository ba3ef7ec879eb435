"""Budget: /metrics and /v1/status p99 <= 2 ms at 50 scrapes/s from loopback (served from the snapshot).

    .venv/bin/python tests/benchmarks/bench_agent_scrape.py [seconds, default 30] [--nice | --rt]

--nice (root) runs the agent and this client at nice -10; --rt (root) under SCHED_FIFO priority 10 (both
sleep nearly all the time, so nothing is starved): either takes the CPU contention of other tenants of a
shared machine out of the tail. /healthz (a constant 3-byte body) is scraped alongside as the machine's
own baseline either way.

Starts a simulated FunASR node and the agent (1 s interval, ASR probe on, --gpu simulated, a model dir),
then scrapes each endpoint at a steady 50/s over one keep-alive connection and prints latency percentiles.
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

from agent_bench_util import make_model_dir, ms, pct

from support.agent_proc import agent, simnode, wait_status


PATHS = ("/metrics", "/v1/status", "/healthz")  # /healthz: constant tiny body = the machine's own noise


def scrape(port: int, seconds: float, rate: float = 50.0) -> dict[str, tuple[list[float], int]]:
    """`rate` ticks/s; each tick scrapes every path once (each endpoint sees 50 scrapes/s)."""
    conns = {p: http.client.HTTPConnection("127.0.0.1", port, timeout=5) for p in PATHS}
    out: dict[str, tuple[list[float], int]] = {p: ([], 0) for p in PATHS}
    period = 1.0 / rate
    next_at = time.perf_counter()
    end = next_at + seconds
    tick = 0
    while next_at < end:
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        order = list(conns.items())
        tick += 1
        order = order[tick % len(order):] + order[:tick % len(order)]  # each path goes first equally often
        for path, conn in order:
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            out[path][0].append(time.perf_counter() - t0)
            assert resp.status == 200
            out[path] = (out[path][0], len(body))
        next_at += period
    for conn in conns.values():
        conn.close()
    return out


def main() -> int:
    nice = "--nice" in sys.argv
    rt = "--rt" in sys.argv
    args = [a for a in sys.argv[1:] if a not in ("--nice", "--rt")]
    seconds = float(args[0]) if args else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model_dir(tmp, 12, 100_000)
        with simnode(tmp) as node, agent(tmp, node.url, "--model-dir", str(model), "--gpu", "simulated",
                                         "--interval", os.environ.get("BENCH_INTERVAL", "1s")) as ag:
            wait_status(ag.url, lambda b: b["model"]["state"] == "ok")
            port = int(ag.url.rsplit(":", 1)[1])
            if nice:
                os.setpriority(os.PRIO_PROCESS, ag.pid, -10)
                os.setpriority(os.PRIO_PROCESS, 0, -10)
            if rt:
                for tid in [t.id for t in psutil.Process(ag.pid).threads()] + [0]:
                    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(10))
            print(f"agent pid {ag.pid}; {seconds:g} s, 50 scrapes/s per endpoint, one keep-alive connection each; "
                  f"load average before: {os.getloadavg()[0]:.2f}{'; agent and client at nice -10' if nice else ''}{'; agent and client SCHED_FIFO 10' if rt else ''}")
            ok = True
            for path, (lat, size) in scrape(port, seconds).items():
                p99 = pct(lat, 0.99)
                ok &= p99 <= 0.002 or path == "/healthz"
                print(f"{path:11s} n={len(lat)} body={size} B  p50={ms(pct(lat, 0.5))}  p99={ms(p99)}  "
                      f"max={ms(max(lat))}  budget p99<=2 ms: {'OK' if p99 <= 0.002 else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
