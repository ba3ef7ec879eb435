"""Node detail says who counted a node's request figures: the balancer, or (nginx) the node's agent."""

from __future__ import annotations

from dataclasses import replace

from asrtop.config import NodeConfig
from asrtop.fleet import AgentReading, AgentTraffic, BalancerReading, merge
from asrtop.history import FleetHistory
from asrtop.tui.screens.detail import render_detail
from fakes import T0, server, status


def detail_lines(balancer_counts: bool) -> list[str]:
    cfg = NodeConfig("node-1", agent="http://127.0.0.1:1", address="127.0.0.1:10001")
    srv = server("node-1", 1)
    if not balancer_counts:  # nginx OSS: no per-server counters
        srv = replace(srv, request_rate=None, requests_total=None, errors_5xx_total=None, avg_response_seconds=None)
    reading = AgentReading(cfg.agent, status("node-1", 1), T0, traffic=AgentTraffic(2.5, 0.5, 1.8, 20.0, 10.0))
    snap = merge([cfg], {"node-1": reading}, [BalancerReading("lb", "nginx", (srv,))], T0)
    history = FleetHistory(capacity=10)
    history.record(snap)
    return render_detail(snap.node("node-1"), snap, history, []).plain.splitlines()


def test_detail_names_the_agent_when_it_counted_the_requests():
    lines = detail_lines(balancer_counts=False)
    assert "  req/s, 5xx/s counted by the node's agent (the balancer counts no requests)" in lines
    assert next(ln for ln in lines if ln.startswith("  req/s ")).split()[1] == "2.5"
    assert next(ln for ln in lines if ln.startswith("  5xx/s ")).split()[1] == "0.5"


def test_detail_names_the_balancer_when_it_counted_them():
    lines = detail_lines(balancer_counts=True)
    assert "  req/s, 5xx/s counted by the balancer" in lines
    assert not any("agent (the balancer" in ln for ln in lines)
