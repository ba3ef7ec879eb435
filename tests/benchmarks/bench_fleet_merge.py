"""Budget: fleet.merge for 1,000 nodes x 2 balancers <= 5 ms CPU; 5,000 nodes <= 25 ms (linear).

Also the rest of one refresh's pure path, stage by stage (CPU, median of RUNS): the agents' answers joined to
nodes (AgentStatus per node, as the agent poller hands them over), merge, the wording both front ends show
(state counts, model line), the snapshot's model groups / target / primaries staying ready, node lookups by
name, the fleet's discovery join, and `asrtop status`'s table and JSON. Nodes carry addresses and the
balancers name their servers "host:port" (nginx's way; HAProxy's when generated), so every node is matched
by endpoint, not by name; one balancer lists its servers in reverse order. Each figure is printed per node
as a ratio to the 100-node run: ~1.0 is linear, a ratio growing with the size is not.

"merge" is a refresh's: the balancers' servers read again (new objects, new figures), their names and
endpoints as the last refresh's, so merge reuses the keys and matches it made then (fleet._ServerIndex.kept).
"merge, servers' names or endpoints changed" is the refresh after they changed (or the first one): those
made again.

    .venv/bin/python tests/benchmarks/bench_fleet_merge.py [RUNS]
"""

from __future__ import annotations

import gc
import itertools
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from asrtop import fleet  # noqa: E402
from asrtop.agentstatus import parse_status  # noqa: E402
from asrtop.balancers.base import AdminState, Health, ServerState  # noqa: E402
from asrtop.config import ClusterConfig, DiscoveryConfig, NodeConfig, discover_nodes  # noqa: E402
from asrtop.fleet import AgentReading, BalancerReading, merge, primaries_staying_ready  # noqa: E402
from asrtop.fleet_wording import model_line, state_counts  # noqa: E402
from asrtop.status_report import render_table, status_json  # noqa: E402

from support.sources_synth import SynthNode  # noqa: E402
from host_speed import host_speed, host_speed_line  # noqa: E402

SIZES = (100, 1000, 2000, 5000)
CHANGED = "merge, servers' names or endpoints changed"
BUDGET_MS = {1000: 5.0, 5000: 25.0}


def host(i: int) -> str:
    return f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"


def servers(n: int, reverse: bool) -> tuple[ServerState, ...]:
    out = [ServerState(f"{host(i)}:10095", host(i), 10095, 3, False, AdminState.READY, Health.UP, 2, 0, 1.5,
                       100, 0, 0.4, True) for i in range(n)]
    return tuple(reversed(out) if reverse else out)


def cpu_ms(fn, runs: int, gc_paused: bool = False, before=None) -> float:
    """Median CPU ms of fn(). gc_paused: without the cyclic collector's passes over the whole heap that fn's
    allocations set off (with N parsed statuses alive they are a third of a 5,000-node merge). before: called,
    not timed, before each run."""
    xs = []
    for _ in range(runs):
        if before is not None:
            before()  # not timed
        if gc_paused:
            gc.disable()
        t = time.process_time()
        fn()
        xs.append((time.process_time() - t) * 1000)
        gc.enable()
    return statistics.median(xs)


def stages(n: int, runs: int) -> dict[str, float]:
    nodes = tuple(NodeConfig(f"gpu-{i:05d}", address=f"{host(i)}:10095", agent=f"http://{host(i)}:10860")
                  for i in range(n))
    for cfg in nodes:
        cfg.endpoint_keys  # once per config load (as load_config's callers pay it), not in any stage below
    bodies = [SynthNode(c.name, i).status_body() for i, c in enumerate(nodes)]
    statuses = [parse_status(b) for b in bodies]
    now = time.time()
    # two refreshes' readings: equal servers, each its own objects (a refresh reads them again), taken in turn
    refreshes = [[BalancerReading("hx-a", "haproxy", servers(n, False), None, now),
                  BalancerReading("hx-b", "haproxy", servers(n, True), None, now)] for _ in range(2)]
    readings = refreshes[0]
    turn = itertools.cycle(refreshes)
    agents = {c.name: AgentReading(c.agent or "", s, now) for c, s in zip(nodes, statuses)}
    snap = merge(nodes, agents, readings, now)
    assert all(len(v.servers) == 2 for v in snap.nodes) and not snap.notes, snap.notes[:2]
    names = [c.name for c in nodes]
    discovery = ClusterConfig(None, name="bench", nodes=nodes[: n // 2], discovery=DiscoveryConfig(balancer="hx-a"))
    fresh = lambda: replace(snap)  # noqa: E731 (the same snapshot with nothing cached yet)
    out = {
        "parse_status (agents' answers)": cpu_ms(lambda: [parse_status(b) for b in bodies], runs),
        "discover_nodes (half configured)": cpu_ms(lambda: discover_nodes(discovery, list(readings[0].servers)),
                                                   runs),
        "merge": cpu_ms(lambda: merge(nodes, agents, next(turn), now), runs),
        "merge, cyclic GC paused": cpu_ms(lambda: merge(nodes, agents, next(turn), now), runs, gc_paused=True),
        # (an older asrtop without the kept keys: every merge makes them)
        CHANGED: cpu_ms(lambda: merge(nodes, agents, next(turn), now), runs, before=getattr(fleet, "_KEPT", {}).clear),
        "state_counts + model_line": cpu_ms(lambda: (s := fresh(), state_counts(s.nodes), model_line(s)), runs),
        "model_groups + primaries_staying_ready": cpu_ms(
            lambda: (s := fresh(), s.model_groups(), primaries_staying_ready(s, names[:10])), runs),
        "node(name) for every node": cpu_ms(lambda: (s := fresh(), [s.node(x) for x in names]), runs),
        "status table": cpu_ms(lambda: render_table(fresh()), runs),
        "status --json": cpu_ms(lambda: status_json(fresh(), "bench"), runs),
    }
    return out


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    before = host_speed()
    table = {n: stages(n, runs) for n in SIZES}
    after = host_speed()
    print(f"fleet refresh path, CPU ms (median of {runs}); x = per-node cost as a ratio to {SIZES[0]} nodes")
    print(f"{'stage':<42}" + "".join(f"{n:>18,}" for n in SIZES))
    for stage in table[SIZES[0]]:
        base = table[SIZES[0]][stage] / SIZES[0]
        cells = []
        for n in SIZES:
            ms = table[n][stage]
            ratio = (ms / n) / base if base > 0 else float("nan")
            cells.append(f"{ms:9.2f} ({ratio:4.1f}x)")
        print(f"{stage:<42}" + "".join(f"{c:>18}" for c in cells))
    for n, budget in BUDGET_MS.items():
        ms, paused = table[n]["merge"], table[n]["merge, cyclic GC paused"]
        print(f"merge {n:,} nodes x 2 balancers: {ms:.2f} ms CPU ({paused:.2f} without GC passes), budget "
              f"{budget:.0f} ms: {'within' if ms <= budget else 'OVER'}; the refresh after the servers' names or "
              f"endpoints changed (their keys and matches made again): {table[n][CHANGED]:.2f} ms")
    print(host_speed_line(before, after))


if __name__ == "__main__":
    main()
