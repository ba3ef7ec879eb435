"""Build the FleetSource the CLI and TUI use: node facts from agents (default) or Prometheus, plus balancers."""

from __future__ import annotations

from typing import Sequence

from asrtop.balancers.base import Balancer
from asrtop.config import ClusterConfig
from asrtop.sources.live import ChangesProvider, LiveFleetSource, NodeFactsSource, NotesProvider


def build_facts_source(config: ClusterConfig, prometheus: str | None = None, one_shot: bool = False) -> NodeFactsSource:
    """PrometheusSource when a URL is given (argument wins over config.prometheus), else AgentPoller.
    `one_shot`: a command that reads the fleet once or twice (`status`, `check`): every agent is asked, each
    with the whole timeout, http:// ones without aiohttp (AgentPoller's `one_shot`)."""
    url = prometheus or config.prometheus
    if url:
        from asrtop.sources.prometheus import PrometheusSource  # only the big-fleet path pays for it

        return PrometheusSource(url, refresh=config.refresh, one_shot=one_shot)
    from asrtop.sources.agents import AgentPoller

    return AgentPoller(refresh=config.refresh, one_shot=one_shot)


def build_fleet_source(config: ClusterConfig, balancers: Sequence[Balancer], prometheus: str | None = None,
                       notes: Sequence[NotesProvider] = (), changes: ChangesProvider | None = None,
                       one_shot: bool = False) -> LiveFleetSource:
    """The usual source: `await src.snapshot()` per refresh (never overlapping), `await src.close()` at exit.
    `notes`, `changes`: providers from the layers above (the control layer's drift watch, its intent journal);
    `one_shot`: see build_facts_source."""
    return LiveFleetSource(config, build_facts_source(config, prometheus, one_shot), balancers, notes, changes)
