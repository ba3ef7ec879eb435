"""Fuzz: the pure fleet model. merge() joins every configured node exactly once, model groups partition
the fleet with at most one strict majority, and the guardrail never lets fewer than min_ready primaries
stay ready (checked by applying the drain to the snapshot and counting again, independently)."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrtop.agentstatus import parse_status
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.control.rules import min_ready_refusal
from asrtop.fleet import MIXED, STALE_AFTER_MISSED, AgentReading, BalancerReading, merge

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])
NAMES = [f"node-{i}" for i in range(6)]
NOW = 1_000_000.0


def server(name, i):
    return st.builds(ServerState, name=st.just(name), address=st.just("127.0.0.1"), port=st.just(8000 + i),
                     weight=st.integers(0, 256), backup=st.booleans(), admin=st.sampled_from(AdminState),
                     health=st.sampled_from(Health), active_sessions=st.none() | st.integers(0, 50))


@st.composite
def fleets(draw):
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
    configs = []
    for n in names:
        i = NAMES.index(n)
        how = draw(st.sampled_from(["name", "address", "server-alias"]))
        agent = draw(st.none() | st.just(f"http://127.0.0.1:{9000 + i}"))
        if how == "name":
            configs.append(NodeConfig(n, agent=agent))
        elif how == "address":  # matched by host:port (nginx style); server named differently
            configs.append(NodeConfig(n, server="nope", address=f"127.0.0.1:{8000 + i}", agent=agent))
        else:
            configs.append(NodeConfig(n, server=n, agent=agent))
    balancers = []
    for b in range(draw(st.integers(0, 3))):
        on = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
        servers = tuple(draw(server(n, NAMES.index(n))) for n in on)
        err = draw(st.none() | st.just("unreachable"))
        balancers.append(BalancerReading(f"lb-{b}", "haproxy", () if err else servers, err, NOW))
    agents = {}
    for c in configs:
        if draw(st.booleans()):
            digest = draw(st.sampled_from(["aaa", "bbb", "ccc", None]))
            state = draw(st.sampled_from(["ok", "ok", "hashing", "error"]))
            status = parse_status({"schema": 1, "node": c.name, "model": {"state": state, "sha256": digest}})
            fetched = draw(st.none() | st.floats(NOW - 10, NOW))
            agents[c.name] = AgentReading(c.agent or "x", status, fetched)
    refresh = draw(st.sampled_from([0.5, 1.0, 2.0]))
    return configs, agents, balancers, refresh


def check_merge_joins_each_node_once(snap, configs, agents, balancers, refresh):
    assert [n.name for n in snap.nodes] == [c.name for c in configs]
    for view, cfg in zip(snap.nodes, configs):
        for b in balancers:
            matching = [s for s in b.servers if cfg.matches(s)]
            if matching:
                assert view.servers[b.name] == matching[0]
            else:
                assert b.name not in view.servers
        admins = {s.admin.value for s in view.servers.values()}
        assert view.admin_state == ("unknown" if not admins else admins.pop() if len(admins) == 1 else MIXED)
        reading = agents.get(cfg.name)
        if cfg.agent is None:
            assert not view.stale
        else:
            fresh = reading is not None and reading.fetched_at is not None and \
                NOW - reading.fetched_at <= STALE_AFTER_MISSED * refresh
            assert view.stale == (not fresh)
        sessions = [s.active_sessions for s in view.servers.values() if s.active_sessions is not None]
        assert view.active_sessions == (sum(sessions) if sessions else None)


def check_model_groups_partition_with_one_majority(snap):
    groups = snap.model_groups()
    listed = [n for g in groups for n in g.nodes]
    assert sorted(listed) == sorted(n.name for n in snap.nodes)  # every node in exactly one group
    for g in groups:
        assert all(snap.node(n).model_digest == g.digest for n in g.nodes)
    majors = [g for g in groups if g.target]
    assert len(majors) <= 1
    known = [g for g in groups if g.digest is not None]
    if majors:
        m = majors[0]
        assert m.digest is not None and all(len(m.nodes) > len(g.nodes) for g in known if g is not m)
    elif known:  # no majority only on a tie for biggest
        sizes = sorted((len(g.nodes) for g in known), reverse=True)
        assert len(sizes) > 1 and sizes[0] == sizes[1]
    differing = set(snap.nodes_differing_from_target())
    assert not differing & set(majors[0].nodes if majors else ())


def drained(snap, leaving):
    """The snapshot as it would be after draining `leaving` on every balancer."""
    nodes = tuple(dataclasses.replace(n, servers={b: dataclasses.replace(s, admin=AdminState.DRAIN)
                                                  for b, s in n.servers.items()}) if n.name in leaving else n
                  for n in snap.nodes)
    return dataclasses.replace(snap, nodes=nodes)


def ready_primaries(snap):
    return sum(1 for n in snap.nodes if n.servers and n.admin_state == "ready" and n.backup is False
               and all(s.health is not Health.DOWN for s in n.servers.values()))


def check_guardrail_never_leaves_fewer_than_min_ready(snap, leaving, min_ready):
    refused = min_ready_refusal(snap, leaving, min_ready)
    refusal = refused.line if refused else None
    after = ready_primaries(drained(snap, leaving))
    if refusal is None:  # enough stay, or nothing that counts leaves (re-draining a drained node)
        assert after >= min_ready or after == ready_primaries(snap)
    else:
        assert after < min_ready
        assert "\n" not in refusal and f"min_ready is {min_ready}" in refusal
        for more in NAMES:  # taking out more nodes is refused too
            assert min_ready_refusal(snap, leaving + [more], min_ready) is not None


# One generated fleet per case, all three properties checked on it: generation dominates the cost, so
# this gives each target the full case count in a third of the time.
@FUZZ
@given(fleets(), st.lists(st.sampled_from(NAMES + ["ghost"]), unique=True, max_size=4), st.integers(0, 4))
def test_fleet_properties(fleet, leaving, min_ready):
    configs, agents, balancers, refresh = fleet
    snap = merge(configs, agents, balancers, NOW, refresh)
    check_merge_joins_each_node_once(snap, configs, agents, balancers, refresh)
    check_model_groups_partition_with_one_majority(snap)
    check_guardrail_never_leaves_fewer_than_min_ready(snap, leaving, min_ready)


def test_guardrail_refuses_last_ready_primary():
    s = ServerState("node-0", "127.0.0.1", 8000, 1, False, AdminState.READY, Health.UP)
    snap = merge([NodeConfig("node-0")], {}, [BalancerReading("lb", "haproxy", (s,))], NOW)
    assert min_ready_refusal(snap, ["node-0"], 1) is not None
    assert min_ready_refusal(snap, [], 1) is None
