"""The usual FleetSource: agents (or Prometheus) for node facts + every balancer's servers(), merged.

Balancer reads are blocking adapter calls, so they run in threads, all balancers at once. Reading
here is allowed by DESIGN rule 1 (facts flow in); changes go only through `asrtop.control`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Mapping, Protocol, Sequence

from asrtop.balancers.base import Balancer, BalancerError
from asrtop.config import ClusterConfig, NodeConfig, discover_nodes
from asrtop.fleet import AgentReading, BalancerReading, FleetSnapshot, merge
from asrtop.reload_watch import ReloadWatch


class NodeFactsSource(Protocol):
    """Per-node facts: asrtop.sources.agents.AgentPoller or asrtop.sources.prometheus.PrometheusSource."""

    async def poll(self, nodes: Sequence[NodeConfig]) -> Mapping[str, AgentReading]: ...

    async def fetch_model_files(self, agent_url: str) -> list[dict] | str:
        """The agent's model file list (the console's model view), or a one-line error."""
        ...

    async def close(self) -> None: ...


async def read_balancer(balancer: Balancer) -> BalancerReading:
    try:
        servers = await asyncio.to_thread(balancer.servers)
        return BalancerReading(balancer.name, balancer.kind, tuple(servers), None, time.time())
    except BalancerError as e:
        return BalancerReading(balancer.name, balancer.kind, (), str(e), time.time())
    except Exception as e:  # an adapter bug must not take the console down; show it as an error
        return BalancerReading(balancer.name, balancer.kind, (), f"{type(e).__name__}: {e}", time.time())


class LiveFleetSource:
    def __init__(self, config: ClusterConfig, facts: NodeFactsSource | None, balancers: Sequence[Balancer]):
        self.config = config
        self.facts = facts
        self.balancers = list(balancers)
        self.reload_watch = ReloadWatch(config.audit_log)

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
        readings = await self.read_balancers()
        nodes = self.nodes_for(readings)
        agents: Mapping[str, AgentReading] = {}
        if self.facts is not None:
            agents = await self.facts.poll(nodes)
        notes = (*self.config.warnings, *await self.lost_runtime_changes(readings))
        return merge(nodes, agents, readings, time.time(), self.config.refresh, notes)

    async def lost_runtime_changes(self, readings: Sequence[BalancerReading]) -> list[str]:
        """HAProxy restarted/reloaded since asrtop changed it, and the change is gone (asrtop.reload_watch)."""
        servers = {r.name: r.servers for r in readings if r.reachable}
        try:
            if not self.reload_watch.desired():  # nothing asrtop changed: no `show info` round trips
                return []
            return await asyncio.to_thread(self.reload_watch.notes, self.balancers, servers)
        except Exception as e:  # a note must never take the console down
            return [f"cannot check for lost runtime changes: {type(e).__name__}: {e}"]

    async def close(self) -> None:
        if self.facts is not None:
            await self.facts.close()
