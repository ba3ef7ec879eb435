"""States and the model line as the console and `asrtop status` both say them (asrtop.fleet_wording): maint is
maint (never down), a re-create in progress says so, a node whose model is unknown never counts as matching."""

from __future__ import annotations

from asrtop.agentstatus import parse_status
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.fleet import AgentReading, BalancerReading, merge
from asrtop.fleet_wording import agent_age, response_text, state_counts, state_word
from asrtop.status_report import render_table, rows, status_json, summary
from asrtop.tui.format import DIM, row_cells, seconds, state_cell, table_context
from asrtop.tui.summary import header_lines, model_badge, summarize

NOW = 100.0
A, B = "366146db9020" + "a" * 52, "8f1a19189105" + "b" * 52


def server(name, admin=AdminState.READY, health=Health.UP, backup=False):
    return ServerState(name, "127.0.0.1", 7000 + int(name[-1]), 3, backup, admin, health, 0)


def agent(name, digest=A, state="ok"):
    st = parse_status({"schema": 1, "node": name, "model": {"state": state, "sha256": digest}})
    return AgentReading(f"http://127.0.0.1:900{name[-1]}", st, NOW)


def fleet(servers, agents=None, changing=None):
    nodes = [NodeConfig(s.name, agent=f"http://127.0.0.1:900{s.name[-1]}") for s in servers]
    agents = agents if agents is not None else {s.name: agent(s.name) for s in servers}
    return merge(nodes, agents, [BalancerReading("hx-a", "haproxy", tuple(servers))], NOW, changing=changing or {})


def header_text(snap) -> str:
    return "\n".join("".join(t for t, _ in line) for line in header_lines(summarize(snap), "lab", False))


def test_maint_is_maint_not_down_and_counted_apart():
    # node-3 in maint whose checks read down (paused by HAProxy, or failing before the maint): it is maint only
    snap = fleet([server("node-1"), server("node-2", health=Health.DOWN),
                  server("node-3", AdminState.MAINT, Health.DOWN), server("node-4", AdminState.MAINT, Health.PAUSED)])
    assert [state_word(n).text for n in snap.nodes] == ["ready", "DOWN", "maint", "maint"]
    assert [state_cell(n)[0] for n in snap.nodes] == ["ready", "DOWN", "maint", "maint"]  # the console's cells
    assert [r[1] for r in rows(snap)] == ["ready", "DOWN", "maint", "maint"]  # `status`'s STATE column
    assert state_counts(snap.nodes).text() == "1 ready, 2 maint, 1 DOWN"
    assert summary(snap).startswith("4 nodes (1 ready, 2 maint, 1 DOWN)")
    s = summarize(snap)
    assert (s.ready, s.maint, s.down, s.serving) == (1, 2, 1, 1)
    assert "2 maint · 1 down" in header_text(snap)


def test_a_running_re_create_says_so_instead_of_maint():
    why = "`asrtop backup node-2 on` re-creates its server on hx-a"
    snap = fleet([server("node-1"), server("node-2", AdminState.MAINT, Health.PAUSED)], changing={"node-2": why})
    n2 = snap.node("node-2")
    assert n2.changing == why and state_word(n2).text == "re-create" and state_cell(n2)[0] == "renew"  # 5 wide
    assert summary(snap).startswith("2 nodes (1 ready, 1 re-create)")
    assert f"  node-2: re-create: {why}" in render_table(snap)
    assert status_json(snap, "lab")["nodes"][1]["changing"] == why
    assert "1 re-create" in header_text(snap)
    # its server deleted for a moment: still a re-create, and no "matches no server" note for it
    gone = merge([NodeConfig("node-1"), NodeConfig("node-2")], {},
                 [BalancerReading("hx-a", "haproxy", (server("node-1"),))], NOW, changing={"node-2": why})
    assert state_word(gone.node("node-2")).text == "re-create" and gone.notes == ()


def test_model_unknown_is_never_counted_as_matching():
    servers = [server(f"node-{i}") for i in range(1, 5)]
    agents = {f"node-{i}": agent(f"node-{i}") for i in range(1, 4)}
    agents["node-4"] = agent("node-4", None, "error")  # its hash failed
    snap = fleet(servers, agents)
    text, style = model_badge(summarize(snap))
    assert text == "3 of 4 nodes on model 366146d, 1 unknown" and "green" not in style
    assert "3 of 4 nodes on model 366146d, 1 unknown (unknown: node-4 (error))" in summary(snap)
    same = fleet(servers)
    assert model_badge(summarize(same))[0] == "all 4 nodes on model 366146d"
    agents["node-3"] = agent("node-3", B)
    drift = fleet(servers, agents)
    assert model_badge(summarize(drift)) == ("2 of 4 nodes on model 366146d, 1 differs!, 1 unknown", "bold reverse")
    assert "(differs: node-3; unknown: node-4 (error))" in summary(drift)


def test_the_agent_age_reads_the_same_in_the_console_and_in_status():
    """One wording (asrtop.fleet_wording.agent_age): `status` writes it whole, the console's 5-wide AGE cell its
    short form; a stale answer keeps its age in `status` only."""
    names = ("node-1", "node-2", "node-3", "node-4", "node-5")
    servers = [server(n) for n in names]
    nodes = [NodeConfig(n, agent=None if n == "node-5" else f"http://127.0.0.1:900{n[-1]}") for n in names]
    st = agent("node-1").status
    agents = {"node-1": AgentReading(nodes[0].agent, st, NOW - 12.4),  # fresh (stale after 3 x 10 s)
              "node-2": AgentReading(nodes[1].agent, st, NOW - 200, error="timed out"),  # answered once, long ago
              "node-4": AgentReading(nodes[3].agent, None, None, error="connection refused")}  # never answered
    snap = merge(nodes, agents, [BalancerReading("hx-a", "haproxy", tuple(servers))], NOW, refresh_seconds=10)
    whole = ["12s", "stale 3m", "?", "down", "none"]  # node-3: not answered yet, no error either
    short = ["12s", "stale", "?", "down", "none"]
    assert [agent_age(n, NOW).text for n in snap.nodes] == whole
    assert [r[-1] for r in rows(snap)] == whole  # `status`'s AGENT column
    ctx = table_context(snap)
    assert [row_cells(n, ctx)[-1][0] for n in snap.nodes] == short  # the console's AGE cells
    assert [row_cells(n, ctx)[-1][1] for n in snap.nodes] == ["", "bold red", DIM, "bold red", DIM]


def test_a_response_time_reads_the_same_in_the_console_and_in_status():
    figures = [None, 0.2404, 1.5, 99.94, 130.2]
    assert [response_text(v) for v in figures] == ["—", "240ms", "1.5s", "99.9s", "130s"]
    assert [seconds(v) for v in figures] == [response_text(v) for v in figures]  # the console's RT cell
    assert response_text(None, "-") == "-"  # `status` marks unknown with its own dash
