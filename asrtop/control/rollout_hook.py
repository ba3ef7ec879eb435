"""The rollout's hook: the operator's upgrade command, an argv template run without a shell.

{node} {server} {address} {host} {agent} are filled in per node; stdout and stderr go to the node's log
beside the audit log; it runs in a session of its own, so a timeout kills it with everything it started
and a Ctrl+C meant for asrtop does not reach it in the middle of an upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from asrtop.config import HOOK_FIELDS, NodeConfig

KILL_GRACE = 2.0  # SIGTERM to the group, then SIGKILL after this long
TAIL_BYTES = 4096


@dataclass(frozen=True)
class HookResult:
    argv: tuple[str, ...]
    exit_code: int | None  # None: it did not run, or was killed at the timeout
    seconds: float
    error: str | None  # one line when it failed: the exit code and the log's last line, or why it did not run
    ended_at: float  # unix time


def fields(node: NodeConfig) -> dict[str, str]:
    address = node.address or ""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    return {"node": node.name, "server": node.server_name, "address": address, "host": host,
            "agent": node.agent or ""}


def substitute(template: Sequence[str], node: NodeConfig) -> tuple[str, ...]:
    """The argv for this node; ValueError (one line) when the template names a field the node lacks."""
    values = fields(node)
    used = {f for arg in template for f in HOOK_FIELDS if "{" + f + "}" in arg}
    missing = sorted(f for f in used if not values[f])
    if missing:
        raise ValueError(f"the hook names {', '.join('{' + f + '}' for f in missing)} but {node.name} has none "
                         f"in the cluster file")
    return tuple(arg.format(**values) for arg in template)


def last_line(path: Path, since: int = 0) -> str:
    """The last non-blank line written to `path` after byte `since` (this run's output, not the header)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(since, os.path.getsize(path) - TAIL_BYTES))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def group_alive(pgid: int) -> bool:
    """Does a process of this group still run (a hook an asrtop killed with SIGKILL left behind)?"""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or someone else's group now (the id was reused)
        return False
    import psutil

    for p in psutil.process_iter(["status"]):  # a group of zombies (nobody reaped them yet) runs nothing
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


async def outlive(pgid: int, timeout: float, poll: float = 0.1) -> bool:
    """Wait until the group is gone; at `timeout` kill it. True when it had to be killed."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
                await asyncio.sleep(KILL_GRACE if sig == signal.SIGTERM else 0)
            return True
        await asyncio.sleep(poll)
    return False


async def run_hook(argv: Sequence[str], log: Path, timeout: float,
                   on_start: Callable[[int], None] | None = None) -> HookResult:
    """Run it to the end (or the timeout: the whole group is killed); output appended to `log`. `on_start`
    gets its pid (= its process group) once it runs, to be recorded before anything else happens."""
    start, t0 = time.time(), time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start))} {shlex.join(argv)}\n".encode())
        out.flush()
        since = out.tell()
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                                                        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            return HookResult(tuple(argv), None, time.monotonic() - t0,
                              f"cannot run {argv[0]!r}: {e.strerror or e}", time.time())
        if on_start is not None:
            on_start(proc.pid)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            await _kill_group(proc)
            return HookResult(tuple(argv), None, time.monotonic() - t0,
                              f"timed out after {timeout:g} s (killed with its process group)", time.time())
        except asyncio.CancelledError:
            await _kill_group(proc)
            raise
    seconds = time.monotonic() - t0
    if code != 0:
        tail = last_line(log, since)
        why = f"exit {code}" if code > 0 else f"killed by {signal.Signals(-code).name}"
        return HookResult(tuple(argv), code, seconds, f"the hook failed ({why})" + (f": {tail}" if tail else
                                                                                    ", no output"),
                          time.time())
    return HookResult(tuple(argv), 0, seconds, None, time.time())


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            await asyncio.wait_for(proc.wait(), wait)
            break
        except asyncio.TimeoutError:
            continue
    # children of the hook that left its group stay; those in it are gone with it
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
