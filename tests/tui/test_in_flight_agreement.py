"""One in-flight figure: on the same snapshot the console's table, header, sort and history show what
`asrtop status`, `--json` and `drain --wait` show (asrtop.fleet.NodeView.in_flight)."""

from __future__ import annotations

from dataclasses import replace

from fakes import T0, status

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.fleet import AgentReading, BalancerReading, merge
from asrtop.history import FleetHistory
from asrtop.status_report import rows, status_json
from asrtop.tui.format import COLUMN_KEYS, row_cells, sort_value, table_context
from asrtop.tui.summary import summarize

INFL = COLUMN_KEYS.index("inflight")


def server(name: str, port: int, sessions: int | None, queued: int | None) -> ServerState:
    return ServerState(name, "127.0.0.1", port, 1, False, AdminState.READY, Health.UP, sessions, queued)


def snapshot():
    """n1: agent 3 < sessions 2 + queue 4 (6); n2: agent 9 > sessions 1 (9); n3: stale agent, sessions 5 (5);
    n4: nginx-like, no session count and no agent (unknown)."""
    nodes = [NodeConfig(f"n{i}", agent=f"http://127.0.0.1:{20000 + i}" if i < 4 else None) for i in range(1, 5)]
    agents = {}
    for i, infl, fetched in ((1, 3, T0), (2, 9, T0), (3, 7, T0 - 60)):
        st = status(f"n{i}", i)
        st = replace(st, asr=replace(st.asr, in_flight=infl))
        agents[f"n{i}"] = AgentReading(nodes[i - 1].agent, st, fetched)
    lb = BalancerReading("hx", "haproxy", (server("n1", 1, 2, 4), server("n2", 2, 1, 0), server("n3", 3, 5, 0),
                                           server("n4", 4, None, None)))
    return merge(nodes, agents, [lb], T0, 1.0)


def test_console_and_status_json_give_the_same_in_flight():
    snap = snapshot()
    doc = status_json(snap, "lab")
    cli = {n["name"]: n["in_flight"] for n in doc["nodes"]}
    assert cli == {"n1": 6, "n2": 9, "n3": 5, "n4": None}  # max(agent, sessions + queue); stale agent ignored
    ctx = table_context(snap)
    console = {n.name: row_cells(n, ctx)[INFL][0] for n in snap.nodes}
    assert console == {k: "—" if v is None else str(v) for k, v in cli.items()}
    table = {r[0]: r[5] for r in rows(snap)}  # `asrtop status` INFL column
    assert table == {k: "-" if v is None else str(v) for k, v in cli.items()}
    assert summarize(snap).in_flight == doc["summary"]["in_flight"] == 20
    assert [sort_value(n, "inflight", T0) for n in snap.nodes] == [(1, 6.0), (1, 9.0), (1, 5.0), (0, 0.0)]
    history = FleetHistory(capacity=4)
    history.record(snap)
    assert history.fleet_series("in_flight")[-1] == 20


def test_the_fleets_in_flight_total_is_summed_once_for_the_header_and_status():
    """asrtop.fleet_wording.in_flight_total: the header's figure, `status`'s summary line and --json's two
    fields, from one sum; a fleet where no node knows its count shows no total (the header's dash), not 0."""
    from asrtop.fleet_wording import in_flight_total
    from asrtop.status_report import summary

    snap = snapshot()
    total = in_flight_total(snap.nodes)
    assert (total.total, total.known, total.unknown, total.figure) == (20, 3, 1, 20)
    doc = status_json(snap, "lab")["summary"]
    assert (doc["in_flight"], doc["in_flight_unknown"]) == (20, 1)
    assert "in flight 20 (some unknown)" in summary(snap) and summarize(snap).in_flight == 20
    unknown = [n for n in snap.nodes if n.name == "n4"]
    assert in_flight_total(unknown).figure is None and in_flight_total(unknown).text() == "in flight 0 (some unknown)"
