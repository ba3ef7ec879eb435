"""The Prometheus-backed fleet agrees with the direct one (issue 7): a REAL Prometheus scraping the demo
cluster's real asrtop-agent processes, both sources built by build_fleet_source with the real HAProxy."""

from __future__ import annotations

import asyncio

import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.config import load_config
from asrtop.sources.agents import AgentPoller
from asrtop.sources.factory import build_fleet_source
from asrtop.sources.prometheus import PrometheusSource, instance_of_url
from support.sources_prom import prometheus, wait_scraped

pytestmark = pytest.mark.timeout(180)

SCRAPE = 1.0


async def test_prometheus_snapshot_agrees_with_direct_snapshot(demo_cluster, prometheus_bin, tmp_path):
    agents = [n.agent_url for n in demo_cluster.nodes]
    if not all(agents):
        pytest.fail("the demo cluster started without agents; asrtop_agent must be installed")
    config = load_config(demo_cluster.config_path)
    targets = [instance_of_url(u) for u in agents]
    with prometheus(prometheus_bin, targets, tmp_path, scrape_interval=f"{SCRAPE:g}s") as base:
        await asyncio.to_thread(wait_scraped, base, len(targets))
        direct = build_fleet_source(config, build_balancers(config))
        via_prom = build_fleet_source(config, build_balancers(config), prometheus=base)
        assert isinstance(direct.facts, AgentPoller) and isinstance(via_prom.facts, PrometheusSource)
        try:
            # agents collect every second and hash the models in the background: wait until every node
            # has a digest through both paths before comparing
            for _ in range(60):
                d, p = await direct.snapshot(), await via_prom.snapshot()
                if all(n.model_digest for n in d.nodes) and all(n.model_digest for n in p.nodes):
                    break
                await asyncio.sleep(0.5)
            assert [n.name for n in p.nodes] == [n.name for n in d.nodes] == [n.name for n in demo_cluster.nodes]
            for dn, pn in zip(d.nodes, p.nodes):
                assert pn.agent.error is None, pn.agent.error
                assert not pn.stale and not dn.stale
                ds, ps = dn.status, pn.status
                assert ps.node == ds.node
                assert ps.agent_version == ds.agent_version
                assert ps.gpu_source == ds.gpu_source == "simulated"
                assert ps.model.state == ds.model.state == "ok"
                assert ps.model.sha256 == ds.model.sha256
                assert len(ps.gpus) == len(ds.gpus)
                assert [g.uuid for g in ps.gpus] == [g.uuid for g in ds.gpus]
                assert ps.asr.up is ds.asr.up is True
                assert pn.admin_state == dn.admin_state  # balancer state comes from HAProxy either way
                # the Prometheus view lags by at most a scrape (plus a collection interval and the round)
                assert abs(ps.collected_at - ds.collected_at) <= SCRAPE + 1.0 + 1.0
                assert ps.host.memory_total_bytes == ds.host.memory_total_bytes
            # the demo's odd node (older model) is the one both views single out
            assert p.majority_digest == d.majority_digest is not None
            assert p.nodes_differing_from_target() == d.nodes_differing_from_target() != ()
        finally:
            await direct.close()
            await via_prom.close()
