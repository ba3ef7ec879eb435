"""AgentPoller against the demo cluster's real asrtop-agent processes: status and the model file list."""

from __future__ import annotations

import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.config import NodeConfig, load_config
from asrtop.sources.agents import AgentPoller
from asrtop.sources.factory import build_fleet_source

pytestmark = pytest.mark.timeout(120)


async def test_poller_reads_real_agents_and_their_model_files(demo_cluster):
    nodes = [NodeConfig(n.name, agent=n.agent_url) for n in demo_cluster.nodes]
    if not all(n.agent for n in nodes):
        pytest.fail("the demo cluster started without agents; asrtop_agent must be installed")
    poller = AgentPoller(refresh=1.0)
    try:
        readings = await poller.poll(nodes)
        for n in nodes:
            r = readings[n.name]
            assert r.error is None, r.error
            assert r.status.node == n.name
            assert r.status.gpu_source == "simulated" and r.status.gpus
            assert r.status.asr.up is True
        files = await poller.fetch_model_files(nodes[0].agent)
        assert isinstance(files, list) and files, files
        assert all(isinstance(f.get("path"), str) and "size" in f for f in files)
        assert any(f.get("sha256") for f in files) or readings[nodes[0].name].status.model.state == "hashing"
    finally:
        await poller.close()


async def test_fleet_source_joins_real_agents_with_real_haproxy(demo_cluster):
    config = load_config(demo_cluster.config_path)
    src = build_fleet_source(config, build_balancers(config))
    try:
        snap = await src.snapshot()
    finally:
        await src.close()
    assert [n.name for n in snap.nodes] == [n.name for n in demo_cluster.nodes]
    assert all(b.error is None for b in snap.balancers)
    for n in snap.nodes:
        assert n.agent is not None and n.agent.error is None and not n.stale
        assert n.servers  # HAProxy knows it
        assert n.admin_state in ("ready", "drain", "maint")


async def test_prometheus_source_fetches_model_files_from_the_agent(demo_cluster):
    from asrtop.sources.prometheus import PrometheusSource

    src = PrometheusSource("http://127.0.0.1:1", refresh=1.0)  # the file list does not go through Prometheus
    try:
        files = await src.fetch_model_files(demo_cluster.nodes[0].agent_url)
        assert isinstance(files, list) and files
        msg = await src.fetch_model_files("prometheus:127.0.0.1:9")
        assert isinstance(msg, str) and "no agent URL" in msg
    finally:
        await src.close()
