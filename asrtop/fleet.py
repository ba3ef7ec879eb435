"""PURE fleet model: what asrtop knows about each node, merged from agents and balancers.

Frozen dataclasses only (they cross task/thread boundaries); no I/O, no textual.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from asrtop.agentstatus import AgentStatus
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig

MIXED = "MIXED"  # balancers disagree about a node's admin state
STALE_AFTER_MISSED = 3  # an agent is stale after this many refresh intervals without a good answer


@dataclass(frozen=True)
class AgentReading:
    """Result of polling one agent. `status` is the last good status, kept when later polls fail."""

    url: str
    status: AgentStatus | None
    fetched_at: float | None  # wall time (time.time()) of the last good answer
    error: str | None = None  # last poll's error; None when the last poll succeeded
    latency_seconds: float | None = None


@dataclass(frozen=True)
class BalancerReading:
    name: str
    kind: str
    servers: tuple[ServerState, ...] = ()
    error: str | None = None  # None = reachable and read
    read_at: float | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class NodeView:
    name: str
    config: NodeConfig
    agent: AgentReading | None
    servers: Mapping[str, ServerState]  # balancer name -> this node's server there
    stale: bool = False  # agent configured but no good answer for STALE_AFTER_MISSED intervals

    @property
    def status(self) -> AgentStatus | None:
        return self.agent.status if self.agent else None

    @property
    def admin_state(self) -> str:
        """ready | drain | maint | MIXED (balancers disagree) | unknown (no balancer knows it)."""
        states = {s.admin.value for s in self.servers.values()}
        if not states:
            return "unknown"
        return states.pop() if len(states) == 1 else MIXED

    @property
    def health(self) -> str:
        """up | down | no-check | MIXED | unknown."""
        states = {s.health.value for s in self.servers.values()}
        if not states:
            return "unknown"
        return states.pop() if len(states) == 1 else MIXED

    @property
    def weight(self) -> int | None:
        ws = {s.weight for s in self.servers.values()}
        return ws.pop() if len(ws) == 1 else None

    @property
    def backup(self) -> bool | None:
        bs = {s.backup for s in self.servers.values()}
        return bs.pop() if len(bs) == 1 else None

    @property
    def active_sessions(self) -> int | None:
        """Sessions on this node summed over all balancers that report them."""
        vals = [s.active_sessions for s in self.servers.values() if s.active_sessions is not None]
        return sum(vals) if vals else None

    @property
    def in_flight(self) -> int | None:
        """Best count of requests being served: the agent's (exact with --proxy) else the balancers' sessions."""
        st = self.status
        if st is not None and not self.stale and st.asr.in_flight is not None:
            return st.asr.in_flight
        return self.active_sessions

    @property
    def request_rate(self) -> float | None:
        vals = [s.request_rate for s in self.servers.values() if s.request_rate is not None]
        return sum(vals) if vals else None

    @property
    def errors_5xx(self) -> int | None:
        vals = [s.errors_5xx_total for s in self.servers.values() if s.errors_5xx_total is not None]
        return sum(vals) if vals else None

    @property
    def model_digest(self) -> str | None:
        st = self.status
        if st is None or st.model.state != "ok":
            return None
        return st.model.sha256

    def agent_age(self, now: float) -> float | None:
        if self.agent is None or self.agent.fetched_at is None:
            return None
        return max(0.0, now - self.agent.fetched_at)


@dataclass(frozen=True)
class ModelGroup:
    digest: str | None  # None: nodes whose digest is unknown (no agent, hashing, missing, error)
    nodes: tuple[str, ...]
    majority: bool = False


@dataclass(frozen=True)
class FleetSnapshot:
    taken_at: float
    nodes: tuple[NodeView, ...]
    balancers: tuple[BalancerReading, ...] = ()
    refresh_seconds: float = 1.0
    notes: tuple[str, ...] = field(default_factory=tuple)  # source-level warnings to show

    def node(self, name: str) -> NodeView:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def model_groups(self) -> tuple[ModelGroup, ...]:
        """Nodes grouped by model digest, biggest group first; the biggest known group is the majority.

        A tie for biggest has no majority (every group is then marked as differing)."""
        by_digest: dict[str | None, list[str]] = {}
        for n in self.nodes:
            by_digest.setdefault(n.model_digest, []).append(n.name)
        known = Counter({d: len(ns) for d, ns in by_digest.items() if d is not None})
        top = known.most_common(2)
        majority = top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else None
        groups = [ModelGroup(d, tuple(ns), d is not None and d == majority) for d, ns in by_digest.items()]
        groups.sort(key=lambda g: (g.digest is None, not g.majority, -len(g.nodes), g.digest or ""))
        return tuple(groups)

    @property
    def majority_digest(self) -> str | None:
        for g in self.model_groups():
            if g.majority:
                return g.digest
        return None

    def nodes_differing_from_majority(self) -> tuple[str, ...]:
        groups = self.model_groups()
        known = [g for g in groups if g.digest is not None]
        if len(known) <= 1:
            return ()
        return tuple(n for g in known if not g.majority for n in g.nodes)


def merge(
    nodes: Iterable[NodeConfig],
    agents: Mapping[str, AgentReading],
    balancers: Iterable[BalancerReading],
    now: float,
    refresh_seconds: float = 1.0,
    notes: Iterable[str] = (),
) -> FleetSnapshot:
    """Join configured nodes with agent readings (by node name) and balancer servers (by name or host:port)."""
    balancers = tuple(balancers)
    views = []
    for cfg in nodes:
        servers = {}
        for b in balancers:
            for s in b.servers:
                if cfg.matches(s):
                    servers[b.name] = s
                    break
        reading = agents.get(cfg.name)
        stale = False
        if cfg.agent is not None:
            fetched = reading.fetched_at if reading else None
            stale = fetched is None or now - fetched > STALE_AFTER_MISSED * refresh_seconds
        views.append(NodeView(cfg.name, cfg, reading, servers, stale))
    return FleetSnapshot(now, tuple(views), balancers, refresh_seconds, tuple(notes))


def primaries_staying_ready(snapshot: FleetSnapshot, leaving: Iterable[str]) -> int:
    """Primary (non-backup) nodes that are ready and not down on every balancer, excluding `leaving`."""
    leaving = set(leaving)
    count = 0
    for n in snapshot.nodes:
        if n.name in leaving or not n.servers:
            continue
        if any(s.backup for s in n.servers.values()):
            continue
        if all(s.admin is AdminState.READY and s.health is not Health.DOWN for s in n.servers.values()):
            count += 1
    return count


def guardrail_refusal(snapshot: FleetSnapshot, leaving: Iterable[str], min_ready: int) -> str | None:
    """One line refusing to take `leaving` out of service, or None when enough primaries stay ready."""
    leaving = list(leaving)
    staying = primaries_staying_ready(snapshot, leaving)
    if staying >= min_ready:
        return None
    names = ", ".join(leaving)
    return (f"refused: taking {names} out would leave {staying} ready primary node(s), "
            f"min_ready is {min_ready} (use --force to override)")
