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
from typing import AsyncIterator

LOCK_TIMEOUT = 90.0  # a backup toggle may wait this long for sessions to end while holding the lock


class LockTimeout(Exception):
    """Another asrtop action held the lock for too long; str() is one line."""


def lock_path(audit_path: str | os.PathLike) -> Path:
    p = Path(audit_path)
    return p.with_name(p.name + ".lock")


@asynccontextmanager
async def action_lock(path: str | os.PathLike, timeout: float | None = None,
                      poll: float = 0.02) -> AsyncIterator[bool]:
    """Hold the lock (yields True), or yield False when the lock file cannot be created at all (read-only
    state dir: the action still runs, unserialised, as before). Raises LockTimeout after `timeout` s."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError:
        yield False
        return
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"another asrtop action has been running for {timeout:g} s (lock {path}); "
                                      f"nothing sent, try again") from None
                await asyncio.sleep(poll)
        yield True
    finally:
        os.close(fd)  # releases the lock


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
