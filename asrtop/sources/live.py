"""The usual FleetSource: agents (or Prometheus) for node facts + every balancer's servers(), merged.

Balancer reads are blocking adapter calls, so they run in threads, all balancers at once. Reading
here is allowed by DESIGN rule 1 (facts flow in); changes go only through `asrtop.control`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

from asrtop.agentstatus import AgentStatus
from asrtop.balancers.base import Balancer, BalancerError, ReportsTransport, ServerState
from asrtop.config import ClusterConfig, NodeConfig, discover_nodes
from asrtop.fleet import AgentReading, BalancerReading, DrainRecord, Drift, FleetSnapshot, merge


class NodeFactsSource(Protocol):
    """Per-node facts: asrtop.sources.agents.AgentPoller or asrtop.sources.prometheus.PrometheusSource."""

    # Why the whole source could not be read in the last poll (Prometheus unreachable), else None. Agents fail
    # one by one (each reading has its error), so the agent poller's is always None.
    error: str | None

    async def poll(self, nodes: Sequence[NodeConfig]) -> Mapping[str, AgentReading]: ...

    async def fetch_model_files(self, agent_url: str) -> list[dict] | str:
        """The agent's model file list (the console's model view), or a one-line error."""
        ...

    async def fetch_status(self, agent_url: str, timeout: float) -> AgentStatus | str:
        """One agent's status asked now within `timeout`, apart from the rounds, or a one-line error."""
        ...

    async def close(self) -> None: ...


class NotesProvider(Protocol):
    """Notes about the balancers' servers that a layer above the sources knows how to make (e.g. the control
    layer's drift watch: runtime changes an HAProxy reload threw away). Never raises: a failure is a note."""

    async def notes(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]],
                    read_at: float | None = None) -> list[str]:
        """`read_at`: when the reading of `servers` began (changes made after it are not in it yet)."""
        ...


@dataclass(frozen=True)
class DriftReading:
    """What a drift provider found: its notes and the same findings as facts (FleetSnapshot.drift, .drains)."""

    notes: tuple[str, ...] = ()
    drift: tuple[Drift, ...] = ()
    drains: tuple[DrainRecord, ...] = ()


@runtime_checkable
class DriftProvider(NotesProvider, Protocol):
    """A notes provider that also gives the facts behind its notes (the control layer's ReloadWatch): the
    fleet source asks it this instead of `notes`, so the problems rules read facts, not note strings."""

    async def drift(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]],
                    read_at: float | None = None) -> DriftReading: ...


class ChangesProvider(Protocol):
    """Changes running now that re-create a node's server (the control layer's intent journal), so the fleet
    says "re-create" instead of an unexplained maint: node -> one clause. Never raises."""

    def changing(self) -> Mapping[str, str]: ...


def _timed_servers(balancer: Balancer) -> tuple[list[ServerState], float]:
    """servers() and the seconds it took, measured in the reading thread (no wait for a thread counted)."""
    start = time.perf_counter()
    servers = balancer.servers()
    return servers, time.perf_counter() - start


async def read_balancer(balancer: Balancer) -> BalancerReading:
    via = balancer.transport if isinstance(balancer, ReportsTransport) else None
    try:
        servers, took = await asyncio.to_thread(_timed_servers, balancer)
        return BalancerReading(balancer.name, balancer.kind, tuple(servers), None, time.time(), via, took)
    except BalancerError as e:
        return BalancerReading(balancer.name, balancer.kind, (), str(e), time.time(), via)
    except Exception as e:  # an adapter bug must not take the console down; show it as an error
        return BalancerReading(balancer.name, balancer.kind, (), f"{type(e).__name__}: {e}", time.time(), via)


@dataclass(frozen=True)
class LivePoll:
    """LiveFleetSource's answers of one poll (asrtop.sources.FleetPoll): fleet.merge's arguments."""

    nodes: tuple[NodeConfig, ...]
    agents: Mapping[str, AgentReading]
    readings: tuple[BalancerReading, ...]
    taken_at: float
    refresh: float
    notes: tuple[str, ...]
    model_sha256: str | None
    changing: Mapping[str, str]
    facts_error: str | None
    drift: tuple[Drift, ...]
    drains: tuple[DrainRecord, ...]

    def merge(self) -> FleetSnapshot:
        return merge(self.nodes, self.agents, self.readings, self.taken_at, self.refresh, self.notes,
                     self.model_sha256, self.changing, self.facts_error, self.drift, self.drains)


class LiveFleetSource:
    def __init__(self, config: ClusterConfig, facts: NodeFactsSource | None, balancers: Sequence[Balancer],
                 notes: Sequence[NotesProvider] = (), changes: ChangesProvider | None = None):
        self.config = config
        self.facts = facts
        self.balancers = list(balancers)
        self.notes = tuple(notes)
        self.changes = changes

    async def read_balancers(self) -> list[BalancerReading]:
        return list(await asyncio.gather(*(read_balancer(b) for b in self.balancers)))

    def nodes_for(self, readings: Sequence[BalancerReading]) -> tuple[NodeConfig, ...]:
        servers = []
        if self.config.discovery is not None:
            for r in readings:
                if r.name == self.config.discovery.balancer:
                    servers = list(r.servers)
        return discover_nodes(self.config, servers)

    async def snapshot(self) -> FleetSnapshot:
        return (await self.poll()).merge()

    async def poll(self) -> "LivePoll":
        """Every read (balancers, node facts, notes, changes) without the merge (asrtop.sources.PollingFleetSource)."""
        read_at = time.time()
        agents: Mapping[str, AgentReading] = {}
        if self.facts is not None and self.config.discovery is None:
            # the nodes are known before the balancers answer: read both at once (the balancers in threads)
            nodes = self.config.nodes
            readings, agents = await asyncio.gather(self.read_balancers(), self.facts.poll(nodes))
        else:
            readings = await self.read_balancers()
            nodes = self.nodes_for(readings)
            if self.facts is not None:
                agents = await self.facts.poll(nodes)
        servers = {r.name: r.servers for r in readings if r.reachable}
        extra = await asyncio.gather(*(self._read(p, servers, read_at) for p in self.notes))
        notes = (*self.config.warnings, *(n for found in extra for n in found.notes))
        changing = self.changes.changing() if self.changes is not None else {}
        facts_error = self.facts.error if self.facts is not None else None
        return LivePoll(nodes, agents, tuple(readings), time.time(), self.config.refresh, notes,
                        self.config.model_sha256, changing, facts_error,
                        tuple(d for found in extra for d in found.drift),
                        tuple(d for found in extra for d in found.drains))

    async def _read(self, provider: NotesProvider, servers: Mapping[str, Sequence[ServerState]],
                    read_at: float) -> DriftReading:
        if isinstance(provider, DriftProvider):
            return await provider.drift(self.balancers, servers, read_at)
        return DriftReading(tuple(await provider.notes(self.balancers, servers, read_at)))

    async def model_files(self, agent_url: str) -> list[dict] | str:
        """One node's model file list from its agent (`/v1/model`), or a one-line reason it is unavailable."""
        if self.facts is None:
            return f"{agent_url}: no agent source configured"
        return await self.facts.fetch_model_files(agent_url)

    async def agent_status(self, agent_url: str, timeout: float) -> AgentStatus | str:
        """One node's agent asked now within `timeout`, or a one-line reason it gave no status."""
        if self.facts is None:
            return f"{agent_url}: no agent source configured"
        return await self.facts.fetch_status(agent_url, timeout)

    async def close(self) -> None:
        if self.facts is not None:
            await self.facts.close()
