"""The rollout's records and small parts: the state file (atomic, round trip), the lock and who holds it,
what a resumed rollout does next (never skips, redoes what was running), the drain estimate, the hook."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import replace

import psutil
import pytest

from asrtop.config import NodeConfig
from asrtop.control.eta import DrainEstimate, estimate
from asrtop.control.rollout import stop_lines
from asrtop.control.rollout_hook import run_hook, substitute
from asrtop.control.rollout_model import (
    NodeProgress,
    PlannedNode,
    RolloutPlan,
    RolloutSettings,
    RolloutState,
    progress_words,
    state_path,
)
from asrtop.control.rollout_stages import Stages
from asrtop.control.rollout_store import RolloutLock, StateError, holder, read_state, write_state

NODES = ("n4", "n1", "n2")


def state(nodes: dict | None = None, status: str = "running") -> RolloutState:
    plan = RolloutPlan(tuple(PlannedNode(n, n == "n4", 3, 0, None, f"127.0.0.1:{9000 + i}", "http://a")
                             for i, n in enumerate(NODES)), tuple((n,) for n in NODES),
                       RolloutSettings(hook=("up", "{node}")), None, "the first node upgraded", "cap")
    return RolloutState("r1", "ops@bastion", 4242, 1000.0, 1000.0, status, plan,
                        {k: NodeProgress(**v) for k, v in (nodes or {}).items()})


def test_state_round_trips_through_the_file_atomically(tmp_path):
    audit = tmp_path / "audit.jsonl"
    assert read_state(audit) is None
    s = state({"n4": {"stage": "ready", "status": "ok"}, "n1": {"stage": "hook", "status": "running"}})
    write_state(audit, s)
    assert read_state(audit) == s
    assert [p.name for p in tmp_path.iterdir()] == ["rollout.json"]  # no temporary file left behind
    state_path(audit).write_text("{not json")
    with pytest.raises(StateError, match="rollout.json: the rollout state is not readable"):
        read_state(audit)


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path):
    audit = tmp_path / "audit.jsonl"
    write_state(audit, state({"n4": {"stage": "ready", "status": "ok"},
                              "n1": {"stage": "hook", "status": "running", "started_at": 1001.0}}))
    assert holder(audit) is None  # a state file alone (a crashed rollout) holds nothing
    a, b = RolloutLock(audit), RolloutLock(audit)
    assert a.acquire()
    try:
        assert not b.acquire()
        h = holder(audit)
        assert h is not None and h.nodes == ("n1",) and (h.node, h.stage) == ("n1", "hook")
        assert h.line() == "a rollout is running: started by ops@bastion at 00:16:40 UTC (pid 4242), now at n1 (hook)"
        assert h.holds("n1").startswith("n1 is held by the rollout running now (started by ops@bastion")
    finally:
        a.release()
    assert holder(audit) is None and b.acquire()
    b.release()


class _Host:
    """The engine as the stages see it, for what comes next (no I/O)."""

    def __init__(self, s: RolloutState):
        self.state, self.ctl = s, None


def test_resume_redoes_what_was_running_or_failed_and_never_skips():
    s = Stages(_Host(state({"n4": {"stage": "ready", "status": "ok"}, "n1": {"stage": "hook", "status": "running"},
                            "n2": {"stage": "wait", "status": "ok"}})))
    assert s.next_stage("n4") is None  # done: never readied twice
    assert s.next_stage("n1") == "hook"  # killed in the hook: redo it
    assert s.next_stage("n2") == "hook"  # the wait passed: go on
    assert Stages(_Host(state())).next_stage("n1") == "drain"
    assert s.next_stage("n1", ("n1", "drain")) == "drain"  # --from drain
    assert s.check_redo("n1", "wait") is None
    assert s.check_redo("n1", "canary") == "--from canary would skip hook, health on n1 (it goes on with hook)"
    assert s.check_redo("n4", "hook") == "--from hook: n4 is done already, nothing to redo"
    failed = Stages(_Host(state({"n1": {"stage": "health", "status": "failed"}})))
    assert failed.next_stage("n1") == "health" and failed.check_redo("n1", "hook") is None


def test_estimate_from_the_fall_of_the_count():
    assert estimate([]) is None
    assert estimate([(0.0, 8)]) is None  # not fallen yet: unknown, not zero
    assert estimate([(0.0, 8), (2.0, 8)]) is None
    assert estimate([(0.0, 8), (2.0, 6)]) == pytest.approx(6.0)  # 1 per second, 6 left
    assert estimate([(0.0, 8), (1.0, 10), (3.0, 6)]) == pytest.approx(3.0)  # from the peak: 2 per second
    assert estimate([(0.0, 4), (1.0, 0)]) == 0.0
    e = DrainEstimate()
    assert e.add(0.0, None) is None and e.add(0.0, 4) is None and e.add(2.0, 2) == pytest.approx(2.0)
    assert progress_words(2, 2.0, 2.0) == "2 in flight, waited 2.0 s, about 2.0 s left"
    assert progress_words(None, 12.0, None) == "? in flight, waited 12 s"


def test_hook_argv_is_substituted_never_a_shell_string():
    node = NodeConfig("n1", server="srv1", address="10.0.0.5:8000", agent="http://10.0.0.5:10860")
    assert substitute(("up", "{node}", "--host={host}", "{server}", "{address}", "{agent}", "a;b"), node) == (
        "up", "n1", "--host=10.0.0.5", "srv1", "10.0.0.5:8000", "http://10.0.0.5:10860", "a;b")
    with pytest.raises(ValueError, match=r"the hook names \{address\} but n2 has none"):
        substitute(("up", "{address}"), NodeConfig("n2"))


def test_hook_failure_names_its_last_line_and_a_timeout_kills_its_group(tmp_path):
    log = tmp_path / "n1.log"
    res = asyncio.run(run_hook((sys.executable, "-c", "print('step 1'); print('disk full'); raise SystemExit(3)"),
                               log, 10))
    assert res.exit_code == 3 and res.error == "the hook failed (exit 3): disk full"
    assert "step 1" in log.read_text()
    child = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(60)']); open({str(child)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    t0 = time.monotonic()
    res = asyncio.run(run_hook((sys.executable, "-c", script), log, 1.0))
    assert res.exit_code is None and res.error.startswith("timed out after 1 s (killed with its process group)")
    assert time.monotonic() - t0 < 8
    pid = int(child.read_text())
    for _ in range(100):  # the grandchild went with the group (a zombie until init reaps it: gone too)
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"the hook's child {pid} outlived the timeout")


def test_stop_message_names_node_stage_reason_and_the_commands(tmp_path):
    lines = stop_lines("n1", "health", "not healthy after 5 s", tmp_path / "my cluster.toml")
    assert lines[0] == "rollout stopped at n1, stage health: not healthy after 5 s"
    cfg = f"--config '{tmp_path / 'my cluster.toml'}'"
    assert lines[2].endswith(f"asrtop {cfg} rollout --resume")
    assert lines[3].endswith(f"asrtop {cfg} rollout --resume --from hook")
    assert lines[4].endswith(f"asrtop {cfg} ready n1 && asrtop {cfg} rollout --abort")
    assert stop_lines("n1", "wait", "x", None)[3] == "  redo n1 from its drain:  asrtop rollout --resume --from drain"


def test_a_silent_failing_hook_says_so_and_never_quotes_the_log_header(tmp_path):
    res = asyncio.run(run_hook((sys.executable, "-c", "raise SystemExit(1)"), tmp_path / "n1.log", 10))
    assert res.error == "the hook failed (exit 1), no output"


class _Recording(_Host):
    """The engine's records in memory: the state saved, audit lines, events."""

    def __init__(self, s: RolloutState):
        super().__init__(s)
        self.saved: list[RolloutState] = []
        self.lines: list[tuple] = []
        self.events: list[tuple] = []
        self.stopping = False

    def save(self):
        self.saved.append(self.state)

    def audit(self, node, stage, outcome, message):
        self.lines.append((node, stage, outcome, message))

    def emit(self, kind, node=None, stage=None, message="", **figures):
        self.events.append((kind, node, stage, message))

    def stop_reason(self):
        return "SIGINT"


def test_a_surprise_in_a_stage_is_that_stage_failing_not_a_traceback():
    from asrtop.control.rollout_stages import StageFailed

    host = _Recording(state())
    stages = Stages(host)

    async def broken(node):
        raise KeyError(node)

    stages.health = broken
    with pytest.raises(StageFailed) as failed:
        asyncio.run(stages.stage("n1", "health"))
    assert failed.value.reason == "unexpected error (KeyError: 'n1')"
    assert host.state.progress("n1").status == "failed" and host.saved[-1] is host.state
    assert host.lines == [("n1", "health", "failed", "unexpected error (KeyError: 'n1')")]
    assert [e[0] for e in host.events] == ["start", "failed"]


def test_rollout_audit_lines_read_sanely_and_the_drift_watch_ignores_them():
    """Guard (no change was needed): a rollout's stage lines parse, and never count as an intended state."""
    from asrtop.control.audit import AuditEntry
    from asrtop.control.drift import desired_states

    line = AuditEntry.from_record({"time": "2026-12-01T05:00:00.000Z", "user": "ops@b", "action": "rollout",
                                   "node": "n1", "value": "hook", "outcome": "ok", "message": "exit 0 after 4.2 s",
                                   "balancers": [], "rollout": "r1"})
    assert (line.action, line.node, line.value, line.outcome) == ("rollout", "n1", "hook", "ok")
    assert desired_states([line]) == {}


def test_a_resumed_hook_waits_for_the_one_a_killed_asrtop_left_running(tmp_path):
    """asrtop SIGKILLed during the hook: the hook (its own session) runs on; the resume never starts a second
    one beside it."""
    from asrtop.config import ClusterConfig

    trace = tmp_path / "trace"
    orphan = subprocess.run([sys.executable, "-c", "import subprocess, sys; print(subprocess.Popen([sys.executable, "
                             f"'-c', \"import time; time.sleep(0.6); open({str(trace)!r}, 'a').write('old\\\\n')\"], "
                             "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"], capture_output=True, text=True, check=True)
    left = int(orphan.stdout)
    host = _Recording(state({"n1": {"stage": "hook", "status": "running", "hook_pid": left}}))
    host.ctl = type("Ctl", (), {"config": ClusterConfig(None, nodes=(NodeConfig("n1"),))})()
    host.audit_path = tmp_path / "audit.jsonl"
    host.state = replace(host.state, plan=replace(host.state.plan, settings=RolloutSettings(
        hook=(sys.executable, "-c", f"open({str(trace)!r}, 'a').write('new\\n')"))))
    detail = asyncio.run(Stages(host).hook("n1"))
    assert detail.startswith("exit 0 after")
    assert trace.read_text() == "old\nnew\n"  # the new hook ran after the old one ended
    assert any(f"the hook of the interrupted run (pid {left}) still runs" in e[3] for e in host.events)
    assert host.state.progress("n1").hook_pid is None
    assert any(s.progress("n1").hook_pid not in (None, left) for s in host.saved)  # the new one was recorded


def test_resume_in_read_only_mode_is_refused_before_anything(tmp_path):
    from types import SimpleNamespace

    from asrtop.config import ClusterConfig
    from asrtop.control.rollout import RolloutEngine

    audit = tmp_path / "audit.jsonl"
    write_state(audit, state(status="stopped"))
    ctl = SimpleNamespace(read_only=True, audit=SimpleNamespace(path=audit), config=ClusterConfig(None))
    res = asyncio.run(RolloutEngine(ctl).run())
    assert res.exit_code == 3 and res.message.startswith("refused: read-only mode, a rollout not sent")
    assert read_state(audit).status == "stopped"  # untouched
