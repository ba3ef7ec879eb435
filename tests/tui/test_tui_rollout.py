"""The console's rolling upgrade: `U` -> the engine's plan -> `y` -> create + a detached launch; read-only and
no-hook refusals; the progress panel following a hand-written state file; golden layouts of the panel.

The engine sits behind the RolloutStarter seam (asrtop.control.seams): FakeStarter records what the console
asks; the panel tests use the real DetachedRollout over a state file written here, the way the engine writes it
(atomically: a new file renamed over the old one)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from fakes import DIGEST_A, T0, FakeAudit, FakeController, FakeFleet
from screen import run_from_palette, screen_lines, screen_text, settled, wait_for
from test_tui_layout import check_golden, table_top

from asrtop.control.model import Refusal
from asrtop.control.rollout_model import (TARGET_FROM_CONFIG, progress_words, NodeProgress, PlannedNode, RolloutPlan,
                                          RolloutSettings, RolloutState)
from asrtop.control.rollout_store import RolloutLock, read_state
from asrtop.control.rollout_words import NO_HOOK
from asrtop.tui.app import AsrtopApp
from asrtop.tui.rollout_launch import DetachedRollout, launch_log
from asrtop.tui.screens.rollout import RolloutScreen

HOOK = ("python", "-m", "asrtop.demo.upgrade", "{address}", "--to", "r2")
NODES = ("node-1", "node-2", "node-3")


def plan_of(nodes=NODES, refusals=()) -> RolloutPlan:
    planned = tuple(PlannedNode(n, False, 3, 0, DIGEST_A, f"127.0.0.1:{10000 + i}", f"http://127.0.0.1:{20000 + i}")
                    for i, n in enumerate(nodes, 1))
    return RolloutPlan(planned, tuple((n,) for n in nodes), RolloutSettings(HOOK), DIGEST_A, TARGET_FROM_CONFIG,
                       capacity="while a batch is out, 4 of 5 primaries stay ready (min_ready 1)",
                       refusals=tuple(refusals))


def state_of(status="running", nodes=None, stopped=None, plan=None) -> RolloutState:
    return RolloutState("20261201T051203Z-4f2a", "alice@bastion", 4242, T0, T0 + 50, status, plan or plan_of(),
                        nodes or {}, DIGEST_A, None, stopped)


# one done, one waiting for its requests, one pending
RUNNING = {"node-1": NodeProgress("ready", "ok", "", T0 + 1, T0 + 21),
           "node-2": NodeProgress("wait", "running", progress_words(3, 8.0, 6.0, 4.1), T0 + 22)}
# one done, one whose hook failed
STOPPED = {"node-1": NodeProgress("ready", "ok", "", T0 + 1, T0 + 21),
           "node-2": NodeProgress("hook", "failed", "hook exit status 1: upgrade.sh: no space left", T0 + 22, T0 + 40)}
STOP = {"node": "node-2", "stage": "hook", "reason": "hook exit status 1: upgrade.sh: no space left"}


class FakeStarter:
    """A RolloutStarter that records the console's calls; current() is the state it was given."""

    def __init__(self, hook=HOOK, plan=None, refuse_create: str | None = None):
        self._settings = RolloutSettings(tuple(hook))
        self.plan_result = plan or plan_of()
        self.refuse_create = refuse_create
        self.planned: list[tuple[str, ...]] = []
        self.created: list[RolloutPlan] = []
        self.launched: list[RolloutState] = []
        self.state: RolloutState | None = None
        self.is_alive = True
        self.ended: tuple[int, str] | None = None
        self.config_path = None

    @property
    def settings(self) -> RolloutSettings:
        return self._settings

    async def plan(self, nodes):
        self.planned.append(tuple(nodes))
        return self.plan_result

    def create(self, plan):
        if self.refuse_create:
            raise RuntimeError(self.refuse_create)
        self.created.append(plan)
        self.state = state_of("stopped", plan=plan)
        return self.state

    def launch(self, state):
        self.launched.append(state)
        return Path("/tmp/rollout-logs") / state.id / "console-run.log"

    def current(self):
        return self.state

    def alive(self):
        return self.is_alive

    def finished(self):
        ended, self.ended = self.ended, None
        return ended


def make_app(starter, read_only=False, refresh=3600.0):
    fleet = FakeFleet(6, odd_model=(), backups=())
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=refresh,
                    read_only=read_only, rollout=starter)
    app.clock = lambda: T0 + 60  # elapsed times on screen do not depend on when the test runs
    return app


def toasts(app) -> list[str]:
    return [f"{n.title or ''}: {n.message}" for n in app._notifications]


pytestmark = pytest.mark.usefixtures("utc")  # clock times on screen in UTC, wherever the test runs


async def test_upgrade_key_plans_every_node_confirms_then_creates_and_launches():
    starter = FakeStarter()
    app = make_app(starter)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        await pilot.press("U")
        await wait_for(pilot, lambda: isinstance(app.screen, RolloutScreen) and not app.screen.pending, what="plan")
        assert starter.planned == [()]  # nothing selected: every node, not the one under the cursor
        text = screen_text(app)
        assert "Rolling upgrade of every node?" in text
        assert app.screen.lines == starter.plan_result.lines()  # the engine's plan, word for word
        assert "1. node-1  weight 3, 0 in flight, model a1b2c3d4e5f6" in text
        assert not starter.created  # nothing before `y`
        await pilot.press("y")
        await wait_for(pilot, lambda: starter.launched, what="launch")
        assert starter.created == [starter.plan_result] and starter.launched[0].id == "20261201T051203Z-4f2a"
        await wait_for(pilot, lambda: any("started" in t for t in toasts(app)), what="started toast")
        assert not app.action_busy


async def test_upgrade_key_plans_the_selection_and_n_cancels():
    starter = FakeStarter()
    app = make_app(starter)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        await pilot.press("space", "space", "U")  # node-1 and node-2 selected
        await wait_for(pilot, lambda: isinstance(app.screen, RolloutScreen) and not app.screen.pending, what="plan")
        assert starter.planned == [("node-1", "node-2")]
        assert "Rolling upgrade of node-1, node-2?" in screen_text(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: any("cancelled" in t for t in toasts(app)), what="cancel toast")
        assert not starter.created and not starter.launched


async def test_a_refused_plan_shows_the_refusal_and_y_starts_nothing():
    line = "refused: a batch of 2 leaves 1 of 4 primaries ready, min_ready is 2"
    starter = FakeStarter(plan=plan_of(refusals=(Refusal("min_ready", line),)))
    app = make_app(starter)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        await pilot.press("U")
        await wait_for(pilot, lambda: isinstance(app.screen, RolloutScreen) and not app.screen.pending, what="plan")
        text = screen_text(app)
        assert text.count(line) == 1 and "Cancel (n)" in text  # at 80x24 the plan scrolls; refusal and buttons show
        assert app.screen.refusal == line and line not in app.screen.lines  # in red below the plan, not twice
        assert "timeouts: drain 600 s" not in text
        await pilot.press("pagedown")  # the focus stays on Cancel; the plan scrolls from the keyboard
        await wait_for(pilot, lambda: "timeouts: drain 600 s" in screen_text(app), what="scrolled plan")
        await pilot.press("y", "f")  # neither confirms nor forces a refused rollout
        await pilot.pause(0.2)
        assert isinstance(app.screen, RolloutScreen) and not starter.created
        await pilot.press("escape")


async def test_create_refused_is_one_line_and_nothing_is_launched():
    line = "a rollout is running: started by bob@ops at 04:10:00 (pid 77), now at node-3 (hook)"
    starter = FakeStarter(refuse_create=line)
    app = make_app(starter)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        await run_from_palette(pilot, "Rolling upgrade")  # the palette's command does what U does
        await wait_for(pilot, lambda: isinstance(app.screen, RolloutScreen) and not app.screen.pending, what="plan")
        await pilot.press("y")
        await wait_for(pilot, lambda: any(line in t for t in toasts(app)), what="refusal toast")
        assert not starter.launched and not app.action_busy


async def test_read_only_hides_and_refuses_the_upgrade_key():
    starter = FakeStarter()
    app = make_app(starter, read_only=True)
    async with app.run_test(size=(120, 35)) as pilot:
        lines = await settled(pilot, app)
        assert "Upgrade" not in lines[-1]  # not in the key bar
        await pilot.press("U")
        await wait_for(pilot, lambda: any("read-only" in t for t in toasts(app)), what="read-only toast")
        assert not starter.planned and not isinstance(app.screen, RolloutScreen)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: "READ-ONLY" in screen_text(app), what="help")
        assert "rolling upgrade" not in screen_text(app) and "backup/upgrade are hidden" in screen_text(app)


async def test_no_hook_says_where_to_set_it_and_plans_nothing():
    starter = FakeStarter(hook=())
    app = make_app(starter)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        await pilot.press("U")
        await wait_for(pilot, lambda: any(NO_HOOK in t for t in toasts(app)), what="no-hook toast")
        assert "[rollout]" in NO_HOOK
        assert not starter.planned and not isinstance(app.screen, RolloutScreen) and not app.action_busy
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: "rolling upgrade of the selected nodes" in screen_text(app), what="help")


async def test_the_launched_process_ending_is_notified_once_with_its_last_line():
    starter = FakeStarter()
    starter.state = state_of("stopped", STOPPED, STOP)
    app = make_app(starter, refresh=0.05)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        starter.ended = (8, "rollout stopped at node-2 (hook): hook exit status 1")
        await wait_for(pilot, lambda: any("exit 8" in t for t in toasts(app)), what="end toast")
        await pilot.pause(0.2)
        assert sum("exit 8" in t for t in toasts(app)) == 1
        assert "rollout stopped at node-2 (hook): hook exit status 1" in toasts(app)[-1]


# -- the panel, over the real DetachedRollout and a state file ----------------------------------------------------

class FileEngine:
    """The engine's current() (rollout_store.read_state), counting its reads: the console must not parse an
    unchanged state file on every refresh."""

    def __init__(self, audit: Path):
        self.audit, self.path, self.reads = audit, audit.with_name("rollout.json"), 0

    def current(self):
        self.reads += 1
        return read_state(self.audit)


def write_state(path: Path, state: RolloutState) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.as_json()))
    os.replace(tmp, path)


@pytest.fixture
def running_lock(tmp_path):
    """The lock a running `asrtop rollout` holds (another open file: flock tells it from the console's test)."""
    lock = RolloutLock(tmp_path / "audit.jsonl")
    assert lock.acquire()
    yield lock
    lock.release()


def watcher(tmp_path) -> tuple[DetachedRollout, FileEngine]:
    engine = FileEngine(tmp_path / "audit.jsonl")
    return DetachedRollout(engine, RolloutSettings(HOOK), None, tmp_path / "audit.jsonl"), engine


def panel_text(app) -> str:
    lines = screen_lines(app)
    return "\n".join(lines[table_top(lines):])


async def test_panel_follows_the_state_file_and_reads_it_only_when_it_changed(tmp_path, running_lock):
    starter, engine = watcher(tmp_path)
    app = make_app(starter, refresh=0.05)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        assert "rollout 2026" not in screen_text(app)  # no state file: no panel
        write_state(engine.path, state_of("running", RUNNING))
        await wait_for(pilot, lambda: "3 in flight, oldest 4.1 s" in screen_text(app), what="running panel")
        reads, refreshes = engine.reads, app.refreshes
        await wait_for(pilot, lambda: app.refreshes >= refreshes + 5, what="refreshes")
        assert engine.reads == reads  # unchanged file: stat only
        write_state(engine.path, state_of("stopped", STOPPED, STOP))
        await wait_for(pilot, lambda: "stopped at node-2 (hook)" in screen_text(app), what="stopped panel")
        text = screen_text(app)
        assert "asrtop rollout --resume --from hook" in text and "asrtop ready node-2 && asrtop rollout --abort" in text
        assert "node-6" in text  # the table still shows every row above it
        write_state(engine.path, state_of("done", {n: NodeProgress("ready", "ok", "", T0, T0 + 9) for n in NODES}))
        await wait_for(pilot, lambda: "3 of 3 nodes done" in screen_text(app), what="done line")
        assert "node-3 " not in panel_text(app).split("3 of 3 nodes done")[1]  # collapsed to its one line


async def test_a_running_rollout_without_its_process_reads_interrupted_with_the_commands(tmp_path):
    starter, engine = watcher(tmp_path)  # no process holds the rollout lock
    write_state(engine.path, state_of("running", RUNNING))
    app = make_app(starter)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        text = screen_text(app)
        assert "interrupted" in text and "continue it with `asrtop rollout --resume`" in text


async def test_a_finished_rollout_found_at_start_is_not_shown(tmp_path):
    starter, engine = watcher(tmp_path)
    write_state(engine.path, state_of("done", {n: NodeProgress("ready", "ok", "", T0, T0 + 9) for n in NODES}))
    app = make_app(starter)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        assert "rollout 2026" not in screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 35)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", ["running", "stopped"])
async def test_rollout_panel_golden_layouts(tmp_path, running_lock, size, case):
    width, height = size
    starter, engine = watcher(tmp_path)
    write_state(engine.path, state_of("running", RUNNING) if case == "running" else state_of("stopped", STOPPED, STOP))
    app = make_app(starter)
    async with app.run_test(size=size) as pilot:
        lines = await settled(pilot, app)
    assert len(lines) == height and all(len(line) <= width for line in lines)
    rows = [line for line in lines[table_top(lines) + 1:] if line.startswith(("    node-", " !  node-"))]
    assert len(rows) >= 6  # the table keeps several rows
    text = "\n".join(lines)
    assert "rollout 20261201T051203Z-4f2a" in text
    for node in NODES:
        assert sum(line.lstrip().startswith(f"{node} ") for line in lines) >= 1
    check_golden(f"rollout_{case}_{width}x{height}", lines)


def test_launch_starts_a_detached_process_writing_beside_the_audit_log(tmp_path):
    starter, _ = watcher(tmp_path)
    starter.argv = [sys.executable, "-c", "import json, os, sys; print(json.dumps({'kind': 'end', 'message': "
                    "f'session {os.getsid(0) == os.getpid()} stdin {sys.stdin.read()!r}'})); "
                    "print('asrtop: the same on stderr, after the end event', file=sys.stderr)"]
    state = state_of("stopped")
    log = starter.launch(state)
    assert log == launch_log(tmp_path / "audit.jsonl", state.id) == tmp_path / "rollout-logs" / state.id / "console-run.log"
    deadline = time.monotonic() + 10
    while (ended := starter.finished()) is None:
        assert time.monotonic() < deadline, "the launched process did not end"
        time.sleep(0.02)
    assert ended == (0, "session True stdin ''")  # its own session (survives the console), no terminal input
    assert starter.finished() is None  # said once


def test_a_run_killed_before_its_end_says_where_it_was(tmp_path):
    starter, _ = watcher(tmp_path)
    starter.argv = [sys.executable, "-c", "import json, os, signal; print(json.dumps({'kind': 'start', 'node': "
                    "'node-3', 'stage': 'hook', 'message': 'run the hook'}), flush=True); "
                    "os.kill(os.getpid(), signal.SIGKILL)"]
    starter.launch(state_of("stopped"))
    deadline = time.monotonic() + 10
    while (ended := starter.finished()) is None:
        assert time.monotonic() < deadline, "the launched process did not end"
        time.sleep(0.02)
    assert ended == (-9, "it stopped before its end; last event: node-3 hook: run the hook")


def test_resume_argv_runs_this_python_on_the_same_cluster_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    starter = DetachedRollout(FileEngine(tmp_path / "audit.jsonl"), RolloutSettings(HOOK), "c.toml",
                              tmp_path / "audit.jsonl")
    assert starter.argv == [sys.executable, "-m", "asrtop.cli", "--config", str((tmp_path / "c.toml").resolve()),
                            "rollout", "--resume", "--json"]


async def test_the_console_takes_the_rollout_table_as_asrtop_rollout_takes_it_without_flags(tmp_path):
    import argparse

    from asrtop.config import load_config
    from asrtop.tui.run import build_app

    cfg = tmp_path / "asrtop.toml"
    base = (f'[cluster]\naudit_log = "{tmp_path}/audit.jsonl"\n[[balancers]]\nname = "h"\nkind = "haproxy"\n'
            f'socket = "{tmp_path}/admin.sock"\nbackend = "asr"\n[[nodes]]\nname = "node-1"\nserver = "node-1"\n'
            f'address = "127.0.0.1:9"\n[rollout]\nhook = "upgrade {{node}} --to r2"\nmax_unavailable = 2\n')
    cfg.write_text(base)
    ns = argparse.Namespace(config=str(cfg), read_only=False, prometheus=None)
    rollout = build_app(ns, load_config(cfg)).rollout
    assert rollout.settings.hook == ("upgrade", "{node}", "--to", "r2") and rollout.settings.max_unavailable == 2
    assert rollout.config_path == cfg
    assert rollout.argv[-5:] == ["--config", str(cfg.resolve()), "rollout", "--resume", "--json"]
    assert rollout.state_file == tmp_path / "rollout.json"
    cfg.write_text(base + f'canary = "{tmp_path}/missing.wav"\n')  # as `asrtop rollout` would: one line at plan time
    rollout = build_app(ns, load_config(cfg)).rollout
    with pytest.raises(ValueError, match="missing.wav: no such file"):
        await rollout.plan([])
