"""Budget: agent RSS <= 45 MB and CPU <= 1 % of one core at a 1 s interval (no GPU, ASR probe on).

    .venv/bin/python tests/benchmarks/bench_agent_resources.py [seconds, default 30] [--gpu nvml|none]

--gpu nvml (the default mode) on a machine without a driver imports pynvml and reports gpu_source "none".

Starts a simulated FunASR node and the agent (--gpu none, --interval 1s, a 12-file model dir), lets it
warm up, then samples the agent process with psutil: CPU = (user+system time delta) / wall time, RSS max.
A Prometheus-like scrape of /metrics and /v1/status every 5 s is included.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from agent_bench_util import make_model_dir, pct

from support.agent_proc import agent, simnode, wait_status


def main() -> int:
    args = sys.argv[1:]
    gpu = "none"
    if "--gpu" in args:
        gpu = args.pop(args.index("--gpu") + 1)
        args.remove("--gpu")
    seconds = float(args[0]) if args else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model_dir(tmp, 12, 200_000)
        with simnode(tmp) as node, agent(tmp, node.url, "--model-dir", str(model), "--gpu", gpu,
                                         "--interval", "1s") as ag:
            wait_status(ag.url, lambda b: b["model"]["state"] == "ok" and b["asr"]["up"])
            proc = psutil.Process(ag.pid)
            time.sleep(3)  # warm-up: first rounds, imports done
            t0, c0 = time.monotonic(), proc.cpu_times()
            rss, next_scrape = [], time.monotonic()
            while time.monotonic() - t0 < seconds:
                rss.append(proc.memory_info().rss)
                if time.monotonic() >= next_scrape:
                    httpx.get(ag.url + "/metrics", timeout=5)
                    httpx.get(ag.url + "/v1/status", timeout=5)
                    next_scrape += 5
                time.sleep(0.5)
            wall, c1 = time.monotonic() - t0, proc.cpu_times()
            cpu = (c1.user + c1.system - c0.user - c0.system) / wall
            body = httpx.get(ag.url + "/v1/status", timeout=5).json()
            uss = proc.memory_full_info().uss
    mb = 1024 * 1024
    print(f"agent over {wall:.1f} s at 1 s interval (ASR probe on, --gpu {gpu} -> gpu_source {body['gpu_source']}, "
          f"{body['model']['files']} model files)")
    print(f"CPU: {cpu * 100:.3f} % of one core   budget <= 1 %: {'OK' if cpu <= 0.01 else 'OVER'}")
    print(f"RSS: max {max(rss) / mb:.1f} MiB, median {pct(rss, 0.5) / mb:.1f} MiB, USS {uss / mb:.1f} MiB   "
          f"budget <= 45 MB: {'OK' if max(rss) <= 45e6 else 'OVER'}")
    print(f"collector durations: { {k: round(v['duration_seconds'] * 1000, 3) for k, v in body['collectors'].items()} } ms")
    return 0 if cpu <= 0.01 and max(rss) <= 45e6 else 1


if __name__ == "__main__":
    sys.exit(main())
