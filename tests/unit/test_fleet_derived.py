"""NodeView's figures are worked out once per view (issue 17: a refresh reads each of them for every node in
the history, the rules, the header and the table), from the servers in one pass, and say exactly what the
per-figure definitions below say (the operator sees the same numbers). Counted and compared, not timed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from asrtop.agentstatus import AgentStatus, AsrReading, HostReading, ModelReading, RequestStats, StreamsReading
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.fleet import MIXED, AgentReading, AgentTraffic, BalancerReading, FleetSnapshot, NodeView

FIGURES = ("admin_state", "health", "weight", "backup", "active_sessions", "queued", "in_flight", "request_rate",
           "errors_5xx", "errors_5xx_rate", "response_seconds", "audio_rate", "requests_source", "agent_counted",
           "model_digest", "streams_open", "oldest_in_flight_seconds")


class CountedServers(Mapping):
    """A node's servers that count how often they are read."""

    def __init__(self, servers: dict[str, ServerState]):
        self.servers, self.reads = servers, 0

    def __getitem__(self, key):
        self.reads += 1
        return self.servers[key]

    def __iter__(self):
        self.reads += 1
        return iter(self.servers)

    def __len__(self):
        return len(self.servers)

    def values(self):
        self.reads += 1
        return self.servers.values()

    def items(self):
        self.reads += 1
        return self.servers.items()


def server(admin=AdminState.READY, health=Health.UP, weight=3, backup=False, sessions=2, queued=1, rate=4.0,
           total=10, errors=1, rt=0.2) -> ServerState:
    return ServerState("s", "10.0.0.1", 10095, weight, backup, admin, health, sessions, queued, rate, total,
                       errors, rt)


def agent(in_flight: int | None = 5, traffic: AgentTraffic | None = None, requests: RequestStats | None = None,
          streams: StreamsReading | None = None, model_state: str = "ok") -> AgentReading:
    st_ = AgentStatus(node="n", agent_version="0.1.0", collected_at=1.0, interval_seconds=1.0,
                      host=HostReading(), gpu_source="none", gpu_error=None, gpus=(),
                      asr=AsrReading(url="http://127.0.0.1:1", up=True, in_flight=in_flight, requests=requests,
                                     streams=streams),
                      model=ModelReading(model_state, "ab" * 32, 1, 1, None, ()), versions={})
    return AgentReading("http://127.0.0.1:10860", st_, 1.0, None, 0.001, traffic)


def test_a_views_figures_read_its_servers_once_however_often_they_are_asked():
    servers = CountedServers({"a": server(), "b": server(AdminState.DRAIN, sessions=4)})
    view = NodeView("n", NodeConfig("n"), agent(), servers)
    first = [getattr(view, f) for f in FIGURES]
    reads = servers.reads
    assert [getattr(view, f) for f in FIGURES] == first  # asked again: the same answers, the servers not read
    assert servers.reads == reads <= 1
    assert first[:3] == [MIXED, "up", 3] and view.in_flight == 8  # max(agent 5, (2+1) + (4+1))


def test_the_remembered_figures_are_not_fields():
    """Equality (the table's diff), repr and dataclasses.replace see the fields only: a replaced view works
    its figures out again from its own fields."""
    view = NodeView("n", NodeConfig("n"), agent(9), {"a": server(sessions=1, queued=0)})
    fresh = NodeView("n", NodeConfig("n"), agent(9), {"a": server(sessions=1, queued=0)})
    assert view.in_flight == 9
    assert view == fresh and repr(view) == repr(fresh)
    assert dataclasses.replace(view, stale=True).in_flight == 1  # the agent is stale: the balancer's count


def test_a_snapshots_model_facts_are_worked_out_once():
    nodes = tuple(NodeView(f"n{i}", NodeConfig(f"n{i}"), agent(), {}) for i in range(3))
    snap = FleetSnapshot(1.0, nodes)
    assert snap.model_groups() is snap.model_groups()
    assert snap.nodes_differing_from_target() is snap.nodes_differing_from_target() == ()
    assert snap.nodes_model_unknown() is snap.nodes_model_unknown() == ()


# -- the one pass over the servers says what each figure's own definition says -------------------------------

def reference(v: NodeView) -> dict:
    """Each figure worked out on its own, as NodeView did per read before issue 17."""
    ss = list(v.servers.values())

    def one(values):
        values = set(values)
        return values.pop() if len(values) == 1 else None

    def agreed(values):
        values = set(values)
        return "unknown" if not values else values.pop() if len(values) == 1 else MIXED

    def total(values):
        values = [x for x in values if x is not None]
        return sum(values) if values else None

    counts = any(s.request_rate is not None for s in ss)
    sessions = [(s.active_sessions or 0) + (s.queued or 0) for s in ss if s.active_sessions is not None]
    balancer_sum = sum(sessions) if sessions else None
    status = v.agent.status if v.agent else None
    fresh = status if status is not None and not v.stale else None
    said = fresh.asr.in_flight if fresh is not None else None
    in_flight = ((None if v.balancer_unread else balancer_sum) if said is None
                 else said if balancer_sum is None else max(said, balancer_sum))
    traffic = v.agent.traffic if v.agent is not None and not v.stale else None
    reqs = fresh.asr.requests if fresh is not None else None
    streams = fresh.asr.streams if fresh is not None else None
    source = ("balancer" if counts else "agent" if traffic is not None or (fresh is not None and fresh.asr.requests)
              else None)
    rts = [s.avg_response_seconds for s in ss if s.avg_response_seconds is not None and (s.requests_total or 0) > 0]
    return {
        "status": status, "admin_state": agreed(s.admin.value for s in ss),
        "health": agreed(s.health.value for s in ss),
        "weight": one(s.weight for s in ss), "backup": one(s.backup for s in ss),
        "active_sessions": total(s.active_sessions for s in ss), "queued": total(s.queued for s in ss),
        "in_flight": in_flight,
        "oldest_in_flight_seconds": reqs.oldest_in_flight_seconds if reqs is not None else None,
        "streams": streams, "streams_open": streams.open if streams is not None else None,
        "oldest_stream_seconds": streams.oldest_seconds if streams is not None and streams.open else None,
        "requests_source": source, "agent_counted": source == "agent",
        "request_rate": total(s.request_rate for s in ss) if counts else
        traffic.request_rate if traffic is not None else None,
        "errors_5xx": total(s.errors_5xx_total for s in ss) if counts else
        None if reqs is None else reqs.by_class.get("5xx", 0) if reqs.total is not None or reqs.by_class else None,
        "response_seconds": (max(rts) if rts else None) if counts else
        traffic.response_seconds if traffic is not None else None,
        "errors_5xx_rate": None if counts else traffic.errors_5xx_rate if traffic is not None else None,
        "audio_rate": traffic.audio_rate if traffic is not None else None,
        "model_digest": status.model.sha256 if status is not None and status.model.state == "ok" else None,
    }


maybe_int = st.none() | st.integers(0, 50)
maybe_float = st.none() | st.floats(0, 100)
servers = st.builds(server, st.sampled_from(AdminState), st.sampled_from(Health), st.integers(0, 3), st.booleans(),
                    maybe_int, maybe_int, maybe_float, maybe_int, maybe_int, maybe_float)
traffics = st.none() | st.builds(AgentTraffic, maybe_float, maybe_float, maybe_float, maybe_float)
agents = st.none() | st.builds(
    agent, maybe_int, traffics,
    st.none() | st.builds(RequestStats, maybe_int, st.sampled_from([{}, {"2xx": 3}, {"5xx": 2, "2xx": 1}]),
                          oldest_in_flight_seconds=maybe_float),
    st.none() | st.builds(StreamsReading, st.just("proxy"), maybe_int, maybe_float),
    st.sampled_from(["ok", "hashing"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(servers, max_size=3), agents, st.booleans(), st.booleans())
def test_the_one_pass_says_what_each_figures_definition_says(ss, reading, stale, unread):
    view = NodeView("n", NodeConfig("n", agent="http://127.0.0.1:10860"), reading,
                    {f"lb{i}": s for i, s in enumerate(ss)}, stale, unread)
    want = reference(view)
    assert {k: getattr(view, k) for k in want} == want


def test_the_problem_rules_read_a_plain_nodes_servers_once():
    """Ready and up everywhere (most of a 1,000-node fleet): the rules and the history judge such a node from its
    figures, read from its servers in one pass, not by a pass of their own per rule."""
    from asrtop.config import ProblemsConfig
    from asrtop.history import FleetHistory
    from asrtop.problems.rules import tracker

    nodes = tuple(NodeView(f"n{i}", NodeConfig(f"n{i}", agent="http://127.0.0.1:1"), agent(),
                           CountedServers({"a": server(), "b": server()})) for i in range(20))
    snap = FleetSnapshot(1.0, nodes, (BalancerReading("a", "haproxy"), BalancerReading("b", "haproxy")))
    history = FleetHistory(10)
    history.record(snap)
    tracker(ProblemsConfig()).update(snap, history)
    assert [n.servers.reads for n in nodes] == [1] * len(nodes)
