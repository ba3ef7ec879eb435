"""Audit log of operator actions: one JSON object per line, appended, never rewritten.

Record: {"time": ISO-8601 UTC, "user": "user@host", "action", "node", "value", "force", "forced", "dry_run",
"outcome", "message", "balancers": [{"name", "ok", "error", "before", "after"}]}; before/after: {"server",
"admin", "weight", "backup", "health"} plus "agent": "enabled" | "disabled" for a server with an agent check.

Two asrtop processes (two operators, or the TUI and a script) may append at once: each record is
written with ONE os.write on an O_APPEND descriptor, so lines never interleave (POSIX appends of a
regular file are atomic with respect to the file offset; records are far below any practical size).
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Protocol

from asrtop.balancers.base import ServerState
from asrtop.control.model import ActionResult

_TAIL_CHUNK = 64 * 1024


def who() -> str:
    """user@host of the operator (SUDO_USER first: the person behind `sudo asrtop`)."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except Exception:  # no passwd entry in a container: still log something
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def state_record(s: ServerState | None) -> dict | None:
    """A server's state as an audit line's before/after ({"server", "admin", "weight", "backup", "health"})."""
    if s is None:
        return None
    out = {"server": s.name, "admin": s.admin.value, "weight": s.weight, "backup": s.backup,
           "health": s.health.value}
    if s.agent_check:  # only then: a server without one writes the same line as before agent checks existed
        out["agent"] = "enabled" if s.agent_enabled else "disabled"
    return out


def now_text(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_for(result: ActionResult, *, force: bool = False, dry_run: bool = False, user: str | None = None,
               now: datetime | None = None) -> dict:
    """The audit record of an ActionResult. `forced`: --force was given AND a guardrail it overrode refused."""
    a = result.action
    return {
        "time": now_text(now),
        "user": user or who(),
        "action": a.kind,
        "node": a.node,
        "value": a.value,
        "force": force,
        "forced": result.forced,
        "dry_run": dry_run,
        "outcome": result.outcome,
        "message": result.message,
        "balancers": [{"name": b.balancer, "ok": b.ok, "error": b.error, "before": state_record(b.before),
                       "after": state_record(b.after)} for b in result.balancers],
    }


class AuditBalancer(NamedTuple):
    """One balancer's part of an audited action; before/after as written ({"server", "admin", "weight",
    "backup", "health"[, "agent"]} or None)."""

    name: str
    ok: bool
    error: str | None
    before: dict | None
    after: dict | None


@dataclass(frozen=True)
class AuditEntry:
    """One audit line, typed. `time` is the ISO-8601 text as written; `at` the same as unix time (None when
    the line's time cannot be read)."""

    time: str
    at: float | None
    user: str
    action: str
    node: str
    value: Any
    outcome: str
    message: str
    force: bool
    forced: bool
    dry_run: bool
    balancers: tuple[AuditBalancer, ...]

    @classmethod
    def from_record(cls, d: dict) -> "AuditEntry":
        bals = tuple(AuditBalancer(str(b.get("name")), bool(b.get("ok")), _opt_str(b.get("error")),
                                   _opt_dict(b.get("before")), _opt_dict(b.get("after")))
                     for b in _opt_list(d.get("balancers")) if isinstance(b, dict))
        time_text = str(d.get("time", ""))
        return cls(time_text, parse_time(time_text), str(d.get("user", "")), str(d.get("action", "")),
                   str(d.get("node", "")), d.get("value"), str(d.get("outcome", "")), str(d.get("message", "")),
                   bool(d.get("force")), bool(d.get("forced")), bool(d.get("dry_run")), bals)


def parse_time(text: str) -> float | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _opt_list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _opt_dict(v: Any) -> dict | None:
    return v if isinstance(v, dict) else None


class AuditWriter(Protocol):
    """Where one record per attempt goes (AuditLog; test fakes); the action lock and the intent journal
    live beside `path`."""

    path: Path

    def append(self, record: dict) -> None: ...


class AuditError(OSError):
    """The audit log cannot be written; str() is one line naming the file."""


class AuditLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as e:
            raise AuditError(f"{self.path}: cannot write audit log: {e.strerror or e}") from None

    def newest_first(self, node: str | None = None) -> Iterator[AuditEntry]:
        """Entries from the end of the file backwards (only `node`'s when given). Bad lines are skipped; the
        file is read in chunks from its end (logs grow without bound)."""
        for d in self._records_backwards():
            if node is None or d.get("node") == node:
                yield AuditEntry.from_record(d)

    def read_from(self, offset: int) -> tuple[list[AuditEntry], int]:
        """Entries appended since byte `offset`, oldest first, and the offset to read from next time (a line
        still being written waits for the next call)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            return [], offset
        end = chunk.rfind(b"\n") + 1
        out = [AuditEntry.from_record(d) for d in map(_parse, chunk[:end].splitlines()) if d is not None]
        return out, offset + end

    async def recent(self, node: str | None = None, limit: int = 10) -> list[AuditEntry]:
        """The console's audit reader: the last `limit` entries (newest first), read in a thread."""
        return await asyncio.to_thread(lambda: list(itertools.islice(self.newest_first(node), limit)))

    def _records_backwards(self) -> Iterator[dict]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(0, os.SEEK_END)
            pos = f.tell()
            rest = b""
            while pos > 0:
                step = min(_TAIL_CHUNK, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + rest
                lines = buf.split(b"\n")
                rest = lines.pop(0)  # maybe incomplete: completed by the next (earlier) chunk
                for raw in reversed(lines):
                    d = _parse(raw)
                    if d is not None:
                        yield d
            d = _parse(rest)
            if d is not None:
                yield d


def _parse(raw: bytes) -> dict | None:
    if not raw.strip():
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        return None
    return d if isinstance(d, dict) else None
