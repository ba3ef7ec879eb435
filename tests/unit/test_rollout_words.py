"""asrtop.control.rollout_words (a state file in words, for the console's panel) and the wait stage keeping its
in-flight count in the state file (what the panel shows while a node drains)."""

from __future__ import annotations

import asyncio

import pytest

from asrtop.control.rollout import RolloutEngine, stop_lines
from asrtop.control.rollout_model import (TARGET_FROM_FIRST, NodeProgress, PlannedNode, RolloutPlan, RolloutSettings,
                                          RolloutState, progress_words)
from asrtop.control.rollout_stages import Stages
from asrtop.control.rollout_store import read_state, write_state
from asrtop.control.rollout_words import (INTERRUPTED, duration_text, go_on_lines, progress_rows, rollout_status,
                                          status_json, status_lines, summary_line)
from asrtop.tui.widgets.rollout_panel import window

T0 = 1_700_000_000.0
NODES = ("node-1", "node-2", "node-3")


def state(status="running", nodes=None, stopped=None, target="ab" * 32) -> RolloutState:
    plan = RolloutPlan(tuple(PlannedNode(n, False, 3, 0, None, "127.0.0.1:1", "http://127.0.0.1:2") for n in NODES),
                       tuple((n,) for n in NODES), RolloutSettings(("true",)), target,
                       "--expect-model" if target else TARGET_FROM_FIRST)
    return RolloutState("R1", "ops@bastion", 42, T0, T0 + 30, status, plan, nodes or {}, target, None, stopped)


pytestmark = pytest.mark.usefixtures("utc")  # clock times on screen in UTC, wherever the test runs


def test_duration_text():
    assert [duration_text(s) for s in (None, 0, 59.9, 60, 185, 3725)] == ["", "0s", "59s", "1m00s", "3m05s", "1h02m"]


def test_rows_in_plan_order_with_the_stage_words_while_a_stage_has_no_figures_yet():
    st = state(nodes={"node-1": NodeProgress("ready", "ok", "back in rotation", T0, T0 + 20),
                      "node-2": NodeProgress("hook", "running", "", T0 + 21)})
    rows = progress_rows(st, T0 + 51)
    assert [(r.node, r.stage, r.status, r.elapsed) for r in rows] == [
        ("node-1", "ready", "done", "20s"), ("node-2", "hook", "running", "30s"), ("node-3", "", "pending", "")]
    assert rows[1].detail == "run the hook"  # STAGE_WORDS
    assert rows[0].detail == "back in rotation"


def test_a_running_state_without_its_process_reads_interrupted_and_says_how_to_go_on(tmp_path):
    st = state(nodes={"node-1": NodeProgress("wait", "running", progress_words(3, 2.0, 4.0), T0)})
    assert rollout_status(st, alive=True) == "running" and rollout_status(st, alive=None) == "running"
    assert rollout_status(st, alive=False) == INTERRUPTED
    assert progress_rows(st, T0 + 5, alive=False)[0].status == INTERRUPTED
    assert go_on_lines(st, True, None) == []
    (line,) = go_on_lines(st, False, tmp_path / "c.toml")
    assert f"continue it with `asrtop --config {tmp_path / 'c.toml'} rollout --resume`" in line
    assert "rollout --abort" in line


def test_a_failed_stage_goes_on_with_the_engines_own_stop_message():
    stop = {"node": "node-2", "stage": "canary", "reason": "transcript differs"}
    st = state("stopped", {"node-2": NodeProgress("canary", "failed", "transcript differs", T0, T0 + 9)}, stop)
    lines = go_on_lines(st, None, None)
    assert lines == [line.strip() for line in stop_lines("node-2", "canary", "transcript differs", None)[1:]]
    assert any("asrtop rollout --resume --from hook" in line for line in lines)
    assert summary_line(st, T0 + 99).startswith("rollout R1 stopped at node-2 (canary): 0 of 3 nodes done, ")


def test_summary_line_names_status_progress_target_who_and_since():
    st = state(nodes={"node-1": NodeProgress("ready", "ok", "", T0, T0 + 9)})
    assert summary_line(st, T0 + 75) == ("rollout R1 running: 1 of 3 nodes done, target abababababab "
                                         "(--expect-model); by ops@bastion since 22:13:20 (1m15s)")
    created = state("stopped", target=None)
    assert "not started yet" in summary_line(created, T0 + 5) and "first upgraded node" in summary_line(created, T0)
    assert go_on_lines(created, None, None) == [
        "not running: continue it with `asrtop rollout --resume` or end it with `asrtop rollout --abort`"]
    assert go_on_lines(state("done"), None, None) == []


def test_window_keeps_the_node_in_progress_and_says_what_it_left_out():
    st = state(nodes={n: NodeProgress("ready", "ok", "", T0, T0 + 1) for n in NODES[:2]})
    rows = progress_rows(st, T0) * 4  # 12 rows; the 3rd (pending) is the first not done
    assert window(rows, 20) == (rows, 0, 0) and window(rows, 11) == (rows, 0, 0)
    shown, before, after = window(rows, 4)
    assert rows[2] in shown and len(shown) == 3 and before + len(shown) + after == 12
    failed = [r._replace(status="failed") if i == 9 else r for i, r in enumerate(rows)]
    shown, before, after = window(failed, 2)  # the smallest room still shows the failed node
    assert [r.status for r in shown] == ["failed"] and (before, after) == (9, 2)


async def test_the_wait_keeps_its_in_flight_count_in_the_state_file(tmp_path):
    """The console's panel reads only the state file: the wait's count and estimate must be there, not only
    in the CLI's events (at most once a second: a drain of hundreds of requests is not hundreds of fsyncs)."""
    audit = tmp_path / "audit.jsonl"
    seen: list[str] = []

    class Ctl:
        async def wait_drained(self, node, timeout, progress, interval, on_oldest=None, on_node=None):
            for waited, n in ((0.0, 5), (0.4, 4), (1.5, 2), (1.6, 1), (2.0, 0)):
                progress(n, waited)
                seen.append(read_state(audit).progress(node).detail)
            return True

    engine = RolloutEngine(Ctl(), audit)  # type: ignore[arg-type]  (the wait uses wait_drained alone)
    engine.state = state(nodes={"node-1": NodeProgress("wait", "running", "", T0)})
    write_state(audit, engine.state)
    engine.until_stopped = asyncio.Event().wait  # type: ignore[method-assign]  (no stop is asked for)
    detail = await Stages(engine).wait("node-1")
    assert seen[0].startswith("5 in flight") and seen[1] == seen[0]  # the 0.4 s reading waits for the next save
    assert seen[2].startswith("2 in flight, waited 1.5 s") and seen[3] == seen[2]
    assert detail.startswith("empty after")


def test_status_shows_a_rollout_until_it_ended_and_says_interrupted_when_nobody_runs_it():
    stopped = state("stopped", {"node-1": NodeProgress("canary", "failed", "HTTP 500")},
                    {"node": "node-1", "stage": "canary", "reason": "HTTP 500"})
    lines = status_lines(stopped, None, None, T0 + 60)
    assert lines[0].startswith("rollout R1 stopped at node-1 (canary): 0 of 3 nodes done")
    assert any("asrtop rollout --resume --from hook" in ln for ln in lines)
    assert status_json(stopped, None)["stopped"] == {"node": "node-1", "stage": "canary", "reason": "HTTP 500"}
    assert status_json(state("running"), False)["status"] == INTERRUPTED
    assert "no asrtop process runs it now" in status_lines(state("running"), False, None, T0)[1]
    for ended in ("done", "aborted"):
        assert status_lines(state(ended), None, None, T0) == [] and status_json(state(ended), None) is None
    assert status_lines(None, None, None, T0) == [] and status_json(None, None) is None
