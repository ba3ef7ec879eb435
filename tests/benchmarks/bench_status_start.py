"""Budget: `asrtop status` on the 4-node demo <= 12x `python -c pass` (interpreter start), same run.

The real CLI as a subprocess against `DemoCluster(nodes=4)` (4 simulated nodes, their agents, a real
HAProxy), runs interleaved with the bare interpreter so that load from elsewhere hits both alike: wall
medians and their ratio. `--importtime` also prints what `asrtop status` loads, slowest first (min over
the runs of `python -X importtime`), to see what still loads and should not.

    .venv/bin/python tests/benchmarks/bench_status_start.py [RUNS] [--importtime]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from asrtop.demo.cluster import DemoCluster

BUDGET_RATIO = 12.0


def wall(argv: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return took


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
    with DemoCluster(nodes=4) as cluster:
        status = [sys.executable, "-m", "asrtop", "--config", str(cluster.config_path), "status"]
        bare = [sys.executable, "-c", "pass"]
        wall(status)  # warm: page cache, byte-compiled sources
        walls: dict[str, list[float]] = {"bare": [], "status": []}
        for _ in range(runs):
            walls["bare"].append(wall(bare))
            walls["status"].append(wall(status))
        b, s = statistics.median(walls["bare"]), statistics.median(walls["status"])
        print(f"asrtop status on the 4-node demo vs python -c pass, {runs} interleaved runs (wall median); "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"python -c pass  {b * 1000:6.1f} ms (min {min(walls['bare']) * 1000:.1f})")
        print(f"asrtop status   {s * 1000:6.1f} ms (min {min(walls['status']) * 1000:.1f})")
        ratio = s / b
        print(f"ratio {ratio:.1f}x, budget {BUDGET_RATIO:.0f}x: {'within' if ratio <= BUDGET_RATIO else 'OVER'}")
        if "--importtime" in sys.argv:
            mods = import_times(status, 5)
            print(f"{len(mods)} modules, {sum(m[0] for m in mods) / 1000:.1f} ms self time in all; slowest 25:")
            for own, cum, name in mods[:25]:
                print(f"  {own / 1000:6.2f} ms self {cum / 1000:7.2f} ms cumulative  {name}")


if __name__ == "__main__":
    main()
