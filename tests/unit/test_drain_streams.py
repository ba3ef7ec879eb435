"""Drains that know about streams, in memory: the agent's "streams" parsed (unknown is not 0), the drain's
stream line in the plan, `drain --wait` following live streams to zero with its estimate words, and
--cutoff: refused for nginx before anything is sent, announced, cut through every HAProxy and audited.
The same against real HAProxy, agents and streaming load: tests/integration/test_drain_streams_e2e.py."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from asrtop import commands
from asrtop.agentstatus import parse_status
from asrtop.balancers.base import AdminState, BalancerUnreachable, Health, ServerState
from asrtop.config import parse_config
from asrtop.control import Action, Controller
from asrtop.control.cutoff import cut_open, refusal
from asrtop.control.drain_words import DrainWatch, cutoff_clause, streams_clause
from asrtop.timewords import age_words
from asrtop.exitcodes import BAD_INPUT, OK, PARTIAL
from asrtop.fleet import AgentReading, BalancerReading, merge

STREAMS = {"source": "connections", "open": 4, "oldest_seconds": 723.5,
           "ages": [[60, 1], [300, 2], [600, 2], [1800, 4], [None, 4]], "opened_total": 120, "closed_total": 116}


def status(streams=None, in_flight=0, node="n1"):
    asr = {"in_flight": in_flight, "probe": {"kind": "ws", "target": "ws://127.0.0.1:10095/"}}
    if streams is not None:
        asr["streams"] = streams
    return parse_status({"schema": 1, "node": node, "asr": asr})


# -- 1. parse ------------------------------------------------------------------------------------------

def test_streams_and_probe_are_parsed_and_absent_streams_are_unknown_not_zero():
    s = status(STREAMS).asr
    assert s.streams.open == 4 and s.streams.oldest_seconds == 723.5 and s.streams.source == "connections"
    assert s.streams.ages[-1] == (None, 4) and s.streams.ages[0] == (60.0, 1)
    assert (s.streams.opened_total, s.streams.closed_total, s.streams.frames_total) == (120, 116, None)
    assert (s.probe_kind, s.probe_target) == ("ws", "ws://127.0.0.1:10095/")
    assert status().asr.streams is None
    junk = status({"source": "x", "open": -1, "oldest_seconds": "old", "ages": [[1], ["a", 2], [5, True]]}).asr
    assert junk.streams.open is None and junk.streams.oldest_seconds is None and junk.streams.ages == ()
    assert junk.streams.source is None


def view(streams=None, in_flight=0, fetched=99.5, admin=AdminState.DRAIN, scur=0):
    cfg = parse_config({"cluster": {}, "nodes": [{"name": "n1", "agent": "http://127.0.0.1:1"}]})
    reading = AgentReading("http://127.0.0.1:1", status(streams, in_flight), fetched_at=fetched)
    hap = BalancerReading("hx", "haproxy", (ServerState("n1", "127.0.0.1", 1, 1, False, admin, Health.UP,
                                                         active_sessions=scur),))
    return merge(cfg.nodes, {"n1": reading}, [hap], now=100.0).nodes[0]


def test_node_view_streams_are_none_when_the_agent_reports_none_or_is_stale():
    assert view(STREAMS).streams_open == 4 and view(STREAMS).oldest_stream_seconds == 723.5
    assert view().streams_open is None and view().oldest_stream_seconds is None
    assert view(STREAMS, fetched=50.0).streams_open is None  # stale: unknown
    none_open = dict(STREAMS, open=0, oldest_seconds=None)
    assert view(none_open).streams_open == 0 and view(none_open).oldest_stream_seconds is None


# -- 2. wording -----------------------------------------------------------------------------------------

def test_the_drain_line_says_streams_and_their_oldest_age_only_when_there_are_some():
    assert streams_clause(view(STREAMS)) == ("n1 carries 4 live streams, the oldest 12 min: the drain lasts "
                                             "until they end")
    assert streams_clause(view()) is None
    assert streams_clause(view(dict(STREAMS, open=0, oldest_seconds=None))) is None
    assert age_words(45) == "45 s" and age_words(3900) == "1 h 05 min" and age_words(125) == "2 min 5 s"
    assert cutoff_clause(120, 4) == "streams still open after 120 s will be cut (4 open now)"


def test_the_wait_estimates_from_streams_that_ended_and_says_when_it_cannot():
    watch = DrainWatch("n1")
    first = watch.add(0.0, view(STREAMS, scur=5))
    assert not first.empty and first.eta is None
    assert first.line() == ("4 live streams (oldest 12 min), 1 other in flight, waited 0 s, no estimate until a "
                            "stream ends (the oldest is 12 min old)")
    watch.add(30.0, view(dict(STREAMS, open=4), scur=4))
    later = watch.add(60.0, view(dict(STREAMS, open=2, oldest_seconds=783.5), scur=2))
    # 4 at 30 s, 2 at 60 s: one stream per 15 s, 2 left: about 30 s
    assert later.eta == pytest.approx(30.0)
    assert later.line() == ("2 live streams (oldest 13 min), 0 other in flight, waited 1 min, about 30 s left at "
                            "the rate streams ended so far (2 in 1 min)")
    assert later.short() == "2 streams, oldest 13m, ~30s left"
    done = watch.add(90.0, view(dict(STREAMS, open=0, oldest_seconds=None), scur=0))
    assert done.empty


class MemHAProxy:
    kind = "haproxy"
    max_weight = 256

    def __init__(self, name="hx", fail=None):
        self.name, self.fail = name, fail
        self.state = {"n1": ServerState("n1", "127.0.0.1", 1, 1, False, AdminState.READY, Health.UP, 5),
                      "n2": ServerState("n2", "127.0.0.1", 2, 1, False, AdminState.READY, Health.UP, 0)}
        self.cut: list[str] = []

    def servers(self):
        return list(self.state.values())

    def set_state(self, server, state):
        self.state[server] = replace(self.state[server], admin=state)

    def set_weight(self, server, weight): ...

    def set_backup(self, server, backup): ...

    def shutdown_sessions(self, server):
        if self.fail:
            raise self.fail
        self.cut.append(server)
        self.state[server] = replace(self.state[server], active_sessions=0)


class MemNginx(MemHAProxy):
    kind = "nginx"
    shutdown_sessions = None  # type: ignore[assignment]  (nginx cannot: not EndsSessions)


class StreamsSource:
    """Snapshots of the in-memory balancers with an agent reporting `streams` (each look takes the next)."""

    def __init__(self, cfg, balancers, looks):
        self.cfg, self.balancers, self.looks = cfg, balancers, list(looks)

    async def snapshot(self):
        streams = self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]
        agents = {"n1": AgentReading("http://127.0.0.1:1", status(streams), fetched_at=100.0)}
        reads = [BalancerReading(b.name, b.kind, tuple(b.servers())) for b in self.balancers]
        return merge(self.cfg.nodes, agents, reads, now=100.0)

    async def model_files(self, url):
        return "none"

    async def close(self):
        pass


def controller(tmp_path, balancers, looks):
    cfg = parse_config({"cluster": {"audit_log": str(tmp_path / "audit.jsonl"), "min_ready": 0},
                        "nodes": [{"name": "n1", "agent": "http://127.0.0.1:1"}, {"name": "n2"}]})
    return Controller(cfg, balancers, source=StreamsSource(cfg, balancers, looks))


async def test_the_drain_plan_states_the_streams_it_waits_for(tmp_path):
    ctl = controller(tmp_path, [MemHAProxy()], [STREAMS])
    plan = await ctl.plan(Action("drain", "n1"))
    assert "n1 carries 4 live streams, the oldest 12 min: the drain lasts until they end" in plan.warnings
    ready = await ctl.plan(Action("maint", "n1"))
    assert not any("live stream" in w for w in ready.warnings)


async def test_wait_drained_ends_only_when_the_last_stream_has_ended(tmp_path):
    hx = MemHAProxy()
    hx.state["n1"] = replace(hx.state["n1"], active_sessions=0, admin=AdminState.DRAIN)  # requests done
    ctl = controller(tmp_path, [hx], [STREAMS, dict(STREAMS, open=1), dict(STREAMS, open=0, oldest_seconds=None)])
    seen = []
    assert await ctl.wait_drained("n1", 5.0, interval=0.0, on_node=lambda v, t: seen.append(v.streams_open))
    assert seen == [4, 1, 0]


# -- 3. cutoff --------------------------------------------------------------------------------------------

def test_cutoff_is_refused_for_nginx_with_one_line():
    assert refusal([MemHAProxy()]) is None
    line = refusal([MemHAProxy(), MemNginx("ngx")])
    assert line == ("ngx: nginx cannot cut the streams of one server; a reload "
                    "with worker_shutdown_timeout ends open connections on every server (a cutoff works with "
                    "HAProxy balancers only)")


async def test_cut_is_announced_sent_to_every_haproxy_and_audited(tmp_path):
    a, b = MemHAProxy("hx"), MemHAProxy("hx-ws")
    for m in (a, b):
        m.set_state("n1", AdminState.DRAIN)
    ctl = controller(tmp_path, [a, b], [dict(STREAMS, open=2)])
    said = []
    res = await cut_open(ctl, "n1", 120.0, said.append)
    # the balancers count 10 sessions (5 each), 2 of them streams: 8 more requests are said too
    assert said == ["cutting 2 streams and 8 requests still open on n1 after 120 s"]
    assert res.outcome == "done" and res.exit_code == OK and a.cut == ["n1"] and b.cut == ["n1"]
    assert res.message == "cut 2 streams on n1 after 120 s: done on hx, hx-ws"
    line = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert line["action"] == "cut" and line["node"] == "n1" and line["streams"] == 2 and line["value"] == 120.0
    assert [x["name"] for x in line["balancers"]] == ["hx", "hx-ws"]


async def test_a_cut_is_refused_on_a_node_back_in_rotation_and_partial_is_said(tmp_path):
    ready = MemHAProxy()
    ctl = controller(tmp_path, [ready], [STREAMS])
    res = await cut_open(ctl, "n1", 60.0, lambda line: pytest.fail(line))
    assert res.outcome == "refused" and ready.cut == []
    a, b = MemHAProxy("hx"), MemHAProxy("hx2", fail=BalancerUnreachable("hx2: connection refused"))
    for m in (a, b):
        m.set_state("n1", AdminState.DRAIN)
    res = await cut_open(controller(tmp_path, [a, b], [STREAMS]), "n1", 60.0, lambda line: None)
    assert res.exit_code == PARTIAL and res.message.startswith("partial: cut 4 streams on n1 on hx; NOT on hx2")


def args(**kw):
    base = dict(command="drain", node="n1", force=False, dry_run=False, wait=False, timeout=600.0, cutoff=None,
                yes=False, read_only=False)
    return SimpleNamespace(**{**base, **kw})


def test_cli_refuses_cutoff_for_nginx_and_without_a_terminal_changing_nothing(tmp_path, monkeypatch, capsys):
    ngx = MemNginx("ngx")
    ctl_cfg = parse_config({"cluster": {"audit_log": str(tmp_path / "audit.jsonl"), "min_ready": 0},
                            "nodes": [{"name": "n1", "agent": "http://127.0.0.1:1"}, {"name": "n2"}]})
    monkeypatch.setattr(commands, "_source", lambda c, b, p=None: StreamsSource(c, b, [STREAMS]))
    with pytest.raises(commands._Fail) as failed:
        asyncio.run(commands._action(args(cutoff=60.0), ctl_cfg, [MemHAProxy(), ngx]))
    assert failed.value.code == BAD_INPUT and "nginx cannot cut the streams of one server" in failed.value.line
    hx = MemHAProxy()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal, no --yes
    with pytest.raises(commands._Fail) as failed:
        asyncio.run(commands._action(args(cutoff=60.0), ctl_cfg, [hx]))
    assert failed.value.code == BAD_INPUT and "add --yes" in failed.value.line
    assert hx.state["n1"].admin is AdminState.READY  # nothing sent
    out = capsys.readouterr().out
    assert "streams still open after 60 s will be cut (4 open now)" in out
    with pytest.raises(commands._Fail) as failed:
        asyncio.run(commands._action(args(cutoff=700.0), ctl_cfg, [hx]))
    assert failed.value.code == BAD_INPUT and "--cutoff must be > 0 and below --timeout" in failed.value.line


# -- 4. status: the same cell and total as the console (fleet_wording) ------------------------------------

def test_status_shows_streams_only_where_agents_report_them():
    from asrtop.status_report import render_table, status_json

    cfg = parse_config({"cluster": {}, "nodes": [{"name": "n1", "agent": "http://127.0.0.1:1"},
                                                 {"name": "n2", "agent": "http://127.0.0.1:2"}]})
    hap = BalancerReading("hx", "haproxy", tuple(ServerState(n, "127.0.0.1", i, 1, False, AdminState.READY,
                                                             Health.UP, active_sessions=0)
                                                 for i, n in enumerate(("n1", "n2"), 1)))
    agents = {"n1": AgentReading("http://127.0.0.1:1", status(STREAMS), fetched_at=100.0),
              "n2": AgentReading("http://127.0.0.1:2", status(node="n2"), fetched_at=100.0)}
    snap = merge(cfg.nodes, agents, [hap], now=100.0)
    text = render_table(snap)
    head, n1, n2 = text.splitlines()[:3]
    assert head.split()[5:7] == ["INFL", "STREAMS"] and "4 12m" in n1 and n2.split()[6] == "-"
    assert "4 live streams (oldest 12 min)" in text.splitlines()[-1]
    doc = status_json(snap, "lab")
    assert doc["summary"]["streams_open"] == 4 and doc["nodes"][1]["streams_open"] is None
    http_only = merge(cfg.nodes, {"n2": agents["n2"]}, [hap], now=100.0)
    assert "STREAMS" not in render_table(http_only) and "live stream" not in render_table(http_only)
    assert status_json(http_only, "lab")["summary"]["streams_open"] is None


def test_cli_cutoff_asks_on_a_terminal_and_a_no_changes_nothing(tmp_path, monkeypatch, capsys):
    cfg = parse_config({"cluster": {"audit_log": str(tmp_path / "audit.jsonl"), "min_ready": 0},
                        "nodes": [{"name": "n1", "agent": "http://127.0.0.1:1"}, {"name": "n2"}]})
    monkeypatch.setattr(commands, "_source", lambda c, b, p=None: StreamsSource(c, b, [STREAMS]))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    asked = []
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "n")
    hx = MemHAProxy()
    with pytest.raises(commands._Fail) as failed:
        asyncio.run(commands._action(args(cutoff=60.0), cfg, [hx]))
    assert asked == ["drain n1 and cut what is still open after 60 s? [y/N] "]
    assert failed.value.code == BAD_INPUT and hx.state["n1"].admin is AdminState.READY
    assert "n1 carries 4 live streams, the oldest 12 min" in capsys.readouterr().out


def test_the_in_flight_words_tell_requests_from_the_streams_they_include():
    from asrtop.control.rules import consequence
    from asrtop.fleet import FleetSnapshot

    def words(kind, streams, in_flight):
        snap = FleetSnapshot(100.0, (view(streams, in_flight, admin=AdminState.READY, scur=in_flight),), ())
        return consequence(snap, Action(kind, "n1", *(("3",) if kind == "weight" else ()))).split(";")[0]

    # the balancer counts 7 sessions, 4 of them the agent's live streams
    assert words("maint", STREAMS, 7) == "n1 carries 3 in-flight requests and 4 live streams"
    assert words("drain", STREAMS, 7) == "n1 carries 3 in-flight requests"  # the streams get their own clause
    assert words("drain", None, 7) == "n1 carries 7 in-flight requests"  # no stream count: as before


# -- a rollout's wait ------------------------------------------------------------------------------------

class _Engine:
    """The little of RolloutEngine that Stages.wait uses; wait_drained replays the looks it is given."""

    def __init__(self, looks, empty=True):
        self.events, self.poll, self.stopping = [], 0.0, False
        self.state = SimpleNamespace(plan=SimpleNamespace(settings=SimpleNamespace(drain_timeout=30.0)),
                                     with_node=lambda node, **kw: self.state)

        async def wait_drained(node, timeout, progress, interval, on_oldest, on_node):
            for waited, v in looks:
                on_oldest(v.oldest_in_flight_seconds)
                on_node(v, waited)
                progress(v.in_flight, waited)
            return empty

        self.ctl = SimpleNamespace(wait_drained=wait_drained)

    async def until_stopped(self):
        await asyncio.Event().wait()

    def save(self):
        pass

    def emit(self, kind, node=None, stage=None, message="", **figures):
        self.events.append(message)


def test_a_rollouts_wait_speaks_of_the_streams_a_node_still_carries():
    from asrtop.control.rollout_stages import StageFailed, Stages

    looks = [(0.0, view(STREAMS, in_flight=5)), (60.0, view(dict(STREAMS, open=2), in_flight=2)),
             (90.0, view(dict(STREAMS, open=0, oldest_seconds=None), in_flight=0))]
    engine = _Engine(looks)
    asyncio.run(Stages(engine).wait("n1"))
    assert engine.events[0] == ("4 live streams (oldest 12 min), 1 other in flight, waited 0 s, no estimate until "
                                "a stream ends (the oldest is 12 min old)")
    assert engine.events[1].startswith("2 live streams (oldest 12 min), 0 other in flight, waited 1 min, about ")
    assert engine.events[2] == "0 live streams, 0 other in flight, waited 1 min 30 s"
    stuck = _Engine(looks[:2], empty=False)
    with pytest.raises(StageFailed, match=r"2 live stream\(s\) and 0 other request\(s\) still open after 30 s"):
        asyncio.run(Stages(stuck).wait("n1"))
    plain = _Engine([(0.0, view(in_flight=3)), (1.0, view(in_flight=0))])  # an agent without streams: as before
    asyncio.run(Stages(plain).wait("n1"))
    assert plain.events == ["3 in flight, waited 0.0 s", "0 in flight, waited 1.0 s"]
