"""Budget: the agent's idle cost against node_exporter's, side by side in one run.

    .venv/bin/python tests/benchmarks/bench_agent_idle.py [idle seconds, default 60] [--gpu none|simulated|nvml]
        [--scrapes N (default 200)] [--node-exporter PATH]

Budgets (issue 17): agent at a 1 s interval with no scrapes <= 0.3 % of a core; RSS <= 1.5x node_exporter's;
/metrics scrape p99 <= node_exporter's.

Starts a simulated FunASR node, the agent (--interval 1s, a 12-file model dir) and node_exporter
(`apt-get install prometheus-node-exporter`) on free 127.0.0.1 ports. Both get 5 warm-up scrapes, then
neither is scraped for the idle window: CPU = (user+system delta) / wall from psutil. Then N scrapes of each
/metrics, alternating, one fresh connection per scrape as Prometheus makes them after an idle 15 s (the
keep-alive connection times out in between), latency from connect to the last byte. RSS is taken after.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from agent_bench_util import make_model_dir, pct

from support.agent_proc import agent, simnode, wait_status
from support.netutil import free_port, wait_for_port

MB = 1024 * 1024


def scrape_once(port: int, path: str = "/metrics", gzip: bool = False) -> tuple[float, int]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip else {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, (path, resp.status)
    return time.perf_counter() - t0, len(body)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> int:
    args = sys.argv[1:]

    def opt(name: str, default: str) -> str:
        if name in args:
            i = args.index(name)
            value = args[i + 1]
            del args[i:i + 2]
            return value
        return default

    gpu = opt("--gpu", "none")
    scrapes = int(opt("--scrapes", "200"))
    exporter = opt("--node-exporter", shutil.which("prometheus-node-exporter") or shutil.which("node_exporter") or "")
    idle = float(args[0]) if args else 60.0
    if not exporter:
        print("node_exporter not found: apt-get install -y prometheus-node-exporter (or --node-exporter PATH)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model_dir(tmp, 12, 200_000)
        ne_port = free_port()
        ne_log = open(tmp / "node_exporter.log", "wb")
        ne = subprocess.Popen([exporter, f"--web.listen-address=127.0.0.1:{ne_port}"], stdout=ne_log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            with simnode(tmp) as node, agent(tmp, node.url, "--model-dir", str(model), "--gpu", gpu,
                                             "--interval", "1s") as ag:
                assert wait_for_port("127.0.0.1", ne_port, timeout=20), "node_exporter did not start"
                wait_status(ag.url, lambda b: b["model"]["state"] == "ok" and b["asr"]["up"])
                ag_port = int(ag.url.rsplit(":", 1)[1])
                procs = {"agent": psutil.Process(ag.pid), "node_exporter": psutil.Process(ne.pid)}
                ports = {"agent": ag_port, "node_exporter": ne_port}
                for _ in range(5):  # warm-up: what a first scrape loads is loaded in both
                    for name in ports:
                        scrape_once(ports[name])
                time.sleep(3)
                c0 = {n: cpu_seconds(p) for n, p in procs.items()}
                k0 = procs["agent"].cpu_times().system
                t0 = time.monotonic()
                rss_idle = {n: [] for n in procs}
                while time.monotonic() - t0 < idle:
                    for n, p in procs.items():
                        rss_idle[n].append(p.memory_info().rss)
                    time.sleep(1.0)
                wall = time.monotonic() - t0
                cpu = {n: (cpu_seconds(p) - c0[n]) / wall for n, p in procs.items()}
                kernel = (procs["agent"].cpu_times().system - k0) / wall
                lat = {n: [] for n in procs}
                size = {}
                c1 = {n: cpu_seconds(p) for n, p in procs.items()}
                for _ in range(scrapes):
                    for n in ports:
                        seconds, size[n] = scrape_once(ports[n])
                        lat[n].append(seconds)
                per_scrape = {n: (cpu_seconds(p) - c1[n]) / scrapes for n, p in procs.items()}
                gz = {n: scrape_once(ports[n], gzip=True)[1] for n in ports}
                rss = {n: p.memory_info().rss for n, p in procs.items()}
                uss = {n: p.memory_full_info().uss for n, p in procs.items()}
                body = wait_status(ag.url, lambda b: True)
        finally:
            ne.terminate()
            ne.wait(5)
            ne_log.close()

    a, n = "agent", "node_exporter"

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}x" if y else "inf"

    print(f"idle {wall:.1f} s, no scrapes; agent --interval 1s --gpu {gpu} (gpu_source {body['gpu_source']}, "
          f"{body['model']['files']} model files, ASR probe on); node_exporter {exporter}; "
          f"{len(psutil.net_connections('tcp'))} TCP sockets on this host (the agent's socket walk grows with them)")
    print(f"{'':24}{'agent':>12}{'node_exp':>12}{'agent/ne':>10}")
    print(f"{'idle CPU % of a core':24}{cpu[a] * 100:12.3f}{cpu[n] * 100:12.3f}{ratio(cpu[a], cpu[n]):>10}")
    print(f"{'  of which kernel':24}{kernel * 100:12.3f}")
    print(f"{'idle RSS median MiB':24}{pct(rss_idle[a], 0.5) / MB:12.1f}{pct(rss_idle[n], 0.5) / MB:12.1f}"
          f"{ratio(pct(rss_idle[a], 0.5), pct(rss_idle[n], 0.5)):>10}")
    print(f"{'RSS after scrapes MiB':24}{rss[a] / MB:12.1f}{rss[n] / MB:12.1f}{ratio(rss[a], rss[n]):>10}")
    print(f"{'USS after scrapes MiB':24}{uss[a] / MB:12.1f}{uss[n] / MB:12.1f}{ratio(uss[a], uss[n]):>10}")
    for q in (0.5, 0.99):
        print(f"{f'/metrics p{int(q * 100)} ms':24}{pct(lat[a], q) * 1000:12.3f}{pct(lat[n], q) * 1000:12.3f}"
              f"{ratio(pct(lat[a], q), pct(lat[n], q)):>10}")
    print(f"{'CPU ms per scrape':24}{per_scrape[a] * 1000:12.3f}{per_scrape[n] * 1000:12.3f}"
          f"{ratio(per_scrape[a], per_scrape[n]):>10}")
    print(f"{'/metrics bytes':24}{size[a]:12d}{size[n]:12d}")
    print(f"{'  gzip bytes':24}{gz[a]:12d}{gz[n]:12d}")
    checks = {
        "idle CPU <= 0.3 % of a core": cpu[a] <= 0.003,
        "RSS <= 1.5x node_exporter's": max(rss[a], pct(rss_idle[a], 0.5)) <= 1.5 * max(rss[n], pct(rss_idle[n], 0.5)),
        "scrape p99 <= node_exporter's": pct(lat[a], 0.99) <= pct(lat[n], 0.99),
    }
    for what, ok in checks.items():
        print(f"budget {what}: {'OK' if ok else 'OVER'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
