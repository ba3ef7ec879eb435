"""Deterministic fake fleet for TUI tests and benchmarks: a FleetSource and a Controller, no I/O."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from asrtop.agentstatus import (AgentStatus, AsrReading, GpuProcess, GpuReading, HostReading, ModelReading,
                                RequestStats)
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.control import Action, ActionResult, BalancerOutcome, Plan
from asrtop.fleet import AgentReading, BalancerReading, FleetSnapshot, merge, primaries_staying_ready

T0 = 1_700_000_000.0  # fixed clock: screenshots and layouts must not depend on the time of day
GIB = 1024 ** 3
DIGEST_A = "a1b2c3d4e5f6" + "0" * 52
DIGEST_B = "ffee99887766" + "1" * 52


def status(name: str, i: int, digest: str | None = DIGEST_A, gpus: int = 1, tick: int = 0,
           gpu_source: str = "simulated") -> AgentStatus:
    g = tuple(
        GpuReading(k, f"GPU-{i}-{k}", "NVIDIA A10", ((i * 17 + k * 29 + tick * 7) % 100) / 100,
                   int((6 + (i * 3 + k) % 16) * GIB), 24 * GIB, 40.0 + (i * 7 + k) % 45, 60.0 + (i * 13) % 200, 300.0,
                   (GpuProcess(4000 + i, "python", 5 * GIB),))
        for k in range(gpus))
    return AgentStatus(
        node=name, agent_version="0.1.0", collected_at=T0 + tick, interval_seconds=1.0,
        host=HostReading(cpu_ratio=((i * 11) % 100) / 100, load1=1.5, memory_used_bytes=20 * GIB,
                         memory_total_bytes=64 * GIB),
        gpu_source=gpu_source, gpu_error=None, gpus=g,
        asr=AsrReading(url=f"http://127.0.0.1:{10000 + i}", up=True, probe_latency_seconds=0.004, pid=4000 + i,
                       process_cpu_ratio=0.35, process_rss_bytes=3 * GIB, in_flight=(i * 5 + tick) % 9,
                       in_flight_source="proxy",
                       requests=RequestStats(total=1000 + i, by_class={"2xx": 990 + i, "5xx": 10},
                                             latency_p50_seconds=0.21, latency_p95_seconds=0.6)),
        model=ModelReading("ok" if digest else "hashing", digest, 12 if digest else None, 2 * GIB, None, ()),
        versions={"funasr": "1.2.6", "torch": "2.5.1", "driver": "550.54"},
    )


def server(name: str, i: int, admin: AdminState = AdminState.READY, weight: int = 3, backup: bool = False,
           tick: int = 0) -> ServerState:
    return ServerState(name, "127.0.0.1", 10000 + i, weight, backup, admin, Health.UP, active_sessions=(i * 5 + tick) % 9,
                       request_rate=float((i * 3 + tick) % 12), errors_5xx_total=i % 3,
                       avg_response_seconds=0.2 + (i % 5) * 0.05, checked=True)


class FakeFleet:
    """A FleetSource over `n` nodes whose state actions change, like a balancer would."""

    def __init__(self, n: int = 6, odd_model: tuple[int, ...] = (4,), dead_agents: tuple[int, ...] = (),
                 no_agent: tuple[int, ...] = (), gpus: int = 1, backups: tuple[int, ...] = (5,),
                 balancer_error: str | None = None, frozen_clock: bool = True, real_gpus: tuple[int, ...] = ()):
        self.n = n
        self.names = [f"node-{i}" for i in range(1, n + 1)]
        self.admin = {name: AdminState.READY for name in self.names}
        self.weight = {name: 3 for name in self.names}
        self.backup = {name: (i in backups) for i, name in enumerate(self.names, 1)}
        self.odd_model, self.dead, self.no_agent, self.gpus = set(odd_model), set(dead_agents), set(no_agent), gpus
        self.balancer_error = balancer_error
        self.real_gpus = set(real_gpus)  # nodes whose agent reads a real GPU (nvml); the others simulate
        self.notes: tuple[str, ...] = ()  # FleetSnapshot.notes, as LiveFleetSource fills them
        self.tick = 0
        self.frozen_clock = frozen_clock
        self.calls = 0
        self.closed = False

    def build(self, tick: int | None = None) -> FleetSnapshot:
        tick = self.tick if tick is None else tick
        now = T0 + (0 if self.frozen_clock else tick)
        nodes = [NodeConfig(name, agent=None if i in self.no_agent else f"http://127.0.0.1:{20000 + i}")
                 for i, name in enumerate(self.names, 1)]
        agents = {}
        for i, name in enumerate(self.names, 1):
            if i in self.no_agent:
                continue
            if i in self.dead:
                agents[name] = AgentReading(nodes[i - 1].agent, None, None, "connection refused")
            else:
                st = status(name, i, DIGEST_B if i in self.odd_model else DIGEST_A, self.gpus, tick,
                            "nvml" if i in self.real_gpus else "simulated")
                agents[name] = AgentReading(nodes[i - 1].agent, st, now, None, 0.002)
        servers = tuple(server(name, i, self.admin[name], self.weight[name], self.backup[name], tick)
                        for i, name in enumerate(self.names, 1))
        lb = BalancerReading("haproxy-a", "haproxy", () if self.balancer_error else servers, self.balancer_error, now)
        return merge(nodes, agents, [lb], now, 1.0, self.notes)

    async def snapshot(self) -> FleetSnapshot:
        self.calls += 1
        await asyncio.sleep(0)
        return self.build()

    async def close(self) -> None:
        self.closed = True


class FakeController:
    """Plans and applies like asrtop.control.Controller, against a FakeFleet; records every apply."""

    def __init__(self, fleet: FakeFleet, min_ready: int = 1):
        self.fleet = fleet
        self.min_ready = min_ready
        self.applied: list[tuple[Action, bool]] = []
        self.plan_delay = 0.0  # seconds plan() takes (a slow balancer)

    def plan(self, action: Action) -> Plan:
        time.sleep(self.plan_delay)  # runs in a worker thread, as the console calls blocking controllers
        snap = self.fleet.build()
        node = snap.node(action.node)
        refusal = None
        if action.kind in ("drain", "maint"):
            staying = primaries_staying_ready(snap, [action.node])
            if staying < self.min_ready:
                refusal = f"refused: {staying} ready primaries would stay, min_ready is {self.min_ready}"
            consequence = (f"{action.node} carries {node.in_flight} in-flight requests; "
                           f"{staying} of {len(snap.nodes)} primaries stay ready")
        else:
            consequence = f"{action.kind} {action.node} -> {action.value}"
        return Plan(action, consequence, refusal, (f"haproxy-a: {action.kind} {action.node}",))

    def apply(self, action: Action, force: bool = False) -> ActionResult:
        self.applied.append((action, force))
        name = action.node
        if action.kind in ("drain", "ready", "maint"):
            self.fleet.admin[name] = AdminState(action.kind)
        elif action.kind == "weight":
            self.fleet.weight[name] = int(action.value)
        elif action.kind == "backup":
            self.fleet.backup[name] = bool(action.value)
        return ActionResult(action, "done", f"{name}: {action.kind} done on haproxy-a",
                            (BalancerOutcome("haproxy-a", True),))


class FakeAudit:
    def __init__(self):
        self.entries = [{"at": T0, "action": "drain", "node": "node-1", "outcome": "done", "message": "drained"}]

    def recent(self, node: str, n: int = 10) -> list[dict]:
        return [e for e in self.entries if e["node"] == node][-n:]


def big_fleet(n: int, tick: int) -> FleetSnapshot:
    """A synthetic n-node snapshot whose numbers move with `tick` (benchmarks)."""
    f = FakeFleet(n, odd_model=tuple(range(7, n + 1, 50)), dead_agents=tuple(range(13, n + 1, 97)),
                  backups=tuple(range(5, n + 1, 20)), gpus=2)
    return f.build(tick)


def with_admin(snap: FleetSnapshot, node: str, admin: AdminState) -> FleetSnapshot:
    nodes = tuple(replace(n, servers={b: replace(s, admin=admin) for b, s in n.servers.items()})
                  if n.name == node else n for n in snap.nodes)
    return replace(snap, nodes=nodes)
