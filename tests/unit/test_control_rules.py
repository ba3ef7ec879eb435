"""Pure rules of the control layer, and the read-back check against a balancer that says yes and does nothing.

(A real HAProxy or nginx does not lie about a change, so that one case needs an in-memory balancer.)
"""

from __future__ import annotations

from dataclasses import replace

from asrtop.agentstatus import AsrReading, AgentStatus, HostReading, ModelReading
from asrtop.balancers.base import AdminState, BalancerRefused, Health, NotPersisted, ServerState
from asrtop.config import NodeConfig, parse_config
from asrtop.control import Action, BalancerOutcome, Controller
from asrtop.control.rules import consequence, no_server, on_no_balancer, summarize, took, unknown_node, validate
from asrtop.fleet import AgentReading, BalancerReading, FleetSnapshot, merge


def node_in_flight(s: FleetSnapshot, name: str) -> int | None:
    """The one in-flight figure (asrtop.fleet.NodeView.in_flight) of a node."""
    return s.node(name).in_flight


def srv(name: str, sessions: int | None = 0, queued: int | None = 0, admin=AdminState.READY, backup=False,
        weight=1) -> ServerState:
    return ServerState(name, "127.0.0.1", 8000, weight, backup, admin, Health.UP, sessions, queued)


def status(in_flight: int | None) -> AgentStatus:
    return AgentStatus("n1", "0.1", 0.0, 1.0, HostReading(), "none", None, (), AsrReading(in_flight=in_flight),
                       ModelReading(), {})


def snap(servers_a, servers_b=None, agent_in_flight=None, b_error=None, now=100.0):
    nodes = [NodeConfig("n1", agent="http://127.0.0.1:1" if agent_in_flight is not None else None),
             NodeConfig("n2"), NodeConfig("n3")]
    readings = [BalancerReading("a", "haproxy", tuple(servers_a))]
    if servers_b is not None or b_error:
        readings.append(BalancerReading("b", "haproxy", tuple(servers_b or ()), b_error))
    agents = {}
    if agent_in_flight is not None:
        agents["n1"] = AgentReading("http://127.0.0.1:1", status(agent_in_flight), now)
    return merge(nodes, agents, readings, now)


def test_in_flight_sums_balancers_and_takes_max_with_agent():
    two = [srv("n1", 3, 1), srv("n2"), srv("n3")]
    assert node_in_flight(snap(two, [srv("n1", 2), srv("n2"), srv("n3")]), "n1") == 6  # 3+1 queued + 2
    assert node_in_flight(snap(two, [srv("n1", 2)], agent_in_flight=4), "n1") == 6  # max, not sum
    assert node_in_flight(snap(two, [srv("n1", 2)], agent_in_flight=9), "n1") == 9
    no_sessions = [srv("n1", None, None), srv("n2", None, None)]  # nginx: no session counts
    assert node_in_flight(snap(no_sessions), "n1") is None
    assert node_in_flight(snap(no_sessions, agent_in_flight=2), "n1") == 2
    # a balancer unreadable: its sessions are missing, so without an agent the count is unknown
    assert node_in_flight(snap(two, b_error="gone"), "n1") is None
    assert node_in_flight(snap(two, b_error="gone", agent_in_flight=1), "n1") == 4


def test_stale_agent_is_ignored():
    s = snap([srv("n1", 1)], agent_in_flight=5)
    later = merge([v.config for v in s.nodes], {"n1": s.node("n1").agent}, s.balancers, now=200.0)
    assert node_in_flight(later, "n1") == 1


def test_consequence_lines():
    s = snap([srv("n1", 7), srv("n2"), srv("n3")])
    assert consequence(s, Action("drain", "n1")) == "n1 carries 7 in-flight requests; 2 of 3 primaries stay ready"
    assert consequence(s, Action("weight", "n2", 0)).endswith("2 of 3 primaries stay ready")
    assert consequence(s, Action("ready", "n2")) == "n2 carries 0 in-flight requests; 3 of 3 primaries ready now"
    s = snap([srv("n1", 1), srv("n2", backup=True), srv("n3", admin=AdminState.DRAIN)])
    assert consequence(s, Action("maint", "n1")) == "n1 carries 1 in-flight request; 0 of 2 primaries stay ready"


class _Fake:
    kind = "haproxy"
    max_weight = 256

    def __init__(self, name, kind="haproxy"):
        self.name, self.kind = name, kind


def test_validate_per_balancer_kind():
    hx, ngx = _Fake("hx"), _Fake("ngx", "nginx")
    ngx.max_weight = 1000
    assert validate(Action("weight", "n1", 0), [hx]) is None
    assert "nginx has no weight 0" in validate(Action("weight", "n1", 0), [hx, ngx])
    assert validate(Action("weight", "n1", 500), [ngx]) is None
    assert validate(Action("weight", "n1", 500), [ngx, hx]) == "weight 500 is out of range for hx (haproxy accepts 0-256)"
    assert validate(Action("drain", "n1"), []).startswith("no balancers configured")
    assert validate(Action("drain", ""), [hx]).startswith("drain: the node name is empty")


def test_took_nginx_down_is_drain_and_maint():
    down = srv("x", admin=AdminState.MAINT)
    assert took(Action("drain", "x"), down, "nginx") and not took(Action("drain", "x"), down, "haproxy")
    assert took(Action("maint", "x"), down, "haproxy") and not took(Action("ready", "x"), down, "nginx")


def test_summaries_say_which_balancers_did_and_did_not():
    a = Action("drain", "n1")
    ok, bad = BalancerOutcome("a", True), BalancerOutcome("b", False, "connection refused")
    assert summarize(a, [ok], {"a": "changed"}) == ("done", "drain n1: done on a")
    assert summarize(a, [ok, bad], {"a": "changed", "b": "unreachable"}) == (
        "partial", "partial: drain n1 took on a; NOT on b (b: connection refused)")
    assert summarize(a, [bad], {"b": "unreachable"})[0] == "unreachable"
    assert summarize(a, [bad], {"b": "rejected"})[0] == "rejected"


class LyingBalancer:
    """Accepts every change and keeps reporting the old state."""

    kind = "haproxy"
    max_weight = 256

    def __init__(self, name: str, refuse: bool = False):
        self.name, self.refuse = name, refuse
        self.state = [srv("n1", weight=3), srv("n2"), srv("n3")]

    def servers(self):
        return list(self.state)

    def set_state(self, server, state):
        if self.refuse:
            raise BalancerRefused(f"{self.name}: HAProxy refused `set server`: Permission denied")

    def set_weight(self, server, weight):
        self.set_state(server, None)

    def set_backup(self, server, backup):
        self.set_state(server, None)


class HonestBalancer(LyingBalancer):
    def set_weight(self, server, weight):
        self.state = [replace(s, weight=weight) if s.name == server else s for s in self.state]


async def test_read_back_disagreement_is_reported_by_name(tmp_path):
    cfg = parse_config({"cluster": {"audit_log": str(tmp_path / "a.jsonl")},
                        "nodes": [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}]})
    ctl = Controller(cfg, [HonestBalancer("good"), LyingBalancer("liar")])
    res = await ctl.apply(Action("weight", "n1", 5))
    assert res.outcome == "partial" and res.exit_code == 4
    assert "took on good" in res.message and "liar: sent, but the read-back shows weight 3, not weight 5" in res.message
    ctl = Controller(cfg, [LyingBalancer("x", refuse=True)])
    res = await ctl.apply(Action("weight", "n1", 5))
    assert (res.outcome, res.exit_code) == ("rejected", 7)
    assert res.message == "rejected: weight n1 5 changed nothing (x: HAProxy refused `set server`: Permission denied)"


class ForgetfulBalancer(HonestBalancer):
    """Takes the change, but cannot keep it across a reload (HAProxy: the server-state-file not written)."""

    def set_weight(self, server, weight):
        super().set_weight(server, weight)
        raise NotPersisted(f"{self.name}: weight {server} {weight}: done, but server-state-file /x/state was not "
                           "written (Permission denied)")


async def test_a_change_that_took_but_was_not_kept_is_done_with_a_warning(tmp_path):
    cfg = parse_config({"cluster": {"audit_log": str(tmp_path / "a.jsonl")},
                        "nodes": [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}]})
    ctl = Controller(cfg, [HonestBalancer("good"), ForgetfulBalancer("hx")])
    res = await ctl.apply(Action("weight", "n1", 5))
    assert (res.outcome, res.exit_code) == ("done", 0)
    assert res.message == ("weight n1 5: done on good, hx (WARNING: hx: weight n1 5: done, but server-state-file "
                           "/x/state was not written (Permission denied))")
    (hx,) = [b for b in res.balancers if b.balancer == "hx"]
    assert hx.ok and hx.error is None and hx.after is not None and hx.after.weight == 5 and "Permission" in hx.warning
    assert "WARNING: hx: weight n1 5" in (tmp_path / "a.jsonl").read_text()  # audited with the message


def test_empty_node_names_and_long_input_in_one_sane_line():
    hx = [LyingBalancer("hx")]
    assert validate(Action("drain", ""), hx) == \
        "drain: the node name is empty; name a node of the cluster file (`asrtop status` lists them)"
    assert validate(Action("maint", " \t"), hx).startswith("maint: the node name is empty (' \\t'); ")
    long = "n" * 500
    line = validate(Action("weight", "n1", long), hx)  # type: ignore[arg-type]
    assert line == f"weight must be a whole number, got '{'n' * 79}…"
    assert len(validate(Action(long, "n1"), hx)) < 150  # type: ignore[arg-type]
    assert unknown_node(long, ["n1", "n2"]) == f"unknown node '{'n' * 79}… (known: n1, n2)"


def test_unknown_node_of_a_big_fleet_names_the_closest():
    known = [f"node-{i}" for i in range(1000)]
    line = unknown_node("node-42x", known)
    assert line.startswith("unknown node 'node-42x' (known: node-42, ") and \
        line.endswith(" and 990 more (`asrtop status` lists them))")
    assert unknown_node("x", []) == "unknown node 'x' (known: none)"


def test_a_node_that_matches_nothing_lists_the_closest_addresses():
    servers = [ServerState(n, a, p, 1, False, AdminState.READY, Health.UP)
               for n, a, p in (("s1", "192.168.1.1", 1), ("s2", "10.0.0.70", 9000), ("s3", "10.9.9.9", 8000),
                               ("s4", "10.0.0.7", 8001))]
    node = NodeConfig("gpu-7", address="10.0.0.7:8000")
    assert no_server(node, servers) == ("has no server for gpu-7 (server gpu-7 or address 10.0.0.7:8000; it has "
                                        "10.0.0.7:8001 (s4), 10.9.9.9:8000 (s3), 10.0.0.70:9000 (s2) and 1 more)")
    assert on_no_balancer(node, [("hx", servers), ("hy", [])]) == (
        "gpu-7 is not a server on any balancer: looked for server gpu-7 or address 10.0.0.7:8000; hx has "
        "10.0.0.7:8001 (s4), 10.9.9.9:8000 (s3), 10.0.0.70:9000 (s2), 192.168.1.1:1 (s1); hy has no servers")
    by_name = no_server(NodeConfig("s9"), servers)  # no address: by server name
    assert by_name.startswith("has no server for s9 (server s9; it has 192.168.1.1:1 (s1), ")
