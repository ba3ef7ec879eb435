"""One operator action at a time per cluster: an flock beside the audit log, held for plan + send + read-back.

Two `asrtop` processes (two operators, or a script and the TUI) sending conflicting changes to an HA pair
could otherwise interleave per balancer (A gets 7 then 9, B gets 9 then 7) and leave the balancers
disagreeing. Serialised, the later action wins on every balancer. The lock covers processes sharing the
audit log's directory (same host, same state dir); it is advisory and never blocks a read.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable

LOCK_TIMEOUT = 90.0  # a backup toggle may wait this long for sessions to end while holding the lock
WAIT_NOTICE = 0.5  # waited this long: say so once (an action's own plan + send + read-back is ~0.1 s)


class LockTimeout(Exception):
    """Another asrtop action held the lock for too long; str() is one line."""


def lock_path(audit_path: str | os.PathLike) -> Path:
    p = Path(audit_path)
    return p.with_name(p.name + ".lock")


@asynccontextmanager
async def action_lock(path: str | os.PathLike, timeout: float | None = None, poll: float = 0.02,
                      on_wait: Callable[[str], None] | None = None) -> AsyncIterator[bool]:
    """Hold the lock (yields True), or yield False when the lock file cannot be created at all (read-only
    state dir: the action still runs, unserialised, as before). Raises LockTimeout after `timeout` s.

    on_wait gets one line, once, when the lock is still held by another after WAIT_NOTICE s: who holds it
    (the holder writes its pid into the file) and how long this one will wait."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError:
        yield False
        return
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    try:
        start = time.monotonic()
        deadline, notice = start + timeout, (start + WAIT_NOTICE if on_wait is not None else None)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise LockTimeout(f"another asrtop action has been running for {timeout:g} s (lock {path}); "
                                      f"nothing sent, try again") from None
                if notice is not None and now >= notice:
                    notice = None
                    on_wait(f"waiting for another asrtop action to finish ({_holder(fd)}holds {path}; "
                            f"nothing sent yet, giving up after {timeout:g} s)")
                await asyncio.sleep(poll)
        _mark_holder(fd, os.getpid())
        try:
            yield True
        finally:
            _mark_holder(fd, None)  # no stale pid for the next waiter to name
    finally:
        os.close(fd)  # releases the lock


def _mark_holder(fd: int, pid: int | None) -> None:
    """Write the holder's pid into the lock file for a waiter to name, or empty it (best effort: the flock
    is the lock, the pid only a name)."""
    try:
        os.ftruncate(fd, 0)
        if pid is not None:
            os.pwrite(fd, f"{pid}\n".encode(), 0)
    except OSError:
        pass


def _holder(fd: int) -> str:
    """'pid N ' of the holder as it wrote it, or '' (an older asrtop, or not written yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f"pid {text} " if text.isdigit() else ""


def held(path: str | os.PathLike) -> bool:
    """Is an action holding the lock now (any process, this one included)? Never blocks, never creates it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False
