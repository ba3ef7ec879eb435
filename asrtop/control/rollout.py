"""The rollout engine: node after node, verified, resumable; one engine under the CLI and the console.

    engine = RolloutEngine(ctl)                         # state file, lock and hook logs beside ctl's audit log
    plan = await engine.plan(["node-1"], settings)      # changes nothing; plan.refusals: it would not start
    engine.create(plan)                                 # writes the state file (RolloutRefused: one line)
    result = await engine.run(on_event)                 # runs or resumes it, holding the rollout lock
    engine.abort()                                      # ends it, changes no balancer, says which nodes are out

Per node (asrtop.control.rollout_model.STAGES): drain (every balancer, a batch at once) -> wait (the
Controller's in-flight figure, as `drain --wait`) -> hook -> health (the agent: ASR up, model hashed with
the target digest) -> canary -> ready (+ ramp). The first failure stops it: that node stays out, nothing
else changes. The state is written after every stage and each stage is one audit line, so `--resume`
after a crash redoes the stage that was running, never readies a node twice and never skips one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from asrtop.control.audit import AuditError, now_text, who
from asrtop.control.controller import Controller
from asrtop.control.model import Refusal, exit_code_for
from asrtop.control.rollout_canary import CanaryCheck, send_canary
from asrtop.control.rollout_model import (  # the stop's wording: command, resume_or_abort, stop_lines
    command,
    resume_or_abort,
    stop_lines,
    STAGES,
    RolloutEvent,
    RolloutPlan,
    RolloutSettings,
    RolloutState,
)
from asrtop.control.rollout_plan import build_plan
from asrtop.control.rules import read_only_line
from asrtop.control.rollout_stages import Interrupted, StageFailed, Stages
from asrtop.control.rollout_store import (  # Holder, holder: who runs a rollout now (the console asks too)
    UNFINISHED,
    Holder,
    RolloutLock,
    StateError,
    current_node,
    held_nodes,
    holder,
    read_state,
    write_state,
)
from asrtop.exitcodes import BAD_INPUT, INTERRUPTED, OK, REFUSED_GUARDRAIL, ROLLOUT_STOPPED

__all__ = ["Holder", "RolloutEngine", "RolloutRefused", "RolloutResult", "holder", "stop_lines"]

EventSink = Callable[[RolloutEvent], None]
# Between two reads while a node empties or comes back: each read is one fleet snapshot (balancers and agents);
# a quarter second keeps the rollout's own overhead per node well under its 1 s budget.
POLL_SECONDS = 0.25


class RolloutRefused(Exception):
    """The rollout would not start (or resume): str() is one line; exit_code as the CLI returns it."""

    def __init__(self, line: str, exit_code: int = REFUSED_GUARDRAIL):
        super().__init__(line)
        self.line, self.exit_code = line, exit_code


@dataclass(frozen=True)
class RolloutResult:
    exit_code: int
    message: str  # one line, then the commands to go on with (stopped) on the lines after it
    state: RolloutState | None = None


def new_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(2)


def refusal_exit(refusals: Sequence[Refusal]) -> int:
    return BAD_INPUT if any(r.outcome == "bad-input" for r in refusals) else exit_code_for(
        refusals[0].outcome if refusals else "refused")


class RolloutEngine:
    """See the module docstring. `canary`: the canary seam (tests pass a fake); `poll`: seconds between reads
    while waiting for a node to empty or to come back healthy."""

    def __init__(self, ctl: Controller, audit_path: str | os.PathLike | None = None,
                 canary: CanaryCheck | None = None, poll: float = POLL_SECONDS, clock: Callable[[], float] = time.time):
        self.ctl = ctl
        self.audit_path = Path(audit_path) if audit_path is not None else Path(ctl.audit.path)
        self.canary = canary or send_canary
        self.poll, self.clock = poll, clock
        self.state: RolloutState | None = None
        self._stop_reason: str | None = None
        self._stop: asyncio.Event | None = None
        self._on_event: EventSink = lambda e: None

    # -- plan, create, read ---------------------------------------------------------------------------

    async def plan(self, nodes: Sequence[str], settings: RolloutSettings) -> RolloutPlan:
        """What a rollout over `nodes` (empty: every node) would do now; changes nothing."""
        snap = await self.ctl.source.snapshot()
        plan = build_plan(snap, self.ctl.config, nodes, settings,
                          [(b.name, b.kind) for b in self.ctl.balancers], self.ctl.read_only)
        busy = self._busy()
        return replace(plan, refusals=plan.refusals + (busy,)) if busy else plan

    def current(self) -> RolloutState | None:
        """The state file's rollout (any status), None when there is none."""
        return read_state(self.audit_path)

    def _busy(self) -> Refusal | None:
        """A rollout runs now, or one is unfinished: a new one would fight it."""
        h = holder(self.audit_path)
        if h is not None:
            return Refusal("refused", f"refused: {h.line()}")
        return self._unfinished()

    def _unfinished(self) -> Refusal | None:
        try:
            st = read_state(self.audit_path)
        except StateError as e:
            return Refusal("refused", f"refused: {e}")
        if st is None or st.status not in UNFINISHED:
            return None
        node, stage = (st.stopped or {}).get("node"), (st.stopped or {}).get("stage")
        if not node:
            node, stage = current_node(st)
        where = f", stopped at {node} ({stage})" if node else ", not started yet"
        return Refusal("refused", f"refused: rollout {st.id} (started by {st.user} at {_clock(st.started_at)}) is "
                                  f"unfinished{where}: {resume_or_abort(self.ctl.config.path)}")

    def create(self, plan: RolloutPlan) -> RolloutState:
        """Write the state file of a new rollout (status "stopped", nothing done yet); `run` starts it."""
        if plan.refusals:
            raise RolloutRefused(plan.refusal or "refused", refusal_exit(plan.refusals))
        lock = RolloutLock(self.audit_path)
        if not lock.acquire():
            h = holder(self.audit_path)
            raise RolloutRefused(f"refused: {h.line() if h else 'a rollout is starting'}")
        try:
            busy = self._unfinished()
            if busy is not None:
                raise RolloutRefused(busy.line)
            now = self.clock()
            state = RolloutState(new_id(now), who(), os.getpid(), now, now, "stopped", plan, {}, plan.target,
                                 plan.settings.canary_text)
            try:
                write_state(self.audit_path, state)
            except StateError as e:
                raise RolloutRefused(str(e), BAD_INPUT) from None
            return state
        finally:
            lock.release()

    # -- stop (Ctrl+C, SIGTERM, SIGHUP) ----------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop after the stage in progress is recorded (a wait or a health wait ends at once: both are
        redone on --resume; a hook runs to its end: an upgrade cut in half helps nobody)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    def stop_reason(self) -> str:
        return self._stop_reason or "a signal"

    async def until_stopped(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    # -- run -------------------------------------------------------------------------------------------

    async def run(self, on_event: EventSink | None = None, from_stage: str | None = None) -> RolloutResult:
        """Run (or resume) the state file's rollout to its end or its first failure, holding the lock."""
        self._on_event = on_event or (lambda e: None)
        self._stop = asyncio.Event()
        if self._stop_reason is not None:
            self._stop.set()
        if from_stage is not None and from_stage not in STAGES:
            return RolloutResult(BAD_INPUT, f"--from must be one of {', '.join(STAGES)}, got {from_stage!r}")
        if self.ctl.read_only:  # before anything: its first drain would be refused halfway into a stage
            return RolloutResult(REFUSED_GUARDRAIL, f"refused: {read_only_line('a rollout')}")
        lock = RolloutLock(self.audit_path)
        if not lock.acquire():
            h = holder(self.audit_path)
            return RolloutResult(REFUSED_GUARDRAIL, f"refused: {h.line() if h else 'a rollout is running'}")
        try:
            try:
                state = read_state(self.audit_path)
            except StateError as e:
                return RolloutResult(BAD_INPUT, str(e))
            if state is None:
                return RolloutResult(BAD_INPUT, "no rollout to resume: start one with `asrtop rollout --hook \"CMD "
                                                "ARGS\"` (see `asrtop rollout --help`)")
            if state.status not in UNFINISHED:
                return RolloutResult(BAD_INPUT, f"rollout {state.id} is {state.status}: nothing to resume",
                                     state)
            self.ctl.rollout_id = state.id  # the Controller lets this rollout's own actions through
            try:
                return await self._run(state, from_stage)
            finally:
                self.ctl.rollout_id = None
        finally:
            lock.release()

    async def _run(self, state: RolloutState, from_stage: str | None) -> RolloutResult:
        redo = None
        if from_stage is not None:
            node = (state.stopped or {}).get("node") or current_node(state)[0]
            if node is None:
                return RolloutResult(BAD_INPUT, f"--from {from_stage}: no node has started yet, nothing to redo",
                                     state)
            redo = (node, from_stage)
        stages = Stages(self)
        self.state = state
        if redo is not None:
            bad = stages.check_redo(*redo)
            if bad:
                return RolloutResult(BAD_INPUT, bad, state)
        resumed = bool(state.nodes)
        self.state = replace(state, status="running", pid=os.getpid(), stopped=None, updated_at=self.clock())
        t0 = time.monotonic()
        what = "resumed" if resumed else "started"
        try:
            self.save()
            self.audit(None, "start", "started", f"rollout {state.id} {what} by {who()}")
            self.emit("start", message=f"rollout {state.id} {what}: {len(state.plan.nodes)} node(s), target model "
                                       f"{(self.state.target or '')[:12] or 'from the first upgraded node'}")
            for batch in state.plan.batches:
                await stages.batch(batch, redo)
        except StageFailed as f:
            return self._stopped(f.node, f.stage, f.reason, time.monotonic() - t0)
        except Interrupted:
            return self._interrupted(time.monotonic() - t0)
        except StateError as e:  # cannot record a stage: going on would leave no trace to resume from
            node, stage = current_node(self.state)
            line = (f"rollout stopped at {node or 'the start'}{f', stage {stage}' if stage else ''}: {e}; every "
                    f"node is as the rollout left it (`{command(self.ctl.config.path, 'status')}`)")
            self.emit("end", message=line, elapsed=time.monotonic() - t0, exit_code=ROLLOUT_STOPPED)
            return RolloutResult(ROLLOUT_STOPPED, line, self.state)
        self.state = replace(self.state, status="done", updated_at=self.clock())
        self.save()
        msg = f"rollout {state.id} done: {len(state.plan.nodes)} node(s) upgraded and back in rotation"
        if self.state.target:
            msg += f", model {self.state.target[:12]}"
        self.audit(None, "end", "ok", msg)
        self.emit("end", message=msg, elapsed=time.monotonic() - t0, exit_code=OK)
        return RolloutResult(OK, msg, self.state)

    def _stopped(self, node: str, stage: str, reason: str, elapsed: float) -> RolloutResult:
        assert self.state is not None
        self.state = replace(self.state, status="stopped", stopped={"node": node, "stage": stage, "reason": reason},
                             updated_at=self.clock())
        self.save()
        lines = stop_lines(node, stage, reason, self.ctl.config.path)
        self.audit(None, "end", "failed", lines[0])
        self.emit("end", message=lines[0], elapsed=elapsed, exit_code=ROLLOUT_STOPPED)
        return RolloutResult(ROLLOUT_STOPPED, "\n".join(lines), self.state)

    def _interrupted(self, elapsed: float) -> RolloutResult:
        assert self.state is not None
        node, stage = current_node(self.state)
        reason = f"interrupted by {self.stop_reason()}"
        self.state = replace(self.state, status="stopped", updated_at=self.clock(),
                             stopped={"node": node or "", "stage": stage or "", "reason": reason})
        self.save()
        after = f" after {node}'s {stage} was recorded" if node else ""
        line = (f"rollout {self.state.id} {reason}{after}; continue it with "
                f"`{command(self.ctl.config.path, 'rollout --resume')}`")
        self.audit(None, "end", "failed", line)
        self.emit("end", message=line, elapsed=elapsed, exit_code=INTERRUPTED)
        return RolloutResult(INTERRUPTED, line, self.state)

    # -- abort -----------------------------------------------------------------------------------------

    def abort(self) -> RolloutResult:
        """End the unfinished rollout: status "aborted", no balancer touched; says which nodes are out."""
        lock = RolloutLock(self.audit_path)
        if not lock.acquire():
            h = holder(self.audit_path)
            return RolloutResult(REFUSED_GUARDRAIL, f"refused: {h.line() if h else 'a rollout is running'}; stop "
                                                    f"it first (Ctrl+C where it runs, or SIGTERM its pid)")
        try:
            try:
                state = read_state(self.audit_path)
            except StateError as e:
                return RolloutResult(BAD_INPUT, str(e))
            if state is None or state.status not in UNFINISHED:
                what = "no rollout" if state is None else f"rollout {state.id} is {state.status}"
                return RolloutResult(BAD_INPUT, f"{what}: nothing to abort", state)
            out = held_nodes(state)
            self.state = replace(state, status="aborted", updated_at=self.clock())
            self.save()
            if out:
                where = ", ".join(f"{n} (at {state.progress(n).stage})" for n in out)
                left = (f"left as they are, out of rotation: {where}; put one back with "
                        f"`{command(self.ctl.config.path, 'ready ' + out[0])}`")
            else:
                left = "no node is out of rotation"
            msg = f"rollout {state.id} aborted, no balancer changed: {left}"
            self.audit(None, "abort", "ok", msg)
            return RolloutResult(OK, msg, self.state)
        finally:
            lock.release()

    # -- records: state, audit, events -----------------------------------------------------------------

    def save(self) -> None:
        assert self.state is not None
        self.state = replace(self.state, updated_at=self.clock())
        write_state(self.audit_path, self.state)

    def audit(self, node: str | None, stage: str, outcome: str, message: str) -> None:
        rid = self.state.id if self.state else ""
        record = {"time": now_text(), "user": who(), "action": "rollout", "node": node or "", "value": stage,
                  "force": False, "forced": False, "dry_run": False, "outcome": outcome, "message": message,
                  "balancers": [], "rollout": rid}
        try:
            self.ctl.audit.append(record)
        except AuditError as e:  # the stage happened: say so, never hide it
            self.emit("info", node=node, stage=stage, message=f"WARNING: {e}")

    def emit(self, kind: str, node: str | None = None, stage: str | None = None, message: str = "",
             **figures: object) -> None:
        rid = self.state.id if self.state else ""
        self._on_event(RolloutEvent(self.clock(), rid, kind, node, stage, message, **figures))  # type: ignore[arg-type]


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))
