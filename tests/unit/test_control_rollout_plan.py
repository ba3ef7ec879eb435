"""The rollout plan (asrtop.control.rollout_plan, PURE): order, batches, min_ready over a batch, the target
digest's source, bad input, and the one wording (RolloutPlan.lines) the CLI and the console show."""

from __future__ import annotations

from asrtop.agentstatus import AgentStatus, AsrReading, HostReading, ModelReading
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import ClusterConfig, NodeConfig
from asrtop.control.rollout_model import (
    TARGET_FROM_CONFIG,
    TARGET_FROM_FIRST,
    TARGET_FROM_FLAG,
    RolloutPlan,
    RolloutSettings,
)
from asrtop.control.rollout_plan import batches, build_plan, check_settings
from asrtop.fleet import AgentReading, BalancerReading, merge

HOOK = ("upgrade", "{host}")
SHA_A, SHA_B = "a" * 64, "b" * 64


def srv(name: str, sessions: int = 0, backup: bool = False, admin=AdminState.READY, weight: int = 3) -> ServerState:
    return ServerState(name, "127.0.0.1", 8000, weight, backup, admin, Health.UP, sessions, 0)


def status(name: str, digest: str | None = SHA_A) -> AgentStatus:
    return AgentStatus(name, "0.1", 100.0, 1.0, HostReading(), "none", None, (), AsrReading(up=True, in_flight=0),
                       ModelReading("ok" if digest else "missing", digest), {})


def fleet(servers, agents: bool = True, model_sha256: str | None = None):
    nodes = [NodeConfig(s.name, address=f"127.0.0.1:{9000 + i}",
                        agent=f"http://127.0.0.1:{9100 + i}" if agents else None) for i, s in enumerate(servers)]
    readings = {n.name: AgentReading(n.agent, status(n.name), 100.0) for n in nodes if n.agent}
    return merge(nodes, readings, [BalancerReading("hx", "haproxy", tuple(servers))], 100.0,
                 model_sha256=model_sha256)


def config(min_ready: int = 1, model_sha256: str | None = None) -> ClusterConfig:
    return ClusterConfig(None, min_ready=min_ready, model_sha256=model_sha256)


def plan(servers, wanted=(), settings=None, min_ready=1, model=None, agents=True, kinds=(("hx", "haproxy"),),
         read_only=False) -> RolloutPlan:
    return build_plan(fleet(servers, agents, model), config(min_ready, model), list(wanted),
                      settings or RolloutSettings(hook=HOOK), kinds, read_only)


FOUR = [srv("n3", 5), srv("n1", 2), srv("n2", 2), srv("n4", 9, backup=True)]


def test_order_is_backups_first_then_least_loaded_ties_by_name():
    p = plan(FOUR)
    assert [n.name for n in p.nodes] == ["n4", "n1", "n2", "n3"]
    assert p.batches == (("n4",), ("n1",), ("n2",), ("n3",))
    assert not p.refusals
    assert p.nodes[0].backup is True and p.nodes[1].in_flight == 2 and p.nodes[1].weight == 3


def test_a_list_keeps_only_those_nodes_in_the_same_order():
    p = plan(FOUR, wanted=["n3", "n4"])
    assert [n.name for n in p.nodes] == ["n4", "n3"]


def test_batches_of_max_unavailable():
    assert batches(["a", "b", "c", "d", "e"], 2) == (("a", "b"), ("c", "d"), ("e",))
    p = plan(FOUR, settings=RolloutSettings(hook=HOOK, max_unavailable=2))
    assert p.batches == (("n4", "n1"), ("n2", "n3"))
    assert "batches: [n4, n1]  [n2, n3]" in p.lines()


def test_max_unavailable_over_min_ready_is_refused_at_plan_time():
    # 3 primaries, min_ready 2: one out at a time leaves 2, two at once leave 1
    assert not plan(FOUR, min_ready=2).refusals
    p = plan(FOUR, settings=RolloutSettings(hook=HOOK, max_unavailable=2), min_ready=2)
    assert [r.outcome for r in p.refusals] == ["refused"]
    assert "taking n2, n3 out would leave 1 ready primary node(s), min_ready is 2" in p.refusal
    assert "--max-unavailable 2" in p.refusal


def test_capacity_line_is_the_worst_batch():
    assert plan(FOUR).capacity == "while a node is out, 2 of 3 primaries stay ready (min_ready 1)"
    drained = [srv("n1", admin=AdminState.DRAIN), srv("n2"), srv("n3")]
    assert plan(drained).capacity == "while a node is out, 1 of 3 primaries stay ready (min_ready 1)"


def test_target_from_flag_then_config_then_first_node():
    p = plan(FOUR, settings=RolloutSettings(hook=HOOK, expect_model=SHA_B.upper()), model=SHA_A)
    assert (p.target, p.target_source) == (SHA_B, TARGET_FROM_FLAG)
    p = plan(FOUR, model=SHA_A)
    assert (p.target, p.target_source) == (SHA_A, TARGET_FROM_CONFIG)
    p = plan(FOUR)
    assert (p.target, p.target_source) == (None, TARGET_FROM_FIRST)
    assert "target model: whatever the first upgraded node reports; every later node must match it" in p.lines()
    assert f"target model: {SHA_B[:12]} (--expect-model)" in plan(
        FOUR, settings=RolloutSettings(hook=HOOK, expect_model=SHA_B)).lines()


def test_bad_input_is_one_line_each():
    p = plan(FOUR, wanted=["n1", "n9"])
    assert p.refusals[0].outcome == "bad-input" and p.refusals[0].line.startswith("unknown node 'n9' (known:")
    assert check_settings(RolloutSettings(hook=())).startswith("no hook: give --hook")
    assert check_settings(RolloutSettings(hook=HOOK, expect_model="abc")).startswith(
        "--expect-model must be a SHA-256 digest (64 hex digits)")
    assert check_settings(RolloutSettings(hook=HOOK, max_unavailable=0)) == "--max-unavailable must be 1 or more, got 0"
    assert check_settings(RolloutSettings(hook=HOOK, health_timeout=0)) == "--health-timeout must be > 0, got 0"
    p = plan(FOUR, settings=RolloutSettings(hook=HOOK, expect_model="zz"))
    assert p.refusals[0].outcome == "bad-input" and p.target is None
    assert all("\n" not in r.line for r in p.refusals)


def test_a_node_without_an_agent_is_refused_by_name():
    p = plan([srv("n1"), srv("n2")], agents=False)
    assert p.refusals[-1].line.startswith("refused: n1, n2 has no agent: its health and model cannot be verified")


def test_read_only_refuses():
    assert "read-only mode, a rollout not sent" in plan(FOUR, read_only=True).refusal


def test_ramp_on_nginx_is_a_note_not_a_ramp():
    ramped = RolloutSettings(hook=HOOK, ramp=30)
    assert plan(FOUR, settings=ramped).notes == ()
    p = plan(FOUR, settings=ramped, kinds=(("hx", "haproxy"), ("ng", "nginx")))
    assert p.notes == ("ng cannot ramp weights (a reload per step): no ramp, every node gets its weight back at once",)
    assert any(line.startswith("note: ng cannot ramp") for line in p.lines())


def test_lines_read_as_a_plan_and_survive_the_state_file():
    p = plan(FOUR)
    lines = p.lines()
    assert lines[0] == "rollout of 4 nodes, one at a time (--max-unavailable 1), in this order:"
    assert lines[1] == f"  1. n4  backup, weight 3, 9 in flight, model {SHA_A[:12]}"
    assert "hook: upgrade '{host}'  (never run by a shell; output to rollout-logs/ beside the audit log)" in lines
    assert "capacity: while a node is out, 2 of 3 primaries stay ready (min_ready 1)" in lines
    assert RolloutPlan.from_json(p.as_json()).lines() == lines


def test_a_node_without_an_address_is_refused_by_name():
    snap = fleet([srv("n1"), srv("n2")])
    nodes = tuple(v.config for v in snap.nodes)
    bare = merge([NodeConfig("n1", agent=nodes[0].agent), nodes[1]], {v.name: v.agent for v in snap.nodes},
                 snap.balancers, 100.0)
    p = build_plan(bare, config(), [], RolloutSettings(hook=HOOK), (("hx", "haproxy"),))
    assert [r.line for r in p.refusals] == ["refused: n1 has no address: the canary cannot be sent straight to it "
                                            "(add address = \"HOST:PORT\" to its [[nodes]] entry)"]


def test_an_unreadable_balancer_is_refused_at_plan_time():
    snap = fleet(FOUR)
    down = merge([v.config for v in snap.nodes], {v.name: v.agent for v in snap.nodes},
                 [*snap.balancers, BalancerReading("hx-b", "haproxy", (), "hx-b: connection refused")], 100.0)
    p = build_plan(down, config(), [], RolloutSettings(hook=HOOK), (("hx", "haproxy"), ("hx-b", "haproxy")))
    assert [(r.outcome, r.line) for r in p.refusals] == [
        ("unreachable", "unreachable: hx-b: connection refused; nothing changed")]
