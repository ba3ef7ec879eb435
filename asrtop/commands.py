"""The scriptable sub-commands: status, check, export, drain, ready, maint, weight, backup, recover, rollout.

For scripts: no confirmation prompt (use --dry-run to see what would change); every error is one line on
stderr and a documented exit code (asrtop.exitcodes, README "Command line"). Imports stay lazy and light
so `asrtop status` starts fast: no textual, no prometheus_client, aiohttp only when agents are polled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any, Sequence

from asrtop.control.model import ACTION_KINDS
from asrtop.drain_cli import Progress, interrupted_wait_line
from asrtop.exitcodes import BAD_INPUT, DRAIN_UNDONE, ERROR, INTERRUPTED, OK, TIMED_OUT, UNREACHABLE


class _Fail(Exception):
    """Ends a command with one line on stderr and an exit code."""

    def __init__(self, code: int, line: str):
        super().__init__(line)
        self.code, self.line = code, line


def _err(line: str) -> None:
    print(f"asrtop: {line}", file=sys.stderr, flush=True)


def run_command(args: Any, ends_process: bool = False) -> int:
    """`ends_process`: the process exits right after (the `asrtop` command itself)."""
    try:
        try:
            return _run(args, ends_process)
        finally:
            sys.stdout.flush()  # a reader gone (`| head`) is met here, not in the interpreter's last flush
    except _Fail as f:
        return _failed(args, f.line, f.code)
    except KeyboardInterrupt:
        raise
    except BrokenPipeError:
        return _reader_gone()
    except Exception as e:  # a bug: still one line (ASRTOP_DEBUG=1 for the traceback)
        if os.environ.get("ASRTOP_DEBUG"):
            raise
        return _failed(args, f"unexpected error ({type(e).__name__}: {e}); rerun with ASRTOP_DEBUG=1 and report it",
                       ERROR)


def _reader_gone() -> int:
    """stdout's reader went away (`asrtop status | head`): stop quietly with SIGPIPE's status, as `cat` or
    `git log` would. What was sent to a balancer before is done and audited; only the printing stops."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own last flush must not fail again
    return 128 + signal.SIGPIPE


def _failed(args: Any, line: str, code: int) -> int:
    if args.command == "check":  # Nagios: whatever stops the check is UNKNOWN (3), on stdout where monitors read
        from asrtop.check_report import print_unknown

        return print_unknown(line, bool(getattr(args, "json", False)))
    _err(line)
    return code


def _run(args: Any, ends_process: bool = False) -> int:
    if args.command == "export":
        return _export(args)
    if args.command == "status":
        return _without_gc(_read_and_run, args, ends_process)
    return _read_and_run(args)


def _without_gc(run: Any, args: Any, ends_process: bool = False) -> int:
    """One read of the fleet, then exit: what `status` builds (each agent's JSON, the readings, the views) lives
    to the end, so the cycle collector would only walk it again and again (5-10 % of its CPU at 1,000 nodes,
    tests/benchmarks/bench_status_scale.py) and finds nothing to free. Enabled again after for in-process
    callers; not when the process ends next: its first collection would walk everything made while it was off
    (~9 ms at 1,000 nodes). The interpreter's exit walks it too (its last collections, ~100 ms at 1,000 nodes):
    frozen at exit (_freeze_at_exit), it is skipped."""
    import gc

    _freeze_at_exit()
    was = gc.isenabled()
    gc.disable()
    try:
        return run(args)
    finally:
        if was and not ends_process:
            gc.enable()


_frozen_at_exit: list[bool] = []


def _freeze_at_exit() -> None:
    """At interpreter exit, before its last garbage collections, move every object to the collector's permanent
    generation: those collections then walk nothing, and the process's memory goes with it anyway. Registered
    once per process; an in-process caller (tests) gets the freeze only when it exits itself."""
    if _frozen_at_exit:
        return
    import atexit
    import gc

    atexit.register(gc.freeze)
    _frozen_at_exit.append(True)


def _read_and_run(args: Any) -> int:
    from asrtop.config import ConfigError, load_config

    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as e:
        raise _Fail(BAD_INPUT, str(e)) from None
    from asrtop.balancers.factory import build_balancers

    try:
        balancers = build_balancers(config)
    except (ValueError, ImportError) as e:
        raise _Fail(BAD_INPUT, f"{config.path}: {e}") from None
    if args.command == "status":
        return asyncio.run(_status(args, config, balancers))
    if args.command == "check":
        from asrtop.check_report import run_check

        prometheus = getattr(args, "prometheus", None)
        return asyncio.run(run_check(config, _source(config, balancers, prometheus, one_shot=True), fleet_snapshot,
                                     prometheus=prometheus, as_json=bool(getattr(args, "json", False))))
    if args.command in ACTION_KINDS:
        return asyncio.run(_action(args, config, balancers))
    if args.command == "recover":
        return asyncio.run(_recover(args, config, balancers))
    if args.command == "rollout":
        from asrtop.rollout_cli import rollout

        return asyncio.run(rollout(args, config, balancers, _source(config, balancers)))
    raise _Fail(BAD_INPUT, f"unknown command {args.command!r}")


def _source(config, balancers, prometheus: str | None = None, one_shot: bool = False):
    """Balancers alone when no node has an agent (fast path: no aiohttp); else agents or Prometheus too.
    Either way with the drift watch's notes (servers that no longer show what asrtop set, and why) and the
    intent journal's (changes an interrupted asrtop left half-done). `one_shot` (`status`, `check`): every agent
    asked, each with the whole timeout, http:// ones without aiohttp (asrtop.sources.agents.AgentPoller)."""
    from asrtop.control.audit import AuditLog
    from asrtop.control.drift import ReloadWatch
    from asrtop.control.journal import ChangesInProgress, InterruptedNotes, Journal

    journal = Journal.beside(config.audit_log)
    notes = (InterruptedNotes(journal), ReloadWatch(AuditLog(config.audit_log)))
    uses_agents = any(n.agent for n in config.nodes) or (config.discovery is not None and
                                                         config.discovery.agent_url is not None)
    if prometheus or config.prometheus or uses_agents:
        from asrtop.sources.factory import build_fleet_source

        return build_fleet_source(config, balancers, prometheus, notes, ChangesInProgress(journal), one_shot)
    from asrtop.sources.live import LiveFleetSource

    return LiveFleetSource(config, None, balancers, notes, ChangesInProgress(journal))


def _export(args: Any) -> int:
    """`export alert-rules` (thresholds from the cluster file's [problems] when there is one, else the defaults)
    and `export grafana-dashboard`: printed, for Prometheus' rule_files and Grafana's import."""
    if args.what == "grafana-dashboard":
        from asrtop.grafana import dashboard_json

        print(dashboard_json(), end="")
        return OK
    from asrtop.config import ConfigError, ProblemsConfig, default_config_paths, load_config
    from asrtop.problems.alert_rules import render

    settings, digest = ProblemsConfig(), None
    explicit = getattr(args, "config", None)
    if explicit is not None or any(p.is_file() for p in default_config_paths()):
        try:
            config = load_config(explicit)
        except ConfigError as e:
            raise _Fail(BAD_INPUT, str(e)) from None
        settings, digest = config.problems, config.model_sha256
    print(render(settings, digest), end="")
    return OK


async def fleet_snapshot(source) -> Any:
    """One FleetSnapshot as `status` and `check` read it: a second sample when only the agents count some
    nodes' requests (their rates need two). Closes the source."""
    from asrtop.traffic import second_sample_wait

    try:
        snap = await source.snapshot()
        wait = second_sample_wait(snap)
        if wait is not None:
            await asyncio.sleep(wait)
            snap = await source.snapshot()
    finally:
        await source.close()
    return snap


async def _status(args: Any, config, balancers) -> int:
    from asrtop.status_report import facts_unavailable, render_table, status_json

    snap = await fleet_snapshot(_source(config, balancers, getattr(args, "prometheus", None), one_shot=True))
    rollout, alive, rollout_error = _rollout_now(config)
    if getattr(args, "json", False):
        import json

        doc = status_json(snap, config.name)
        doc["rollout"] = None
        if rollout is not None:
            from asrtop.control.rollout_words import status_json as rollout_json

            doc["rollout"] = rollout_json(rollout, alive)
        print(json.dumps(doc, indent=1))
    else:
        print(render_table(snap))
        if rollout is not None:
            import time

            from asrtop.control.rollout_words import status_lines

            for line in status_lines(rollout, alive, config.path, time.time()):
                print(line)
    if rollout_error:
        _err(rollout_error)
    # Any balancer unread is exit 5 (the table is still printed): a stopped nginx or HAProxy must not pass a
    # monitoring check because the agents behind it still answer.
    unread = [b for b in snap.balancers if not b.reachable]
    if unread:
        from asrtop.control.rules import one_line

        what = ("no balancer could be read" if len(unread) == len(snap.balancers)
                else f"{len(unread)} of {len(snap.balancers)} balancers could not be read")
        _err(f"{what}: " + "; ".join(f"{b.name}: {one_line(b.problem or '')}" for b in unread))
        return UNREACHABLE
    facts = facts_unavailable(snap)  # Prometheus unreachable: every AGENT would read "down" for no given reason
    if facts:
        _err(facts)
        return UNREACHABLE
    return OK


def _rollout_now(config) -> tuple[Any, bool | None, str | None]:
    """The rollout in the state file beside the audit log (None: none), whether a process runs it (the lock is
    held; None when it is not marked running), and why the state cannot be read (one line) when it cannot."""
    from asrtop.control.rollout_paths import state_path

    try:
        if not state_path(config.audit_log).exists():
            return None, None, None  # no rollout: the rollout model is not even loaded
    except OSError:
        pass  # read_state says why
    from asrtop.control.oplock import held
    from asrtop.control.rollout_model import lock_file
    from asrtop.control.rollout_store import StateError, read_state

    try:
        state = read_state(config.audit_log)
    except StateError as e:
        return None, None, str(e)
    alive = held(lock_file(config.audit_log)) if state is not None and state.status == "running" else None
    return state, alive, None


def _parse_value(args: Any) -> int | bool | None:
    from asrtop.balancers.base import shown

    if args.command == "weight":
        s = str(args.weight).strip()
        digits = s[1:] if s[:1] in ("+", "-") else s
        if not (digits.isascii() and digits.isdigit()):  # int() would also take "1_0" and "١٢"
            raise _Fail(BAD_INPUT, f"weight must be a whole number, got {shown(args.weight)}")
        return int(s, 10)
    if args.command == "backup":
        return args.flag == "on"
    return None


async def _action(args: Any, config, balancers) -> int:
    from asrtop.control import Action, Controller

    action = Action(args.command, args.node, _parse_value(args))
    cutoff = getattr(args, "cutoff", None) if args.command == "drain" else None
    waiting = args.command == "drain" and (getattr(args, "wait", False) or cutoff is not None)
    if waiting and not args.timeout > 0:  # checked before anything is sent
        raise _Fail(BAD_INPUT, f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if cutoff is not None:
        from asrtop.control.cutoff import refusal

        if not 0 < cutoff < args.timeout:
            raise _Fail(BAD_INPUT, f"--cutoff must be > 0 and below --timeout ({args.timeout:g} s), got {cutoff:g}")
        refused = refusal(balancers)
        if refused:
            raise _Fail(BAD_INPUT, f"--cutoff refused, nothing changed: {refused}")
    source = _source(config, balancers, getattr(args, "prometheus", None))
    try:
        ctl = Controller(config, balancers, source=source, read_only=bool(getattr(args, "read_only", False)))
        ctl.redeliver_signals = False  # a signal held during the change: printed first, delivered below
        ctl.on_lock_wait = _err  # another asrtop's action first: say so, not a silent wait
        ctl.on_second_look = _err  # slow agents asked again before the model guard: up to 3 s, said
        if cutoff is not None and not args.dry_run:
            from asrtop.drain_cli import confirm_cutoff

            refused = await confirm_cutoff(ctl, action, cutoff, args.force, bool(getattr(args, "yes", False)))
            if refused:
                raise _Fail(BAD_INPUT, refused)
        res = await ctl.apply(action, force=args.force, dry_run=args.dry_run)
        if res.signal is not None:
            _report(res.message, res.exit_code, res.plan.warnings if res.plan else ())
            _deliver(res.signal)
        warnings = res.plan.warnings if res.plan else ()
        if res.outcome == "dry-run":
            print(res.message)
            for line in res.plan.changes if res.plan else ():
                print(f"  {line}")
            for line in warnings:
                print(f"  note: {line}")
            if cutoff is not None:
                from asrtop.drain_cli import cutoff_clause_now

                print(f"  note: {await cutoff_clause_now(ctl, args.node, cutoff)}")
            return res.exit_code
        if res.exit_code != OK:
            _err(res.message)
            return res.exit_code
        print(res.message, flush=True)
        for line in warnings:
            print(f"  note: {line}", flush=True)
        if waiting:
            return await _wait(ctl, args.node, args.timeout, cutoff)
        return OK
    finally:
        await source.close()


def _report(message: str, code: int, notes: Sequence[str] = ()) -> None:
    if code == OK:
        print(message, flush=True)
    else:
        _err(message)
    for line in notes:
        print(f"  note: {line}", flush=True)


def _deliver(signum: int) -> None:
    """A signal held while a change was sent: stop now, as it asked (Ctrl+C: exit 130)."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.raise_signal(signum)  # SIGTERM/SIGHUP: the default action (the held handlers are gone)
    raise SystemExit(128 + signum)  # a handler that returned: still stop


async def _recover(args: Any, config, balancers) -> int:
    from asrtop.control.recover import Recovery

    rec = Recovery(config, balancers, read_only=bool(getattr(args, "read_only", False)))
    rec.redeliver_signals = False
    rec.on_lock_wait = _err
    res = await rec.run(dry_run=bool(getattr(args, "dry_run", False)))
    for line in res.lines:
        print(f"  {line}" if res.items else line, flush=True)
    if res.exit_code == OK:
        print(res.message, flush=True)
    else:
        _err(res.message)
    if res.signal is not None:
        _deliver(res.signal)
    return res.exit_code


async def _wait(ctl, node: str, timeout: float, cutoff: float | None = None) -> int:
    from asrtop.control.controller import DrainUndone

    progress = Progress(node, sys.stdout, cutoff)
    try:
        if cutoff is None:
            empty = await ctl.wait_drained(node, timeout, progress, on_node=progress.node_seen)
        else:
            empty = await _wait_with_cutoff(ctl, node, timeout, cutoff, progress)
    except DrainUndone as e:  # never "safe to upgrade": the node takes new requests again
        raise _Fail(DRAIN_UNDONE, str(e)) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl+C under asyncio.run arrives as the task's cancellation; the drain itself is done and stays
        raise _Fail(INTERRUPTED, interrupted_wait_line(node, progress.last[0] if progress.last else None)) from None
    finally:
        progress.end()
    if empty:
        from asrtop.control.drain_words import empty_line

        print(empty_line(node), flush=True)
        return OK
    last = progress.last[0] if progress.last else None
    seen = progress.watch.last
    if last is None and not (seen is not None and seen.streams):
        raise _Fail(TIMED_OUT, f"timed out after {timeout:g}s: cannot tell what {node} still serves (no balancer "
                               "session count and no agent answer); check the node itself")
    raise _Fail(TIMED_OUT, f"timed out after {timeout:g}s: {node} still has {progress.left()}")


async def _wait_with_cutoff(ctl, node: str, timeout: float, cutoff: float, progress: Progress) -> bool:
    """Wait up to the cutoff; then say what will be cut, cut it through every balancer, and wait for the rest."""
    if await ctl.wait_drained(node, cutoff, progress, on_node=progress.node_seen):
        return True
    progress.end()
    res = await ctl.cut_open(node, cutoff, lambda line: print(line, flush=True))
    if res.exit_code != OK:
        raise _Fail(res.exit_code, res.message)
    print(res.message, flush=True)
    progress.offset = cutoff
    return await ctl.wait_drained(node, timeout - cutoff, progress, on_node=progress.node_seen)
