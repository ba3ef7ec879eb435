"""The console's rolling upgrade (AsrtopApp mixes this in): `U` plans over the selection (or every node), the
confirmation shows RolloutPlan.lines(), `y` writes the state file and starts `asrtop rollout --resume` detached
(asrtop.tui.rollout_launch); the panel under the table follows the state file on every refresh."""

from __future__ import annotations

import asyncio

from textual import work

from asrtop.control.rules import one_line
from asrtop.control.rollout_words import NO_HOOK
from asrtop.tui.screens.rollout import RolloutScreen


class RolloutActions:
    """Needs the App's rollout (RolloutStarter | None), clock, _rollouts_watched, _rollout_reading, read_only,
    action_busy, _may_act, fleet_screen, notify and push_screen (all set up by AsrtopApp)."""

    def start_rollout(self, nodes: list[str]) -> None:
        """The fleet screen's `U` and the palette: plan, confirm, then create + launch (nodes [] = every node)."""
        if not self.read_only and self.rollout is not None and not self.rollout.settings.hook:
            self.notify(NO_HOOK, severity="warning", timeout=10)  # argv templates belong in the reviewed file
            return
        if self._may_act(self.rollout is not None):
            self.perform_rollout(tuple(nodes))

    @work(group="action", exit_on_error=False)
    async def perform_rollout(self, nodes: tuple[str, ...]) -> None:
        try:
            await self._run_rollout(nodes)
        finally:
            self.action_busy = False

    async def _run_rollout(self, nodes: tuple[str, ...]) -> None:
        assert self.rollout is not None  # start_rollout refuses without one
        confirm = RolloutScreen(nodes)
        answer = self.push_screen(confirm, wait_for_dismiss=True)
        try:
            plan = await self.rollout.plan(nodes)
        except Exception as e:  # bad input or an unreadable balancer: the engine's line, nothing started
            confirm.set_plan([], one_line(e), False)
            await answer
            return
        refused = {r.line for r in plan.refusals}  # lines() ends with them (--dry-run); here they show below, in red
        confirm.set_plan([line for line in plan.lines() if line not in refused], plan.refusal, False)
        if not await answer:
            self.notify("rollout: cancelled, nothing changed", timeout=3)
            return
        try:
            state = self.rollout.create(plan)  # refused (one line) while another rollout is unfinished
        except Exception as e:
            self.notify(one_line(e), title="rollout refused", severity="error", timeout=12)
            return
        try:
            log = self.rollout.launch(state)
        except OSError as e:
            self.notify(f"could not start `asrtop rollout --resume`: {e.strerror or e}; the rollout is written "
                        f"and waits for it", title=f"rollout {state.id}", severity="error", timeout=15)
        else:
            self.notify(f"runs on when the console closes; output in {log}", title=f"rollout {state.id} started",
                        timeout=8)
        self.follow_rollout()

    def follow_rollout(self) -> None:
        """Every refresh: the state file (re-read only when it changed) into the panel; the end of the process
        this console launched, once, as a notification with the rollout's own last line. The files are read in
        a thread (a stat, a flock test, a parse when the engine rewrote the state), never on the UI loop; a
        refresh that comes while a read is still out skips it (the next one reads)."""
        if self.rollout is None or self._rollout_reading:
            return
        self._rollout_reading = True
        self._read_rollout()

    @work(group="rollout-read", exit_on_error=False)
    async def _read_rollout(self) -> None:
        try:
            ended, state, alive, error = await asyncio.to_thread(self._rollout_files)
        finally:
            self._rollout_reading = False
        if ended is not None:
            code, line = ended
            how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            self.notify(line, title=f"`asrtop rollout` ended ({how})", severity="information" if code == 0 else "error",
                        timeout=20)
        if state is not None and state.status in ("running", "stopped"):
            self._rollouts_watched.add(state.id)
        watched = state is not None and state.id in self._rollouts_watched
        self.fleet_screen.show_rollout(state, self.clock(), alive, watched, self.rollout.config_path, error)  # once composed

    def _rollout_files(self) -> tuple:
        """(how the launched process ended or None, the state or None, lock held or None, error or None)."""
        assert self.rollout is not None
        ended = self.rollout.finished()
        error = alive = None
        try:
            state = self.rollout.current()
            if state is not None and state.status == "running":
                alive = self.rollout.alive()
        except Exception as e:  # a corrupt or unreadable state file: one line in the panel
            state, error = None, f"rollout state unreadable: {one_line(e)}"
        return ended, state, alive, error
