"""The pure fleet model: joining nodes with balancer servers and agents, model groups, guardrails."""

from asrtop.agentstatus import parse_status
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.control.rules import min_ready_refusal
from asrtop.fleet import MIXED, AgentReading, BalancerReading, merge


def server(name, port, admin=AdminState.READY, health=Health.UP, backup=False, weight=3, scur=0):
    return ServerState(name, "127.0.0.1", port, weight, backup, admin, health, active_sessions=scur)


def status(node, digest, in_flight=None):
    return parse_status({"schema": 1, "node": node, "model": {"state": "ok", "sha256": digest},
                         "asr": {"in_flight": in_flight}})


NODES = [NodeConfig("node-1", address="127.0.0.1:7001", agent="http://127.0.0.1:9001"),
         NodeConfig("node-2", address="127.0.0.1:7002"),
         NodeConfig("node-3", server="asr3", agent="http://127.0.0.1:9003")]


def test_nginx_servers_match_by_address_haproxy_by_name():
    hap = BalancerReading("hap", "haproxy", (server("node-1", 7001), server("node-2", 7002), server("asr3", 7003)))
    ngx = BalancerReading("ngx", "nginx", (server("127.0.0.1:7001", 7001, admin=AdminState.MAINT),
                                           server("127.0.0.1:7002", 7002)))
    snap = merge(NODES, {}, [hap, ngx], now=100.0)
    n1, n2, n3 = snap.nodes
    assert set(n1.servers) == {"hap", "ngx"} and n1.admin_state == MIXED
    assert n2.admin_state == "ready"
    assert set(n3.servers) == {"hap"}


def test_in_flight_is_the_larger_of_balancer_sessions_and_a_fresh_agent_count():
    hap = BalancerReading("hap", "haproxy", (server("node-1", 7001, scur=4),))
    hap2 = BalancerReading("hap2", "haproxy", (server("node-1", 7001, scur=3),))
    fresh = AgentReading("http://127.0.0.1:9001", status("node-1", "a", in_flight=6), fetched_at=99.5)
    snap = merge(NODES[:1], {"node-1": fresh}, [hap, hap2], now=100.0)
    assert snap.nodes[0].active_sessions == 7
    assert snap.nodes[0].in_flight == 7  # a request shows in both signals: max, not sum
    busier = AgentReading("http://127.0.0.1:9001", status("node-1", "a", in_flight=9), fetched_at=99.5)
    assert merge(NODES[:1], {"node-1": busier}, [hap, hap2], now=100.0).nodes[0].in_flight == 9
    old = AgentReading("http://127.0.0.1:9001", status("node-1", "a", in_flight=6), fetched_at=90.0,
                       error="timeout")
    snap = merge(NODES[:1], {"node-1": old}, [hap, hap2], now=100.0, refresh_seconds=1.0)
    assert snap.nodes[0].stale
    assert snap.nodes[0].in_flight == 7  # a stale agent's count is not trusted


def test_model_groups_mark_majority_and_minority():
    agents = {n: AgentReading("u", status(n, d), fetched_at=100.0)
              for n, d in (("node-1", "aaa"), ("node-3", "aaa"))}
    nodes = NODES + [NodeConfig("node-4", agent="http://x:1")]
    agents["node-4"] = AgentReading("u", status("node-4", "bbb"), fetched_at=100.0)
    snap = merge(nodes, agents, [], now=100.0)
    groups = snap.model_groups()
    assert groups[0].digest == "aaa" and groups[0].target and groups[0].nodes == ("node-1", "node-3")
    assert snap.nodes_differing_from_target() == ("node-4",)
    assert groups[-1].digest is None and groups[-1].nodes == ("node-2",)


def test_model_tie_has_no_majority():
    agents = {"node-1": AgentReading("u", status("node-1", "a"), 1.0),
              "node-3": AgentReading("u", status("node-3", "b"), 1.0)}
    snap = merge([NODES[0], NODES[2]], agents, [], now=1.0)
    assert snap.majority_digest is None
    assert set(snap.nodes_differing_from_target()) == {"node-1", "node-3"}


def test_guardrail_counts_ready_primaries_only():
    hap = BalancerReading("hap", "haproxy", (
        server("node-1", 7001), server("node-2", 7002, admin=AdminState.DRAIN),
        server("asr3", 7003, backup=True)))
    snap = merge(NODES, {}, [hap], now=1.0)
    assert min_ready_refusal(snap, ["node-2"], 1) is None
    refusal = min_ready_refusal(snap, ["node-1"], 1)
    assert refusal and "node-1" in refusal.line and "0 ready primary" in refusal.line and refusal.forceable
    # a primary that is down does not count as ready
    hap_down = BalancerReading("hap", "haproxy", (server("node-1", 7001), server("node-2", 7002, health=Health.DOWN)))
    assert min_ready_refusal(merge(NODES[:2], {}, [hap_down], now=1.0), ["node-1"], 1) is not None
