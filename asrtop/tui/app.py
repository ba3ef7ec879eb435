"""The asrtop console: an App around an INJECTED FleetSource (and Controller for actions).

Refreshes: asrtop.tui.app_refresh (poll, then merge, problems and the table's diff in a thread, then the UI
applies the frozen result; never overlapping). Actions run in workers too (plan -> confirmation modal ->
apply), so the UI never waits on a balancer, an agent or the audit log.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from platformdirs import user_downloads_path

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.widgets import Input
from textual.worker import Worker, WorkerState

import asrtop.control.rules as rules
from asrtop.control.model import GUARD_MODEL, Action, ActionResult
from asrtop.control.seams import ActionController, AuditReader, Recoverer, RolloutStarter
from asrtop.fleet import FleetSnapshot
from asrtop.history import FleetHistory
from asrtop.problems.engine import ProblemTracker
from asrtop.sources import FleetSource
from asrtop.tui.app_drain import DrainWatching
from asrtop.tui.app_problems import ProblemWatch
from asrtop.tui.app_refresh import FleetUpdated, RefreshFailed, RefreshPipeline
from asrtop.tui.app_rollout import RolloutActions
from asrtop.tui.commands import FleetCommands
from asrtop.tui.screens.confirm import FORCE_KEY, ConfirmScreen
from asrtop.tui.screens.detail import NodeDetailScreen
from asrtop.tui.screens.drain import DrainConfirmScreen
from asrtop.tui.screens.fleet import CONSOLE_ACTIONS, FleetScreen
from asrtop.tui.screens.help import HelpScreen
from asrtop.tui.screens.models import ModelScreen, representatives
from asrtop.tui.screens.weight import WeightScreen


class AsrtopApp(RefreshPipeline, DrainWatching, RolloutActions, ProblemWatch, App):
    CSS_PATH = "asrtop.tcss"
    TITLE = "asrtop"
    COMMANDS = App.COMMANDS | {FleetCommands}
    # A read-only console hides the action keys (the screens' check_action); these hidden bindings catch the
    # keys then, so a refused key says why instead of doing nothing.
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("question_mark", "help", "Keys", show=False)] + [
        Binding(b.key, f"refused({b.action!r})", show=False) for b in FleetScreen.BINDINGS
        if b.action in CONSOLE_ACTIONS]

    def __init__(self, source: FleetSource, controller: ActionController | None = None, *, cluster: str = "asrtop",
                 refresh: float = 1.0, read_only: bool = False, audit: AuditReader | None = None,
                 max_weight: int = 256, min_weight: int = 0, close_source: bool = True,
                 recovery: Recoverer | None = None, rollout: RolloutStarter | None = None,
                 problem_tracker: ProblemTracker | None = None):
        super().__init__()
        self.init_problems(problem_tracker)  # the problem rules over each snapshot and the history
        self.rollout = rollout  # the rollout engine + a detached `asrtop rollout --resume` (None: no rollouts here)
        self._rollouts_watched: set[str] = set()  # rollouts seen running or stopped: shown (one line) once ended
        self._rollout_reading = False  # a read of the rollout's files is out (RolloutActions.follow_rollout)
        self.clock = time.time  # the panel's elapsed times (tests fix it)
        self.recovery = recovery  # `asrtop recover` for the palette's "Recover interrupted changes"
        self.source = source
        self.controller = controller
        self.cluster = cluster
        self.refresh_seconds = refresh
        self.read_only = read_only or controller is None
        self.audit = audit
        self.max_weight = max_weight
        self.min_weight = min_weight
        self.close_source = close_source
        self.snapshot: FleetSnapshot | None = None
        self.history = FleetHistory(capacity=max(60, int(600 / max(refresh, 0.1))))  # ~10 minutes: the trend rules
        self.init_drains()  # drains this console started, followed on every refresh (DrainWatching)
        self.poll_seq = 0
        self._balancer_errors: dict[str, str | None] = {}
        self._stale: set[str] = set()
        self._notes_seen: set[str] = set()  # notes already notified: each distinct note is news once
        self._wake = asyncio.Event()
        self._applied = asyncio.Event()  # the refresh posted last was applied (the next may start)
        self._retired: list = []  # snapshots the applies replaced, freed by the poll worker in a thread
        self._bands_painted = asyncio.Event()  # the fleet table's bands of the last refresh are painted
        self.history_lock = threading.Lock()  # the refresh thread writes the history; the UI reads it under this
        self.action_busy = False
        self.refreshes = 0
        self.last_error: str | None = None
        self._last_notified_error: str | None = None

    # -- screens ---------------------------------------------------------------------------------
    def get_default_screen(self) -> FleetScreen:
        self.fleet_screen = FleetScreen(self.cluster, self.read_only)
        return self.fleet_screen

    async def _on_key(self, event: events.Key) -> None:
        """A printable key that bubbles up here while a text box has the focus was queued for another widget
        before the focus moved (typed fast or pasted right after `/`): it is text for the box. The box's own
        keys never get here (it stops them), and bindings are not checked for printable keys it consumes."""
        focused = self.focused
        if isinstance(focused, Input) and event.is_printable and event.character:
            event.stop()
            event.prevent_default()  # App._on_key (bindings) is not run for it; Textual calls it after this one
            focused.insert_text_at_cursor(event.character)

    def on_mount(self) -> None:
        self.poll_fleet()
        self.call_after_refresh(self.collect_before_first_refresh)

    async def on_unmount(self) -> None:
        self.give_back_process_settings()
        if self.close_source:
            try:
                await self.source.close()
            except Exception:  # closing is best effort; the operator is leaving
                pass

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        keys = [b for b in FleetScreen.BINDINGS if (b.show or b.key in ("S", "escape", "p")) and b.action != "app.help"]
        if self.read_only:
            keys = [b for b in keys if b.action not in CONSOLE_ACTIONS]
        self.push_screen(HelpScreen(keys, self.read_only, self.snapshot.notes if self.snapshot else ()))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "refused":  # only where the action keys are hidden for being read-only
            return self.read_only and isinstance(self.screen, (FleetScreen, NodeDetailScreen))
        return True

    def action_refused(self, kind: str) -> None:
        self.notify(rules.read_only_line(kind), severity="warning", timeout=6)

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's "Screenshot": Textual saves to the Downloads folder, which a server reached over SSH
        rarely has (the save then failed); without one it goes to the current directory."""
        if path is None:
            downloads = user_downloads_path()
            path = str(downloads if downloads.is_dir() else Path.cwd())
        return super().deliver_screenshot(filename, path, time_format)

    def open_detail(self, node: str) -> None:
        self.push_screen(NodeDetailScreen(node, self.read_only))

    def open_models(self) -> None:
        self.push_screen(ModelScreen())

    def on_refresh_failed(self, message: RefreshFailed) -> None:
        self.last_error = message.error
        if message.error != self._last_notified_error:
            self.notify(f"refresh failed: {message.error}", severity="error")
        self._last_notified_error = message.error
        if self.fleet_screen.is_mounted:
            self.fleet_screen.show_fleet(None, message.error)
        self.follow_rollout()  # the state file does not depend on the fleet source

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's unexpected error lands: a notification, never a traceback."""
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.notify(f"{event.worker.name}: {type(err).__name__}: {err}", severity="error")
            if event.worker.group == "poll":  # keep the console live
                self.set_timer(self.refresh_seconds, self.poll_fleet)

    def _notify_changes(self, snap: FleetSnapshot, stale: frozenset[str]) -> None:
        for b in snap.balancers:
            prev = self._balancer_errors.get(b.name)
            if b.error and b.error != prev:
                self.notify(f"balancer {b.name}: {b.problem}", severity="error", timeout=8)
            elif not b.error and prev:
                self.notify(f"balancer {b.name} is reachable again")
            self._balancer_errors[b.name] = b.error
        new = sorted(stale - self._stale)
        if new and self.refreshes > 1:  # the first refresh of a starting fleet is not news
            more = f" (+{len(new) - 3})" if len(new) > 3 else ""
            self.notify(f"agent not answering: {', '.join(new[:3])}{more}", severity="warning")
        self._stale = stale
        self._notify_notes(snap.notes)

    def _notify_notes(self, notes: tuple[str, ...]) -> None:
        new = [n for n in dict.fromkeys(notes) if n not in self._notes_seen]
        for note in new[:3]:
            self.notify(note, title="note", severity="warning", timeout=12)
        if len(new) > 3:
            self.notify(f"{len(new) - 3} more new notes: ? lists them all", title="note", severity="warning",
                        timeout=12)
        if len(self._notes_seen) + len(new) > 1000:  # bounded: forget notes that are gone, keep current ones
            self._notes_seen = set(notes)
        else:
            self._notes_seen.update(new)

    # -- actions ---------------------------------------------------------------------------------
    def _may_act(self, allowed: bool = True) -> bool:
        """One action at a time, none in a read-only console; says why not."""
        if self.read_only or not allowed:
            self.notify(rules.read_only_line("the action"), severity="warning")
            return False
        if self.action_busy:
            self.notify("another action is still running", severity="warning")
            return False
        self.action_busy = True
        return True

    def start_action(self, kind: str, nodes: list[str]) -> None:
        if self._may_act():
            self.perform_action(kind, tuple(nodes))

    @work(group="action", exit_on_error=False)
    async def perform_action(self, kind: str, nodes: tuple[str, ...]) -> None:
        try:
            await self._run_action(kind, nodes)
        finally:
            self.action_busy = False

    async def _run_action(self, kind: str, nodes: tuple[str, ...]) -> None:
        assert self.controller is not None  # start_action refuses actions in a read-only console
        snap = self.snapshot
        value: int | bool | None = None
        if kind == "weight":
            current = snap.node(nodes[0]).weight if snap and len(nodes) == 1 and snap.has(nodes[0]) else None
            value = await self.push_screen_wait(
                WeightScreen(list(nodes), current, self.min_weight, self.max_weight))
            if value is None:
                return
        actions = []
        for n in nodes:
            v = value
            if kind == "backup":  # a toggle: each node flips its own flag
                v = not bool(snap.node(n).backup) if snap and snap.has(n) else True
            actions.append(Action(kind, n, v))  # type: ignore[arg-type]  (kind is one of ACTION_KINDS)
        # The modal opens now with what the console knows; the plan (fresh balancer reads) fills it in.
        preview = rules.preview(snap, actions) if snap else []
        confirm = (self.drain_confirm(_title(kind, nodes, actions), preview, nodes) if kind == "drain" else
                   ConfirmScreen(_title(kind, nodes, actions), preview, warning=kind == "maint", pending=True))
        answer = self.push_screen(confirm, wait_for_dismiss=True)
        try:
            plan = await self.controller.plan(actions)  # every node's rules + the guardrail over all of them
        except Exception as e:  # the plan could not be made: say why, change nothing
            confirm.set_plan([f"cannot plan {kind}: {type(e).__name__}: {e}"], "nothing will be sent", False)
            await answer
            return
        confirm.set_plan(list(plan.lines), plan.refusal_lines, plan.forceable, plan.force_hint(FORCE_KEY))
        if not await answer:
            self.notify(f"{kind}: cancelled, nothing changed", timeout=3)
            return
        if plan.guarded_by(GUARD_MODEL):  # forced past the model guard: ask once more, with its own words
            second = ConfirmScreen(
                "Model differs from the fleet's target",
                [r.line for r in plan.refusals if r.guard == GUARD_MODEL]
                + ["Putting it in rotation serves users a different model.",
                   "Type y again only if this is intended (e.g. a canary)."],
                confirm_label="Ready with different model (y)", warning=True)
            if not await self.push_screen_wait(second):
                self.notify(f"{kind}: cancelled (model differs), nothing changed", timeout=4)
                return
        results = await self.controller.apply_batch(actions, force=bool(plan.refusals))
        for result in results:
            self._report(result)
            if kind == "drain" and result.outcome in ("done", "partial"):
                self.watch_drain(result.action.node,
                                 confirm.cutoff if isinstance(confirm, DrainConfirmScreen) else None)
        self.refresh_now()
        for screen in self.screen_stack:
            if isinstance(screen, NodeDetailScreen):
                self.load_audit(screen)

    def start_recover(self) -> None:
        if self._may_act(self.recovery is not None):
            self.perform_recover()

    @work(group="action", exit_on_error=False)
    async def perform_recover(self) -> None:
        assert self.recovery is not None
        try:
            confirm = ConfirmScreen("Recover interrupted changes?", [], warning=True, pending=True)
            answer = self.push_screen(confirm, wait_for_dismiss=True)
            try:
                plan = await self.recovery.plan()
            except Exception as e:  # the journal or a balancer could not be read: say why, change nothing
                confirm.set_plan([f"cannot plan the recovery: {type(e).__name__}: {e}"], "nothing will be sent", False)
                await answer
                return
            nothing = not plan.items
            confirm.set_plan(list(plan.lines) or [plan.message], plan.message if nothing else None, False)
            if not await answer:
                self.notify("recover: cancelled, nothing changed", timeout=3)
                return
            res = await self.recovery.run()
            self.notify("\n".join((res.message, *res.lines)), title=f"recover: {res.outcome}",
                        severity="error" if res.outcome != "done" else "information", timeout=12)
            self.refresh_now()
        finally:
            self.action_busy = False

    def _report(self, result: ActionResult) -> None:
        """One toast per action: its result line (it names the action, the node and the outcome already)."""
        self.notify(result.message, severity="error" if result.failed else "information",
                    timeout=8 if result.failed else 4)

    # -- side loads for the detail and model screens ------------------------------------------------
    @work(group="audit", exit_on_error=False)
    async def load_audit(self, screen: NodeDetailScreen) -> None:
        if self.audit is None:
            screen.set_audit([], "no audit log configured")
            return
        try:
            entries = await self.audit.recent(screen.node, 10)
        except Exception as e:  # unreadable log: say so in the panel
            screen.set_audit(None, f"audit log unreadable: {e}")
            return
        screen.set_audit(list(entries), None)

    @work(group="models", exit_on_error=False)
    async def load_model_files(self, screen: ModelScreen) -> None:
        snap = self.snapshot
        if snap is None:
            return
        reps = representatives(snap)
        if not reps:
            return
        screen.files_loading = True
        screen.show_fleet(snap)
        results = await asyncio.gather(*(self.source.model_files(url) for url in reps.values()), return_exceptions=True)
        files = {name: (r if not isinstance(r, BaseException) else f"{type(r).__name__}: {r}")
                 for name, r in zip(reps, results)}
        screen.set_files(files)


def _title(kind: str, nodes: tuple[str, ...], actions: list[Action]) -> str:
    who = ", ".join(nodes) if len(nodes) <= 4 else f"{len(nodes)} nodes"
    if kind == "weight":
        return f"Set weight {actions[0].value} on {who}?"
    if kind == "backup":
        flags = {a.value for a in actions}
        return f"Mark {who} as {'backup' if flags == {True} else 'primary' if flags == {False} else 'backup/primary (toggle)'}?"
    return {"drain": "Drain", "ready": "Ready", "maint": "Maintenance for"}[kind] + f" {who}?"


__all__ = ["AsrtopApp", "FleetUpdated"]  # FleetUpdated: tests and benchmarks feed snapshots to the app
