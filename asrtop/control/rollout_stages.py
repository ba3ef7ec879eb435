"""The rollout's stages, each recorded (state file, audit line, events) before and after it runs.

What each stage checks is the rule of the rollout: a node leaves only when its drain is read back, the hook
runs only once it is empty, it is healthy only when a reading collected AFTER the hook (asked of its agent
directly) shows the ASR service up and the model hashed with the target digest, and it goes back only after
the canary passed;
the model guard is overridden then only because the node runs the rollout's verified target.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import replace
from typing import Any, Awaitable, Protocol, Sequence, TypeVar

from asrtop.agentstatus import AgentStatus
from asrtop.config import NodeConfig
from asrtop.control.controller import Controller, DrainUndone
from asrtop.control.drain_words import DrainProgress, DrainWatch
from asrtop.control.eta import DrainEstimate
from asrtop.control.model import GUARD_MODEL, Action, ActionResult
from asrtop.control.rollout_canary import CanaryCheck
from asrtop.control.rollout_hook import group_alive, outlive, run_hook, substitute
from asrtop.control.rollout_model import (
    STAGE_WORDS,
    STAGES,
    TARGET_FROM_FIRST,
    PlannedNode,
    RolloutState,
    hook_log,
    progress_words,
    seconds_words,
    short,
)
from asrtop.control.rollout_plan import can_ramp
from asrtop.control.rollout_store import StateError
from asrtop.sources.agents import FreshStatus

T = TypeVar("T")
# An older agent (no ?after=): readings with distinct collected_at; the third's round began after the stage did.
FRESH_ROUNDS = 3
AGENT_WAIT = 12.0  # seconds for one fresh reading: the agent itself gives up (503) after 10
PROGRESS_SAVE_EVERY = 1.0  # seconds between state writes of the wait's count (a drain of hundreds is not hundreds of fsyncs)


class StageFailed(Exception):
    def __init__(self, node: str, stage: str, reason: str):
        super().__init__(f"{node} {stage}: {reason}")
        self.node, self.stage, self.reason = node, stage, reason


class Interrupted(Exception):
    """A stop was asked for: raised once the stage in progress is recorded."""


class Engine(Protocol):
    """What the stages need of the engine (asrtop.control.rollout.RolloutEngine)."""

    ctl: Controller
    audit_path: Any
    canary: CanaryCheck
    poll: float
    state: RolloutState | None

    @property
    def stopping(self) -> bool: ...

    def stop_reason(self) -> str: ...

    async def until_stopped(self) -> None: ...

    def save(self) -> None: ...

    def audit(self, node: str | None, stage: str, outcome: str, message: str) -> None: ...

    def emit(self, kind: str, node: str | None = None, stage: str | None = None, message: str = "",
             **figures: object) -> None: ...


class Stages:
    def __init__(self, engine: Engine):
        self.e = engine
        self.ctl = engine.ctl

    @property
    def state(self) -> RolloutState:
        assert self.e.state is not None
        return self.e.state

    @state.setter
    def state(self, value: RolloutState) -> None:
        self.e.state = value

    def planned(self, node: str) -> PlannedNode:
        return next(n for n in self.state.plan.nodes if n.name == node)

    # -- what runs next ------------------------------------------------------------------------------

    def next_stage(self, node: str, redo: tuple[str, str] | None = None) -> str | None:
        """The stage a node goes on with: --from's for the node it names; a stage that was running (killed)
        or failed is redone; after one that passed, the next; None when the node is done."""
        if redo is not None and redo[0] == node:
            return redo[1]
        p = self.state.progress(node)
        if p.stage is None:
            return STAGES[0]
        if p.status == "ok":
            return None if p.stage == STAGES[-1] else STAGES[STAGES.index(p.stage) + 1]
        return p.stage

    def check_redo(self, node: str, stage: str) -> str | None:
        """--from STAGE for `node`: never skips a stage it has not passed. One line when it would."""
        if node not in {n.name for n in self.state.plan.nodes}:
            return f"--from {stage}: {node} is not in this rollout"
        if self.state.progress(node).done:
            return f"--from {stage}: {node} is done already, nothing to redo"
        now = self.next_stage(node)
        if now is not None and STAGES.index(stage) > STAGES.index(now):
            return (f"--from {stage} would skip {', '.join(STAGES[STAGES.index(now):STAGES.index(stage)])} on "
                    f"{node} (it goes on with {now})")
        return None

    async def batch(self, names: Sequence[str], redo: tuple[str, str] | None) -> None:
        starts = {n: s for n in names if (s := self.next_stage(n, redo)) is not None}
        if not starts:
            return
        if self.e.stopping:
            raise Interrupted
        drain = [n for n, s in starts.items() if s == "drain"]
        if drain:
            await self.drain(drain)
        for n in names:
            if n not in starts:
                continue
            first = "wait" if starts[n] == "drain" else starts[n]
            for stage in STAGES[STAGES.index(first):]:
                await self.stage(n, stage)

    # -- recording -----------------------------------------------------------------------------------

    def begin(self, node: str, stage: str) -> float:
        p = self.state.progress(node)
        self.state = self.state.with_node(node, stage=stage, status="running", detail="",
                                          started_at=p.started_at or time.time(), finished_at=None)
        self.e.save()
        self.e.emit("start", node, stage, STAGE_WORDS[stage])
        return time.monotonic()

    def passed(self, node: str, stage: str, detail: str, t0: float) -> None:
        self.state = self.state.with_node(node, status="ok", detail=detail,
                                          finished_at=time.time() if stage == STAGES[-1] else None)
        self.e.save()
        self.e.audit(node, stage, "ok", detail)
        self.e.emit("ok", node, stage, f"ok: {detail}", elapsed=time.monotonic() - t0)

    def failed(self, node: str, stage: str, reason: str, t0: float) -> None:
        self.state = self.state.with_node(node, status="failed", detail=reason, finished_at=time.time())
        self.e.save()
        self.e.audit(node, stage, "failed", reason)
        self.e.emit("failed", node, stage, f"failed: {reason}", elapsed=time.monotonic() - t0)

    async def stage(self, node: str, stage: str) -> None:
        t0 = self.begin(node, stage)
        try:
            detail = await getattr(self, stage)(node)
        except StageFailed as f:
            self.failed(node, stage, f.reason, t0)
            raise
        except Interrupted:
            self.failed(node, stage, f"interrupted by {self.e.stop_reason()}", t0)
            raise
        except (asyncio.CancelledError, StateError):
            raise
        except Exception as e:  # a bug or a surprise: recorded as this stage's failure, never a traceback
            reason = f"unexpected error ({type(e).__name__}: {e})"
            self.failed(node, stage, reason, t0)
            raise StageFailed(node, stage, reason) from e
        self.passed(node, stage, detail, t0)
        if self.e.stopping:
            raise Interrupted

    async def interruptible(self, aw: Awaitable[T]) -> T:
        """Await it unless a stop is asked for first (then Interrupted): for the stages that only wait."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.e.until_stopped())
        try:
            done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise Interrupted

    # -- the stages ----------------------------------------------------------------------------------

    async def drain(self, names: Sequence[str]) -> None:
        """A batch at once (the min_ready guardrail over all of them), each node's stage recorded."""
        starts = {n: self.begin(n, "drain") for n in names}
        actions = [Action("drain", n) for n in names]
        results = (await self.ctl.apply_batch(actions) if len(actions) > 1
                   else (await self.ctl.apply(actions[0]),))
        bad = [(n, r) for n, r in zip(names, results) if r.failed]
        for n, r in zip(names, results):
            if not r.failed:
                self.passed(n, "drain", r.message, starts[n])
        for n, r in bad:
            self.failed(n, "drain", r.message, starts[n])
        if bad:
            raise StageFailed(bad[0][0], "drain", bad[0][1].message)
        if self.e.stopping:
            raise Interrupted

    async def wait(self, node: str) -> str:
        timeout = self.state.plan.settings.drain_timeout
        est, last, oldest, saved = DrainEstimate(), [(-1, None)], [None], [-PROGRESS_SAVE_EVERY]
        watch = DrainWatch(node)  # the streams the node still carries, as `drain --wait` words them

        def progress(n: int | None, waited: float) -> None:
            eta = est.add(waited, n)
            streams = watch.last.streams if watch.last is not None else None
            if (n, streams) != last[0]:  # one event per change of the counts
                last[0] = (n, streams)  # type: ignore[call-overload]
                words = (watch.last.line() if watch.last is not None and streams is not None
                         else progress_words(n, waited, eta, oldest[0]))
                self.e.emit("progress", node, "wait", words, in_flight=n, eta_seconds=eta, elapsed=waited,
                            oldest_seconds=oldest[0])
                if waited - saved[0] >= PROGRESS_SAVE_EVERY:  # the console's panel reads the state file
                    saved[0] = waited
                    self.state = self.state.with_node(node, detail=words)
                    self.e.save()

        def seen_oldest(age: float | None) -> None:
            oldest[0] = age  # type: ignore[call-overload]

        t0 = time.monotonic()
        try:
            empty = await self.interruptible(self.ctl.wait_drained(node, timeout, progress, interval=self.e.poll,
                                                                   on_oldest=seen_oldest,
                                                                   on_node=lambda v, w: watch.add(w, v)))
        except DrainUndone as e:
            raise StageFailed(node, "wait", str(e)) from None
        if not empty:
            raise StageFailed(node, "wait", f"{left_words(last[0][0], watch.last)} after {timeout:g} s "
                                            f"(--drain-timeout)")
        return f"empty after {seconds_words(time.monotonic() - t0)}"

    async def node_config(self, node: str, stage: str = "hook") -> NodeConfig:
        for n in self.ctl.config.nodes:
            if n.name == node:
                return n
        snap = await self.ctl.source.snapshot()  # a discovered node
        try:
            return snap.node(node).config
        except KeyError:
            raise StageFailed(node, stage, f"{node} is no longer in the fleet") from None

    async def hook(self, node: str) -> str:
        settings = self.state.plan.settings
        try:
            argv = substitute(settings.hook, await self.node_config(node))
        except ValueError as e:
            raise StageFailed(node, "hook", str(e)) from None
        log = hook_log(self.e.audit_path, self.state.id, node)
        left = self.state.progress(node).hook_pid  # asrtop was killed while this hook ran: never two at once
        if left is not None and group_alive(left):
            self.e.emit("info", node, "hook", f"the hook of the interrupted run (pid {left}) still runs: waiting "
                                              f"for it to end before running it again")
            if await outlive(left, settings.hook_timeout):
                self.e.emit("info", node, "hook", f"killed the old hook (pid {left}) after {settings.hook_timeout:g} s")

        def started(pid: int) -> None:
            self.state = self.state.with_node(node, hook_pid=pid)
            self.e.save()

        res = await run_hook(argv, log, settings.hook_timeout, started)
        self.state = self.state.with_node(node, hook_pid=None)
        if res.error is not None:
            raise StageFailed(node, "hook", f"{res.error} (log: {log})")
        return f"exit 0 after {seconds_words(res.seconds)} (log: {log})"

    async def health(self, node: str) -> str:
        """Ask the node's agent, every poll, for a reading collected after the request reached it.

        The request asks `after=now` in the agent's own terms rather than after the hook's end on this clock:
        asrtop and the agent may run on different hosts, and an agent clock ahead of ours would let a round
        that began before the hook ended pass. Every request is sent after the hook ended, so a round that
        began after the agent got it began after the hook ended, whatever the two clocks say. An older agent
        ignores `after` (no round_started_at): then the third distinct collected_at, as before."""
        timeout = self.state.plan.settings.health_timeout
        deadline = time.monotonic() + timeout
        agent = self.planned(node).agent or (await self.node_config(node, "health")).agent
        if not agent:
            raise StageFailed(node, "health", f"{node} has no agent to ask (agent = \"http://HOST:PORT\")")
        marks: list[float] = []  # an older agent: distinct collected_at seen since the stage began
        why = "no answer from its agent yet"
        async with FreshStatus(agent) as agent_status:
            while True:
                wait = max(0.5, min(AGENT_WAIT, deadline - time.monotonic()))
                status = await self.interruptible(agent_status.get(wait))
                if isinstance(status, str):
                    why = f"its agent: {status}"
                elif status.round_started_at is not None or self.fresh_enough(status, marks):
                    verdict = self.judge(node, status)
                    if verdict is None:
                        return f"ASR up, model {short(status.model.sha256)}"
                    why = verdict
                else:
                    why = "waiting for a reading collected after the hook"
                if time.monotonic() >= deadline:
                    raise StageFailed(node, "health", f"not healthy after {timeout:g} s (--health-timeout): {why}")
                await self.interruptible(asyncio.sleep(self.e.poll))

    @staticmethod
    def fresh_enough(status: AgentStatus, marks: list[float]) -> bool:
        """An older agent's reading: collection rounds never overlap, and the first mark was served after the
        hook ended, so the round behind the third distinct collected_at began after it (the agent's times)."""
        if status.collected_at is not None and (not marks or status.collected_at > marks[-1]):
            marks.append(status.collected_at)
        return len(marks) >= FRESH_ROUNDS

    def judge(self, node: str, st: AgentStatus) -> str | None:
        """None: healthy on the target model (the first node's digest becomes the target); else why not yet.
        A wrong digest fails the stage at once."""
        if st.asr.up is not True:
            return "the ASR service is not up" + (f" ({st.asr.error})" if st.asr.error else "")
        if st.model.state != "ok" or not st.model.sha256:
            return f"the model is {st.model.state}" + (f" ({st.model.error})" if st.model.error else "")
        target, digest = self.state.target, st.model.sha256
        if target is None:
            self.state = replace(self.state, target=digest)
            self.e.save()
            self.e.emit("info", node, "health", f"target model {short(digest)}: what the first upgraded node runs; "
                                                f"every later node must match it")
            return None
        if digest != target:
            source = self.state.plan.target_source
            whose = "the first upgraded node's" if source == TARGET_FROM_FIRST else source
            raise StageFailed(node, "health", f"{node} runs model {short(digest)} after the hook, the target is "
                                              f"{short(target)} ({whose})")
        return None

    async def canary(self, node: str) -> str:
        settings, address = self.state.plan.settings, self.planned(node).address
        if not address:
            raise StageFailed(node, "canary", f"{node} has no address in the cluster file to send the canary to")
        v = await self.e.canary(address, settings, self.state.reference_text, max(10.0, settings.health_timeout))
        if v.error is not None:
            raise StageFailed(node, "canary", v.error)
        if self.state.reference_text is None and v.text:
            self.state = replace(self.state, reference_text=v.text)
            self.e.save()
        return v.detail or "passed"

    async def ready(self, node: str) -> str:
        snap = await self.ctl.source.snapshot()
        view = snap.node(node)
        weight = self.planned(node).weight
        if view.admin_state == "ready" and (weight is None or view.weight == weight):
            return "ready on every balancer already (not sent again)"
        settings = self.state.plan.settings
        ramp = can_ramp(settings, [(b.name, b.kind) for b in self.ctl.balancers]) and (weight or 0) > 1
        if ramp and view.admin_state != "ready":
            await self.guarded(node, Action("weight", node, 1))
        res = await self.guarded(node, Action("ready", node))
        if ramp:
            await self.ramp(node, int(weight or 1), settings.ramp)
        elif weight is not None and view.weight != weight:
            await self.guarded(node, Action("weight", node, weight))
        return res.message

    async def ramp(self, node: str, weight: int, seconds: float) -> None:
        steps = max(1, min(weight - 1, math.ceil(seconds)))
        for i in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            await self.guarded(node, Action("weight", node, 1 + math.ceil((weight - 1) * i / steps)))

    async def guarded(self, node: str, action: Action) -> ActionResult:
        """Apply through the Controller; the model guard's refusal is overridden only when the node runs the
        rollout's verified target (read now), never any other guard."""
        plan = await self.ctl.plan(action)
        force = False
        if plan.refusals and all(r.guard == GUARD_MODEL for r in plan.refusals):
            snap = await self.ctl.source.snapshot()
            force = self.state.target is not None and snap.node(node).model_digest == self.state.target
        res = await self.ctl.apply(action, force=force)
        if res.failed:
            raise StageFailed(node, "ready", res.message)
        return res


def left_words(in_flight: int | None, seen: DrainProgress | None) -> str:
    """What a wait that timed out leaves: "2 live streams and 1 other request still open" or
    "3 request(s) still in flight"."""
    if seen is not None and seen.streams:
        others = max(0, (in_flight or 0) - seen.streams)
        return f"{seen.streams} live stream(s) and {others} other request(s) still open"
    left = "an unknown number of" if in_flight in (-1, None) else str(in_flight)
    return f"{left} request(s) still in flight"
