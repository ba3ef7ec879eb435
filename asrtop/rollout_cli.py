"""`asrtop rollout`: the rollout engine (asrtop.control.rollout) on a terminal, a pipe or a CI job.

Output: on a pipe one line per event (progress only when the in-flight count changes); on a terminal the
same lines with a live status line below them (node, stage, in flight, elapsed, estimate) rewritten in
place; with --json one RolloutEvent per line, the last one the "end" event with the exit code. Human
messages (refusals, the stop and how to go on) go to stderr, so stdout stays clean JSON with --json.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any, TextIO

from asrtop.control.rollout_model import (
    STAGE_WORDS,
    STAGES,
    RolloutEvent,
    RolloutPlan,
    RolloutSettings,
    progress_words,
    seconds_words,
)
from asrtop.exitcodes import BAD_INPUT, INTERRUPTED, OK

TICK = 0.5  # the terminal's live line is redrawn this often


def say(text: str, stream: TextIO | None = None) -> None:
    """A line to stdout (or `stream`); a terminal that went away (lost SSH session) loses it, nothing else."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except OSError:
        pass


def err(line: str) -> None:
    say(f"asrtop: {line}", sys.stderr)


def settings_from(args: Any, config) -> RolloutSettings:
    """The flags over the cluster file's [rollout] table; ValueError: one line."""
    from asrtop.config import split_hook

    r = config.rollout
    hook = split_hook(args.hook) if args.hook is not None else tuple(r.hook)
    canary = args.canary if args.canary is not None else (str(r.canary) if r.canary else None)
    if canary is not None:
        from asrtop.control.canary import load_clip

        load_clip(canary)  # ClipError (a ValueError): one line naming the file

    def pick(name: str, default: Any) -> Any:
        v = getattr(args, name, None)
        return default if v is None else v

    return RolloutSettings(hook=hook, expect_model=args.expect_model, max_unavailable=pick("max_unavailable",
                           r.max_unavailable), canary=canary, canary_text=pick("canary_text", r.canary_text),
                           canary_api=pick("canary_api", r.canary_api), max_rtf=pick("max_rtf", r.max_rtf),
                           drain_timeout=pick("drain_timeout", r.drain_timeout),
                           hook_timeout=pick("hook_timeout", r.hook_timeout),
                           health_timeout=pick("health_timeout", r.health_timeout), ramp=pick("ramp", r.ramp))


class Output:
    """Events to a pipe (lines), a terminal (lines + a live line) or --json (one object per line)."""

    def __init__(self, out: TextIO, as_json: bool):
        self.out, self.json = out, as_json
        self.tty = out.isatty() and not as_json
        self.live: RolloutEvent | None = None  # the stage running now (its start or last progress event)
        self.live_since = time.monotonic()
        self.drawn = False
        self.ended = False  # the "end" event was written (--json)
        self.last_error: str | None = None

    def error(self, line: str) -> None:
        self.last_error = self.last_error or line
        self.clear()
        err(line)
        self.draw()

    def write(self, text: str) -> None:
        try:
            self.clear()
            self.out.write(text + "\n")
            self.out.flush()
            self.draw()
        except OSError:  # the terminal went away (a lost SSH session: EIO, a closed pipe): the rollout goes on
            self.tty = False

    def notice(self, text: str) -> None:
        """A line of the CLI's own (not the engine's): an "info" event with --json, so stdout stays JSON."""
        self.write(json.dumps(RolloutEvent(time.time(), "", "info", message=text).as_json()) if self.json else text)

    def plan(self, plan: RolloutPlan, rollout: str = "") -> None:
        if self.json:
            ev = RolloutEvent(time.time(), rollout, "plan", message=plan.lines()[0])
            self.write(json.dumps({**ev.as_json(), "plan": plan.as_json(), "lines": plan.lines(),
                                   "refusal": plan.refusal}))
        else:
            for line in plan.lines():
                self.write(line)

    def event(self, ev: RolloutEvent) -> None:
        if self.json:
            self.ended = self.ended or ev.kind == "end"
            self.write(json.dumps(ev.as_json()))
            return
        if ev.kind == "start" and ev.node:
            self.live, self.live_since = ev, time.monotonic()
        elif ev.kind == "progress":
            self.live = ev
        elif ev.kind in ("ok", "failed"):
            self.live = None
        if ev.kind == "end":  # the result's message says it, on stdout or stderr
            self.live = None
            self.clear()
            return
        if ev.kind == "progress" and self.tty:  # the live line shows it
            self.draw()
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(ev.at))
        self.write(f"{stamp} {ev.line()}")

    def live_text(self) -> str | None:
        ev = self.live
        if ev is None or not ev.node:
            return None
        elapsed = time.monotonic() - self.live_since
        if ev.stage == "wait" and ev.kind == "progress":
            return f"{ev.node} wait: {progress_words(ev.in_flight, elapsed, ev.eta_seconds, ev.oldest_seconds)}"
        return f"{ev.node} {ev.stage}: {STAGE_WORDS.get(ev.stage or '', ev.stage)}, {seconds_words(elapsed)}"

    def draw(self) -> None:
        if not self.tty:
            return
        text = self.live_text()
        if text is None:
            return
        try:
            self.out.write(f"\r\x1b[K{text}")
            self.out.flush()
        except OSError:
            self.tty = False
            return
        self.drawn = True

    def clear(self) -> None:
        if self.tty and self.drawn:
            self.out.write("\r\x1b[K")
            self.drawn = False

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.draw()


async def rollout(args: Any, config, balancers, source) -> int:
    """`asrtop rollout ...`; `source` is the fleet source the commands build (closed here). With --json the
    last line is always an "end" event with the exit code, whatever stopped it."""
    out = Output(sys.stdout, bool(args.json))
    try:
        code = await _rollout(args, config, balancers, source, out)
    finally:
        await source.close()
    if out.json and not out.ended:
        out.write(json.dumps(RolloutEvent(time.time(), "", "end", message=out.last_error or "",
                                          exit_code=code).as_json()))
    return code


async def _rollout(args: Any, config, balancers, source, out: Output) -> int:
    from asrtop.control.controller import Controller
    from asrtop.control.rollout import RolloutEngine, RolloutRefused, refusal_exit

    err = out.error
    resume, abort, nodes = bool(args.resume), bool(args.abort), list(args.nodes or [])
    bad = _mode_error(args, resume, abort, nodes)
    if bad:
        err(bad)
        return BAD_INPUT
    ctl = Controller(config, balancers, source=source, read_only=bool(getattr(args, "read_only", False)))
    ctl.on_lock_wait = ctl.on_second_look = err  # stderr: stdout may be --json
    engine = RolloutEngine(ctl)
    if abort:
        res = engine.abort()
        if res.exit_code == OK and not out.json:
            say(res.message)
        else:
            (err if res.exit_code == OK else out.error)(res.message)
        return res.exit_code
    if not resume:
        try:
            settings = settings_from(args, config)
        except ValueError as e:
            err(str(e))
            return BAD_INPUT
        plan = await engine.plan(nodes, settings)
        if plan.refusals and not args.dry_run and not out.json:  # the refusals alone, on stderr
            for r in plan.refusals:
                err(r.line)
            return refusal_exit(plan.refusals)
        out.plan(plan)  # with --dry-run its refusals are among its lines
        if plan.refusals:
            out.last_error = plan.refusals[0].line
            return refusal_exit(plan.refusals)
        if args.dry_run:
            if not out.json:
                say("dry run: nothing changed")
            return OK
        try:
            engine.create(plan)
        except RolloutRefused as e:
            err(e.line)
            return e.exit_code
    return await _run(engine, out, args.from_stage)


def _mode_error(args: Any, resume: bool, abort: bool, nodes: list[str]) -> str | None:
    if resume and abort:
        return "--resume and --abort cannot go together"
    if (resume or abort) and nodes:
        return f"--{'resume' if resume else 'abort'} takes no NODE: it acts on the rollout in the state file"
    if (resume or abort) and args.dry_run:
        return "--dry-run plans a new rollout; it cannot go with --resume or --abort"
    if args.from_stage is not None and not resume:
        return "--from needs --resume (it redoes the stopped node from that stage)"
    if args.from_stage is not None and args.from_stage not in STAGES:
        return f"--from must be one of {', '.join(STAGES)}, got {args.from_stage!r}"
    return None


async def _run(engine, out: Output, from_stage: str | None) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    asked: list[int] = []

    def stop(signum: int) -> None:
        asked.append(signum)
        if len(asked) == 1:
            name = signal.Signals(signum).name + (" (Ctrl+C)" if signum == signal.SIGINT else "")
            engine.request_stop(name)
            out.notice(f"{name}: stopping after the stage in progress is recorded (again to stop at once)")
        elif main is not None:
            main.cancel()

    # These handlers see every signal, also one the Controller holds while it sends a change (asyncio's wakeup
    # fd): its re-delivery after the change would count as a second Ctrl+C and stop the rollout at once.
    engine.ctl.redeliver_signals = False
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, stop, sig)
            handled.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
            pass
    ticker = asyncio.ensure_future(out.tick()) if out.tty else None
    try:
        res = await engine.run(out.event, from_stage)
    except asyncio.CancelledError:
        out.error("stopped at once: the stage in progress is left \"running\" in the state file; `asrtop rollout "
            "--resume` redoes it")
        return INTERRUPTED
    finally:
        if ticker is not None:
            ticker.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
    out.clear()
    if res.exit_code == OK:
        say(res.message, sys.stderr if out.json else sys.stdout)
    else:
        out.last_error = out.last_error or res.message.splitlines()[0]
        for i, line in enumerate(res.message.splitlines()):
            say(f"asrtop: {line}" if i == 0 else line, sys.stderr)
    return res.exit_code
