"""Deterministic fake fleet for TUI tests and benchmarks: a FleetSource and its in-memory balancer, driven by
the REAL Controller (so the console shows the control layer's own rules and words), and an audit log in memory.
Each implements the Protocol the console takes (FleetSource, Balancer, ActionController, AuditReader)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from dataclasses import dataclass, replace
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from asrtop.agentstatus import (AgentStatus, AsrReading, GpuProcess, GpuReading, HostReading, ModelReading,
                                RequestStats)
from asrtop.balancers.base import AdminState, BalancerUnreachable, Health, ServerState
from asrtop.config import ClusterConfig, NodeConfig
from asrtop.control import Action, ActionResult, BatchPlan, Controller, Plan
from asrtop.control.audit import AuditEntry
from asrtop.control.model import RecoveryItem, RecoveryResult
from asrtop.fleet import AgentReading, AgentTraffic, BalancerReading, FleetSnapshot, merge

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
                       request_rate=float((i * 3 + tick) % 12), requests_total=100 + i, errors_5xx_total=i % 3,
                       avg_response_seconds=0.2 + (i % 5) * 0.05, checked=True)


class FakeFleet:
    """A FleetSource over `n` nodes whose state actions change, like a balancer would."""

    def __init__(self, n: int = 6, odd_model: tuple[int, ...] = (4,), dead_agents: tuple[int, ...] = (),
                 no_agent: tuple[int, ...] = (), gpus: int = 1, backups: tuple[int, ...] = (5,),
                 balancer_error: str | None = None, frozen_clock: bool = True, real_gpus: tuple[int, ...] = (),
                 agent_counted: tuple[int, ...] = ()):
        self.n = n
        self.names = [f"node-{i}" for i in range(1, n + 1)]
        self.admin = {name: AdminState.READY for name in self.names}
        self.weight = {name: 3 for name in self.names}
        self.backup = {name: (i in backups) for i, name in enumerate(self.names, 1)}
        self.odd_model, self.dead, self.no_agent, self.gpus = set(odd_model), set(dead_agents), set(no_agent), gpus
        self.balancer_error = balancer_error
        self.real_gpus = set(real_gpus)  # nodes whose agent reads a real GPU (nvml); the others simulate
        # nodes whose balancer counts no requests (nginx OSS): their agent's counters are all there is
        self.agent_counted = set(agent_counted)
        self.notes: tuple[str, ...] = ()  # FleetSnapshot.notes, as LiveFleetSource fills them
        self.model_sha256: str | None = None  # cluster.model_sha256 (None: the majority is the target)
        self.tick = 0
        self.frozen_clock = frozen_clock
        self.calls = 0
        self.closed = False
        self.merge_threads: list[int] = []  # threading.get_ident() of each merge (the console's: off its loop)

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
                traffic = (AgentTraffic(request_rate=float((i * 2 + tick) % 7), errors_5xx_rate=0.0,
                                        response_seconds=1.5 + (i % 4) * 0.1 if (i * 2 + tick) % 7 else None,
                                        audio_rate=3.0, window_seconds=60.0)
                           if i in self.agent_counted else None)
                agents[name] = AgentReading(nodes[i - 1].agent, st, now, None, 0.002, traffic)
        servers = tuple(server(name, i, self.admin[name], self.weight[name], self.backup[name], tick)
                        for i, name in enumerate(self.names, 1))
        servers = tuple(replace(s, request_rate=None, requests_total=None, errors_5xx_total=None,
                                avg_response_seconds=None) if i in self.agent_counted else s
                        for i, s in enumerate(servers, 1))
        lb = BalancerReading("haproxy-a", "haproxy", () if self.balancer_error else servers, self.balancer_error, now)
        return merge(nodes, agents, [lb], now, 1.0, self.notes, self.model_sha256)

    async def snapshot(self) -> FleetSnapshot:
        self.calls += 1
        await asyncio.sleep(0)
        return self.build()

    async def poll(self) -> "FakePoll":
        """asrtop.sources.PollingFleetSource: the console merges in its refresh thread (the fake has no I/O: its
        build, the merge included, runs there; it only reads the fake's state)."""
        self.calls += 1
        await asyncio.sleep(0)
        return FakePoll(partial(self.build, self.tick), self.merge_threads)

    def _agent_index(self, agent_url: str) -> int | None:
        """The node (1-based) whose agent URL this is, or None."""
        return next((i for i in range(1, self.n + 1) if agent_url.endswith(f":{20000 + i}")), None)

    async def model_files(self, agent_url: str) -> list[dict] | str:
        """Two files; the odd model's weights differ (what the agent's /v1/model lists)."""
        i = self._agent_index(agent_url)
        if i is None or i in self.dead:
            return f"{agent_url}: connection refused"
        weights = "bb" * 32 if i in self.odd_model else "aa" * 32
        return [{"path": "config.yaml", "size": 2048, "sha256": "cc" * 32},
                {"path": "model.pt", "size": 2 * GIB, "sha256": weights}]

    async def agent_status(self, agent_url: str, timeout: float) -> AgentStatus | str:
        """The node's agent asked alone (the model guard's second look): a dead one still refuses."""
        i = self._agent_index(agent_url)
        if i is None or i in self.dead:
            return "connection refused"
        return status(self.names[i - 1], i, DIGEST_B if i in self.odd_model else DIGEST_A, self.gpus, self.tick)

    async def close(self) -> None:
        self.closed = True


class FakeBalancer:
    """The FakeFleet's HAProxy, in memory: reads and changes the fleet's admin/weight/backup state."""

    kind = "haproxy"
    max_weight = 256

    def __init__(self, fleet: FakeFleet, name: str = "haproxy-a"):
        self.fleet, self.name = fleet, name

    def servers(self) -> list[ServerState]:
        if self.fleet.balancer_error:
            raise BalancerUnreachable(f"{self.name}: {self.fleet.balancer_error}")
        return list(self.fleet.build().balancers[0].servers)

    def set_state(self, server: str, state: AdminState) -> None:
        self.fleet.admin[server] = state

    def set_weight(self, server: str, weight: int) -> None:
        self.fleet.weight[server] = weight

    def set_backup(self, server: str, backup: bool) -> None:
        self.fleet.backup[server] = backup


class FakeController(Controller):
    """The real Controller over a FakeFleet and its FakeBalancer; records every action it is asked to apply
    (with its force flag) and can be slowed down like a slow balancer."""

    def __init__(self, fleet: FakeFleet, min_ready: int = 1, audit: "FakeAudit | None" = None):
        state = Path(tempfile.mkdtemp(prefix="asrtop-tui-"))  # the action lock lives here
        config = ClusterConfig(path=None, min_ready=min_ready, audit_log=state / "audit.jsonl",
                               model_sha256=fleet.model_sha256)
        super().__init__(config, [FakeBalancer(fleet)], source=fleet, audit=audit or FakeAudit(state / "audit.jsonl"))
        self.fleet = fleet
        self.applied: list[tuple[Action, bool]] = []
        self.plan_delay = 0.0  # seconds plan() takes (a slow balancer)

    async def plan(self, action, force: bool = False) -> Plan | BatchPlan:  # type: ignore[override]
        await asyncio.sleep(self.plan_delay)
        return await super().plan(action, force)

    async def apply(self, action: Action, force: bool = False, dry_run: bool = False) -> ActionResult:
        self.applied.append((action, force))
        return await super().apply(action, force, dry_run)

    async def apply_batch(self, actions: Sequence[Action], force: bool = False) -> tuple[ActionResult, ...]:
        self.applied.extend((a, force) for a in actions)
        return await super().apply_batch(actions, force)


class FakeAudit:
    """An audit log in memory: the controller appends records, the console reads typed entries back."""

    def __init__(self, path: Path | None = None):
        self.path = path or Path(tempfile.mkdtemp(prefix="asrtop-tui-")) / "audit.jsonl"
        when = datetime.fromtimestamp(T0, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.records: list[dict] = [{"time": when, "user": "ops@lab", "action": "drain", "node": "node-1",
                                     "outcome": "done", "message": "drained", "balancers": []}]

    def append(self, record: dict) -> None:
        self.records.append(record)

    async def recent(self, node: str | None = None, limit: int = 10) -> list[AuditEntry]:
        mine = [AuditEntry.from_record(r) for r in reversed(self.records) if node is None or r["node"] == node]
        return mine[:limit]


def fleet_of_12() -> FakeFleet:
    """A realistic fleet for layouts: 12 nodes, one draining, one on another model, one agent stale, one
    backup, two GPUs hot (>= 90 %); fixed clock and values."""
    fleet = FakeFleet(12, odd_model=(4,), dead_agents=(9,), backups=(12,))
    fleet.admin["node-3"] = AdminState.DRAIN
    fleet.tick = 1  # node-5 and node-11 at 92 % / 94 % GPU
    return fleet


@dataclass(frozen=True)
class FakePoll:
    """One poll of the fake (asrtop.sources.FleetPoll); `merge` notes the thread it ran in."""

    build: Callable[[], FleetSnapshot]
    threads: list[int]

    def merge(self) -> FleetSnapshot:
        self.threads.append(threading.get_ident())
        return self.build()


def big_fleet(n: int, tick: int) -> FleetSnapshot:
    """A synthetic n-node snapshot whose numbers move with `tick` (benchmarks)."""
    f = FakeFleet(n, odd_model=tuple(range(7, n + 1, 50)), dead_agents=tuple(range(13, n + 1, 97)),
                  backups=tuple(range(5, n + 1, 20)), gpus=2)
    return f.build(tick)


def with_admin(snap: FleetSnapshot, node: str, admin: AdminState) -> FleetSnapshot:
    nodes = tuple(replace(n, servers={b: replace(s, admin=admin) for b, s in n.servers.items()})
                  if n.name == node else n for n in snap.nodes)
    return replace(snap, nodes=nodes)


class FakeRecovery:
    """A Recoverer (asrtop.control.seams) with one interrupted backup toggle until run() recovers it."""

    def __init__(self, pending: bool = True):
        self.item = RecoveryItem("hx-a", "`asrtop backup node-2 on`", "after `del server` at 10:31:02 UTC",
                                 "completed", ("add server asr/node-2 127.0.0.1:10002 weight 3 id 2 backup",
                                               "set server asr/node-2 state ready"))
        self.left = pending
        self.runs = 0

    async def pending(self) -> list[str]:
        return ["interrupted: `asrtop backup node-2 on` stopped on hx-a after `del server`"] if self.left else []

    async def plan(self) -> RecoveryResult:
        return await self.run(dry_run=True)

    async def run(self, dry_run: bool = False) -> RecoveryResult:
        if not self.left:
            return RecoveryResult((), "done", "nothing to recover: the intent journal has no interrupted change", 0,
                                  dry_run)
        if dry_run:
            return RecoveryResult((self.item,), "dry-run", "dry run, nothing changed: 1 interrupted operation(s) "
                                  "to recover", 0, True)
        self.runs += 1
        self.left = False
        return RecoveryResult((self.item,), "done", "recovered 1 interrupted operation(s)", 0)
