"""build_fleet_source picks the node-facts source: agents by default, Prometheus when asked."""

from __future__ import annotations

from asrtop.config import parse_config
from asrtop.sources.agents import AgentPoller
from asrtop.sources.factory import build_fleet_source
from asrtop.sources.prometheus import PrometheusSource


def config(**cluster):
    return parse_config({"cluster": {"refresh": 2.0, **cluster},
                         "nodes": [{"name": "a", "agent": "http://127.0.0.1:10860"}]})


async def test_agents_by_default_with_the_cluster_refresh():
    src = build_fleet_source(config(), [])
    assert isinstance(src.facts, AgentPoller)
    assert src.facts.refresh == 2.0 and src.facts.timeout == 1.6
    await src.close()


async def test_prometheus_from_config_or_argument_which_wins():
    src = build_fleet_source(config(prometheus="http://127.0.0.1:9090/"), [])
    assert isinstance(src.facts, PrometheusSource) and src.facts.url == "http://127.0.0.1:9090"
    await src.close()
    src = build_fleet_source(config(prometheus="http://127.0.0.1:9090"), [], prometheus="http://127.0.0.1:9999")
    assert src.facts.url == "http://127.0.0.1:9999" and src.facts.refresh == 2.0
    await src.close()
