"""The write-ahead intent journal: every multi-step balancer change says where it stands, durably.

File: `journal.jsonl` in the audit log's directory (DESIGN: files beside the audit log). One JSON object per
line, each written with ONE os.write on an O_APPEND descriptor before the next command is sent, so it
survives any end of asrtop (SIGKILL, the OOM killer, a dropped SSH session). The write-ahead intent
("planned", before the first change, with everything recovery needs) is also fdatasynced, so it survives a
crash of the host; with sync="all" every record is (tests/benchmarks/bench_control_journal.py measures both
against the 2 ms budget). A progress record lost with the host costs nothing: recovery reads HAProxy's
state, and a lost "done" only makes `asrtop recover` find nothing to do. Today the multi-step change is HAProxy's backup re-create (one operation per balancer):

    {"op": "20261121T103102Z-4242-1/hx-a", "time": "2026-11-21T10:31:02.118Z", "step": "planned",
     "balancer": "hx-a", "server": "node-2", "kind": "backup", "node": "node-2", "value": true,
     "user": "ops@bastion", "host": "bastion", "pid": 4242, "backend": "asr", "backup": true,
     "was_backup": false, "add_line": "add server asr/node-2 10.0.0.6:10095 check ... weight 3 id 2 backup",
     "restore_line": "add server asr/node-2 ... id 2", "admin": "drain", "weight": 3,
     "checks": ["health", "agent"], "probe": "asrtop-probe-4242-81234", "addr": "10.0.0.6", "port": 10095}
    {"op": "...", "time": "...", "step": "probe added", "balancer": "hx-a", "server": "node-2"}
    ... probe deleted, maint set, deleting, deleted, added, health enabled, agent enabled, state restored ...
    {"op": "...", "time": "...", "step": "done", "balancer": "hx-a", "server": "node-2", "result": "toggled"}
    {"op": "...", "time": "...", "step": "audited", "balancer": "hx-a", "server": "node-2"}

"planned" is written before the first change and holds everything `asrtop recover` needs; "audited" after
the action's audit line. An operation without "audited" (or "recovered", written by recover after its
"interrupted" audit line) is unfinished: interrupted, unless its process is still alive on this host and
holds the action lock (then it is in progress). One stopped after "done" lacks only its audit line (recover
writes it). When no operation is left unfinished the file is emptied (one truncate: a reader sees all of it or
nothing).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from asrtop.balancers.base import Balancer, BalancerRefused, ServerState, StepInterrupted
from asrtop.control.audit import now_text, parse_time, who
from asrtop.control.oplock import held, lock_path
from asrtop.control.signals import SignalHold

FINISHED = ("audited", "recovered")  # the change ended AND its audit line was written
SYNCED = frozenset({"planned", "interrupted", "recovered"})  # fdatasynced with sync="intent"
# "stopped after ..." for the last step reached; the Runtime API command it stands for
AFTER = {"planned": "before its first change", "probe added": "after `add server` (the probe)",
         "probe deleted": "after `del server` (the probe)", "maint set": "after `set server … state maint`",
         "deleting": "at `del server` (sent, its answer not recorded)", "deleted": "after `del server`",
         "added": "after `add server`", "health enabled": "after `enable health`",
         "agent enabled": "after `enable agent`", "state restored": "after restoring its state",
         "done": "after it finished, before its audit line"}


class JournalError(BalancerRefused):
    """The journal cannot be written, so the change was not started (write-ahead: no intent, no change)."""


def journal_path(audit_path: str | os.PathLike) -> Path:
    return Path(audit_path).with_name("journal.jsonl")


@dataclass(frozen=True)
class OpView:
    """One journaled operation, folded from its records. `facts`: the "planned" record (the intent)."""

    op: str
    facts: Mapping[str, Any]
    steps: tuple[tuple[str, str], ...]  # (step, time text) in order

    @property
    def balancer(self) -> str:
        return str(self.facts.get("balancer", ""))

    @property
    def action(self) -> str:
        """The action's id: the same for every balancer's operation of one action."""
        return self.op.rpartition("/")[0] or self.op

    @property
    def node(self) -> str:
        return str(self.facts.get("node") or self.facts.get("server") or "")

    @property
    def last(self) -> str:
        return self.steps[-1][0] if self.steps else ""

    @property
    def finished(self) -> bool:
        return self.last in FINISHED

    @property
    def planned(self) -> bool:
        """The intent was written (the only record recovery needs)."""
        return "add_line" in self.facts

    @property
    def interruption_audited(self) -> bool:
        """`asrtop recover` already wrote the interruption's audit line."""
        return any(s == "interrupted" for s, _ in self.steps)

    @property
    def stopped(self) -> tuple[str, str]:
        """(last step of the change itself, its time text): recover's own steps are not where it stopped."""
        own = [(s, t) for s, t in self.steps if s in AFTER]
        return own[-1] if own else ("planned", self.steps[0][1] if self.steps else "")

    def running(self, lock: Path | None) -> bool:
        """Its process is alive here and an action holds the lock: in progress, not interrupted."""
        pid, host = self.facts.get("pid"), self.facts.get("host")
        if not isinstance(pid, int) or host != socket.gethostname():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            pass
        return lock is None or held(lock)


def what(op: OpView) -> str:
    """`asrtop backup node-2 on`"""
    value = op.facts.get("value")
    shown = ("on" if value else "off") if isinstance(value, bool) else ("" if value is None else str(value))
    return f"`asrtop {op.facts.get('kind', 'change')} {op.node}{' ' + shown if shown else ''}`"


def clock(time_text: str) -> str:
    at = parse_time(time_text)
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S UTC") if at is not None else time_text


def where_stopped(ops: Sequence[OpView]) -> str:
    """"on hx-a after `del server` at 10:31:02 UTC" (several balancers: one clause each)."""
    parts = []
    for op in ops:
        step, at = op.stopped
        parts.append(f"on {op.balancer} {AFTER.get(step, 'after ' + step)} at {clock(at)}")
    return ", ".join(parts)


def interrupted_line(ops: Sequence[OpView], servers: Mapping[str, Sequence[ServerState]] | None = None) -> str:
    """One action's unfinished operations, as a note says it; `servers` (balancer -> its servers now, readable
    ones only) adds where the server is missing now."""
    missing = [op.balancer for op in ops if servers is not None and op.balancer in servers
               and not any(s.name == op.facts.get("server") for s in servers[op.balancer])]
    gone = f"; {ops[0].facts.get('server')} is missing from {', '.join(missing)}" if missing else ""
    return f"interrupted: {what(ops[0])} stopped {where_stopped(ops)}{gone}; run `asrtop recover`"


def about(ops: Sequence[OpView], node: str) -> list[list[OpView]]:
    """The unfinished operations (by action) that concern `node` (as a node or a server name)."""
    return by_action([o for o in ops if node in (o.node, o.facts.get("server"))])


def missing_line(groups: Sequence[Sequence[OpView]], node: str) -> str:
    """Why an action finds no server for `node`: an interrupted change deleted it."""
    return (f"{node} is missing because {what(groups[0][0])} was interrupted {where_stopped(groups[0])}; run "
            f"`asrtop recover` to re-add it with its journaled `add server` line")


def pending_warning(group: Sequence[OpView]) -> str:
    return (f"{what(group[0])} was interrupted {where_stopped(group)} and is unfinished: run `asrtop recover` "
            f"first")


def by_action(ops: Sequence[OpView]) -> list[list[OpView]]:
    groups: dict[str, list[OpView]] = {}
    for op in ops:
        groups.setdefault(op.action, []).append(op)
    return list(groups.values())


class Journal:
    """The intent journal file. Writers hold the action lock (asrtop.control.oplock); readers never lock."""

    def __init__(self, path: str | os.PathLike, lock: str | os.PathLike | None = None, sync: str = "intent"):
        self.path = Path(path)
        self.sync = sync  # "intent": the SYNCED steps are fdatasynced; "all": every record
        self.lock = Path(lock) if lock is not None else None  # the action lock: held while a change runs
        self._seq = 0
        self._mutex = threading.Lock()
        self._fold = _Fold()
        self._ops: list[OpView] = []
        self._seen: tuple[int, int, int] = (-1, -1, -1)  # (inode, size, mtime) _ops were read at
        self._clean = True  # every operation read so far is finished

    @classmethod
    def beside(cls, audit_path: str | os.PathLike) -> "Journal":
        """The journal of the cluster whose audit log is `audit_path` (and its action lock)."""
        return cls(journal_path(audit_path), lock_path(audit_path))

    # -- writing -------------------------------------------------------------------------------------

    def open(self) -> int:
        """An O_APPEND descriptor on the file (created with its directory when missing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def append(self, record: Mapping[str, Any], fsync: bool = True, fd: int | None = None) -> None:
        """One line, one O_APPEND write (fdatasynced unless told not to), on `fd` when given (an operation
        keeps one open: every syscall is a GIL hand-off next to the other balancers' threads). OSError when
        it cannot be written."""
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        own = fd is None
        fd = self.open() if fd is None else fd
        try:
            os.write(fd, line)
            if fsync:
                os.fdatasync(fd)
        finally:
            if own:
                os.close(fd)

    def begin(self, kind: str, node: str, value: object, balancer: str, server: str,
              hold: SignalHold | None = None, action_id: str | None = None) -> "Operation":
        """A recorder for one balancer's part of one action (nothing is written until its first step)."""
        return Operation(self, f"{action_id or self.new_action_id()}/{balancer}",
                         {"kind": kind, "node": node, "value": value, "balancer": balancer, "server": server},
                         hold)

    def new_action_id(self) -> str:
        with self._mutex:
            self._seq += 1
            seq = self._seq
        return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}-{seq}"

    def audited(self, ops: Sequence["Operation"], locked: bool) -> None:
        """The action's audit line is written: its operations are finished; compact when all are (only under
        the action lock: nobody else writes then)."""
        for op in ops:
            if op.last == "done":  # a change that failed in the middle stays unfinished: recover finishes it
                op.step("audited")
            op.close()
        if not locked:
            return
        if self._clean and all(op.last == "audited" for op in ops):  # nothing else was written since
            try:  # the last read found every operation finished: no need to read our own records back
                os.truncate(self.path, 0)
            except OSError:
                pass
        else:
            self.compact()

    def mark(self, op: OpView, step: str, **facts: Any) -> None:
        self.append({"op": op.op, "time": now_text(), "step": step, "balancer": op.balancer,
                     "server": op.facts.get("server"), **facts})

    def compact(self) -> bool:
        """Empty the file (one truncate: a reader sees all of it or nothing) when every operation in it is
        finished. Call with the action lock held. True when it was emptied."""
        ops = self.operations()
        if not ops or any(not o.finished for o in ops):
            return False
        try:  # not synced: if the host loses it, the old file holds only finished operations
            os.truncate(self.path, 0)
        except OSError:
            return False
        return True

    # -- reading -------------------------------------------------------------------------------------

    def operations(self) -> list[OpView]:
        """Every operation in the file, oldest first (bad lines skipped). Read incrementally: a file that
        only grew is read from where the last call stopped; another file (or a shorter one) from its start."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._fold, self._ops, self._clean = _Fold(), [], True
            return []
        if (st.st_ino, st.st_size, st.st_mtime_ns) == self._seen:
            return self._ops
        with open(self.path, "rb") as f:
            # the same file, only grown: its first line is still the one read before (not emptied and refilled)
            if st.st_ino != self._seen[0] or st.st_size < self._fold.offset or f.read(len(self._fold.head)) != \
                    self._fold.head:
                self._fold = _Fold()
            f.seek(self._fold.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        if not self._fold.offset:
            self._fold.head = data[:data.find(b"\n") + 1]
        self._fold.add(_records(data[:end]))
        self._fold.offset += end
        self._ops = self._fold.views()
        self._seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._clean = all(o.finished for o in self._ops)
        return self._ops

    def unfinished(self, include_running: bool = False) -> list[OpView]:
        """Operations a crash (or a failure in the middle) left unfinished; not those still in progress."""
        ops = [o for o in self.operations() if not o.finished]
        if include_running or not ops:
            return ops
        return [o for o in ops if not o.running(self.lock)]


def _records(data: bytes) -> Iterator[dict]:
    for raw in data.splitlines():
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        if isinstance(d, dict) and isinstance(d.get("op"), str) and isinstance(d.get("step"), str):
            yield d


class _Fold:
    """Records folded into operations so far, and the byte offset they were read up to."""

    def __init__(self) -> None:
        self.offset = 0
        self.head = b""  # the file's first line when it was read from its start
        self.facts: dict[str, dict] = {}
        self.steps: dict[str, list[tuple[str, str]]] = {}

    def add(self, records: Iterator[dict]) -> None:
        for d in records:
            op = d["op"]
            if d["step"] == "planned" or op not in self.facts:
                self.facts[op] = {**self.facts.get(op, {}),
                                  **{k: v for k, v in d.items() if k not in ("op", "step", "time")}}
            self.steps.setdefault(op, []).append((d["step"], str(d.get("time", ""))))

    def views(self) -> list[OpView]:
        return [OpView(op, self.facts[op], tuple(self.steps[op])) for op in self.facts]


@dataclass
class Operation:
    """The StepRecorder one balancer's toggle writes to (asrtop.balancers.base.StepRecorder)."""

    journal: Journal
    op: str
    head: dict[str, Any]
    hold: SignalHold | None = None
    lost: int = 0  # step records that could not be written (the change went on: stopping would be worse)
    started: bool = False  # its intent ("planned") is in the journal
    last: str = ""  # the last step written
    _depth: int = field(default=0, repr=False)
    _fd: int | None = field(default=None, repr=False)  # open from its first record to close()

    def step(self, name: str, **facts: object) -> None:
        record = {"op": self.op, "time": now_text(), "step": name, "balancer": self.head["balancer"],
                  "server": self.head["server"]}
        if name == "planned":
            record.update(self.head, user=who(), host=socket.gethostname(), pid=os.getpid())
        record.update(facts)
        try:
            if self._fd is None:
                self._fd = self.journal.open()
            self.journal.append(record, self.journal.sync == "all" or name in SYNCED, self._fd)
            self.started, self.last = self.started or name == "planned", name
        except OSError as e:
            if name == "planned":  # write-ahead: without the intent on disk, nothing is changed
                raise JournalError(f"{self.head['balancer']}: cannot write the intent journal {self.journal.path} "
                                   f"({e.strerror or e}); nothing changed") from None
            self.lost += 1

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def checkpoint(self) -> None:
        if self._depth == 0 and self.hold is not None and self.hold.pending is not None:
            raise StepInterrupted(f"{self.head['balancer']}: stopped by {self.hold.name} before "
                                  f"{self.head['server']} was deleted")

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1


class InterruptedNotes:
    """A notes provider (asrtop.sources.live.NotesProvider): one note per interrupted action in the journal.

        interrupted: `asrtop backup node-2 on` stopped on hx-a after `del server` at 10:31:02 UTC; run `asrtop recover`
    """

    def __init__(self, journal: Journal):
        self.journal = journal

    async def notes(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]],
                    read_at: float | None = None) -> list[str]:
        try:
            return [interrupted_line(ops, servers) for ops in by_action(self.journal.unfinished())]
        except Exception as e:  # a note must never take the console down
            return [f"cannot read the intent journal {self.journal.path}: {type(e).__name__}: {e}"]


class ChangesInProgress:
    """A changes provider (asrtop.sources.live.ChangesProvider): node -> the running change (any asrtop process
    on this host, holding the action lock) that deletes and re-adds its server, e.g.
    "`asrtop backup node-2 on` re-creates its server on hx-a"."""

    def __init__(self, journal: Journal):
        self.journal = journal

    def changing(self) -> dict[str, str]:
        try:
            running = [o for o in self.journal.unfinished(include_running=True) if o.running(self.journal.lock)]
        except Exception:  # the interrupted-notes provider reports an unreadable journal; nothing runs then
            return {}
        return {ops[0].node: f"{what(ops[0])} re-creates its server on {', '.join(o.balancer for o in ops)}"
                for ops in by_action(running)}
