"""Budget: `asrtop status` on the 4-node demo <= 12x `python -c pass` (interpreter start), same run.

The real CLI as a subprocess against `DemoCluster(nodes=4)` (4 simulated nodes, their agents, a real
HAProxy): the installed `asrtop` script as an operator runs it (`python -m asrtop` also loads runpy; printed
too), interleaved with the bare interpreter so that load from elsewhere hits both alike: wall medians and
their ratio, and CPU (user + system) medians. `--importtime` also prints what `asrtop status` loads, slowest first (min over
the runs of `python -X importtime`), to see what still loads and should not.

    .venv/bin/python tests/benchmarks/bench_status_start.py [RUNS] [--importtime]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

from asrtop.demo.cluster import DemoCluster

BUDGET_RATIO = 12.0


def wall(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run."""
    before = os.times()
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - t
    after = os.times()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return took, after.children_user + after.children_system - before.children_user - before.children_system


def import_times(argv: list[str], runs: int) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, module) per module `argv` imports, min over `runs` runs."""
    best: dict[str, tuple[int, int, str]] = {}
    for _ in range(runs):
        err = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True).stderr
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cum, name = line[12:].split("|")
            key = name.strip()
            seen = best.get(key)
            best[key] = (min(int(own), seen[0]) if seen else int(own), min(int(cum), seen[1]) if seen else int(cum),
                         key)
    return sorted(best.values(), reverse=True)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    runs = int(args[0]) if args else 25
    script = shutil.which("asrtop", path=os.path.dirname(sys.executable))
    with DemoCluster(nodes=4) as cluster:
        config = ["--config", str(cluster.config_path), "status"]
        runs_of = {"python -c pass": [sys.executable, "-c", "pass"],
                   "asrtop status": [script, *config] if script else [sys.executable, "-m", "asrtop", *config],
                   "python -m asrtop status": [sys.executable, "-m", "asrtop", *config]}
        for argv in runs_of.values():
            wall(argv)  # warm: page cache, byte-compiled sources
        took: dict[str, list[tuple[float, float]]] = {name: [] for name in runs_of}
        for _ in range(runs):
            for name, argv in runs_of.items():
                took[name].append(wall(argv))
        print(f"asrtop status on the 4-node demo vs python -c pass, {runs} interleaved runs (medians); "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        base_wall = statistics.median(w for w, _ in took["python -c pass"])
        base_cpu = statistics.median(c for _, c in took["python -c pass"])
        for name, xs in took.items():
            w, c = statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs)
            print(f"{name:<24} wall {w * 1000:6.1f} ms ({w / base_wall:4.1f}x, min {min(x[0] for x in xs) * 1000:.1f})"
                  f"   CPU {c * 1000:6.1f} ms ({c / base_cpu:4.1f}x)")
        ratio = statistics.median(w for w, _ in took["asrtop status"]) / base_wall
        print(f"asrtop status / python -c pass wall: {ratio:.1f}x, budget {BUDGET_RATIO:.0f}x: "
              f"{'within' if ratio <= BUDGET_RATIO else 'OVER'}")
        status = runs_of["python -m asrtop status"]
        if "--importtime" in sys.argv:
            mods = import_times(status, 5)
            print(f"{len(mods)} modules, {sum(m[0] for m in mods) / 1000:.1f} ms self time in all; slowest 25:")
            for own, cum, name in mods[:25]:
                print(f"  {own / 1000:6.2f} ms self {cum / 1000:7.2f} ms cumulative  {name}")


if __name__ == "__main__":
    main()
