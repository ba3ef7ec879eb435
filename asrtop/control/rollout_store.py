"""The rollout's files beside the audit log: the state file (written atomically) and the rollout lock.

The process running a rollout holds an flock on rollout.lock for its whole run; the state file says how
far it got. Together they tell who runs one now (holder: cheap, two small files, no balancer) and what a
crashed one left (the lock is free, the state still says "running": `asrtop rollout --resume`).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass

from asrtop.control.oplock import held
from asrtop.control.rollout_model import RolloutState, lock_file, state_path

UNFINISHED = ("running", "stopped")


class StateError(Exception):
    """The state file cannot be read or written; str() is one line naming it."""


def read_state(audit_path: str | os.PathLike) -> RolloutState | None:
    """The state file's rollout, None when there is none. StateError when it is there but unreadable."""
    path = state_path(audit_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(f"{path}: cannot read the rollout state: {e.strerror or e}") from None
    try:
        return RolloutState.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as e:
        raise StateError(f"{path}: the rollout state is not readable ({type(e).__name__}: {e}); move it away "
                         f"to start a new rollout") from None


def write_state(audit_path: str | os.PathLike, state: RolloutState) -> None:
    """Atomically: a temporary file beside it, fsync, rename, fsync the directory (a crash leaves the old
    state or the new one, never half of one)."""
    path = state_path(audit_path)
    data = (json.dumps(state.as_json(), indent=1, default=str) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise StateError(f"{path}: cannot write the rollout state: {e.strerror or e}") from None


class RolloutLock:
    """The rollout lock, held (flock, exclusive) from `acquire()` to `release()`; never blocks."""

    def __init__(self, audit_path: str | os.PathLike):
        self.path = lock_file(audit_path)
        self.fd: int | None = None

    def acquire(self) -> bool:
        """True: held now. False: another process (or another RolloutLock here) holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(frozen=True)
class Holder:
    """Who runs a rollout now (its lock is held)."""

    id: str
    user: str
    pid: int
    since: float  # when the rollout started
    node: str | None  # the node it works on now
    stage: str | None
    nodes: tuple[str, ...]  # the nodes it holds: taken out, not yet readied

    def who(self) -> str:
        """ "started by ops@bastion at 05:12:03 UTC (pid 4242), now at node-3 (hook)" """
        at = time.strftime("%H:%M:%S UTC", time.gmtime(self.since))
        now = f", now at {self.node} ({self.stage})" if self.node else ""
        return f"started by {self.user} at {at} (pid {self.pid}){now}"

    def line(self) -> str:
        return f"a rollout is running: {self.who()}"

    def holds(self, node: str) -> str:
        """Why a single action on `node` is refused while the rollout runs."""
        return (f"{node} is held by the rollout running now ({self.who()}); wait for it to put {node} back, or "
                f"stop it (Ctrl+C where it runs, or `kill {self.pid}`)")


def held_nodes(state: RolloutState) -> tuple[str, ...]:
    """Nodes the rollout took out and has not readied yet (a stage started, ready not done)."""
    return tuple(n.name for n in state.plan.nodes
                 if state.progress(n.name).stage is not None and not state.progress(n.name).done)


def current_node(state: RolloutState) -> tuple[str | None, str | None]:
    """(node, stage) most recently worked on: the last started node that is not done."""
    best: tuple[float, str, str | None] | None = None
    for n in state.plan.nodes:
        p = state.progress(n.name)
        if p.stage is not None and not p.done and (best is None or (p.started_at or 0) >= best[0]):
            best = (p.started_at or 0, n.name, p.stage)
    return (best[1], best[2]) if best else (None, None)


def holder(audit_path: str | os.PathLike) -> Holder | None:
    """Who runs a rollout now, or None (no lock held, or no state file to say who)."""
    if not held(lock_file(audit_path)):
        return None
    try:
        state = read_state(audit_path)
    except StateError:
        state = None
    if state is None:
        return None
    node, stage = current_node(state)
    return Holder(state.id, state.user, state.pid, state.started_at, node, stage, held_nodes(state))
