"""Audit log of operator actions: one JSON object per line, appended, never rewritten.

Record: {"time": ISO-8601 UTC, "user": "user@host", "action", "node", "value", "force", "dry_run",
"outcome", "message", "balancers": [{"name", "ok", "error", "before", "after"}]}.

Two asrtop processes (two operators, or the TUI and a script) may append at once: each record is
written with ONE os.write on an O_APPEND descriptor, so lines never interleave (POSIX appends of a
regular file are atomic with respect to the file offset; records are far below any practical size).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

_TAIL_CHUNK = 64 * 1024


def who() -> str:
    """user@host of the operator (SUDO_USER first: the person behind `sudo asrtop`)."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except Exception:  # no passwd entry in a container: still log something
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _state(s: Any) -> dict | None:
    if s is None:
        return None
    return {"server": s.name, "admin": s.admin.value, "weight": s.weight, "backup": s.backup,
            "health": s.health.value}


def record_for(result: Any, *, force: bool = False, dry_run: bool = False, user: str | None = None,
               now: datetime | None = None) -> dict:
    """The audit record of a control.ActionResult (duck-typed: audit must not import control)."""
    a = result.action
    return {
        "time": (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "user": user or who(),
        "action": a.kind,
        "node": a.node,
        "value": a.value,
        "force": force,
        "dry_run": dry_run,
        "outcome": result.outcome,
        "message": result.message,
        "balancers": [{"name": b.balancer, "ok": b.ok, "error": b.error, "before": _state(b.before),
                       "after": _state(b.after)} for b in result.balancers],
    }


@dataclass(frozen=True)
class AuditEntry:
    """One parsed line, for the TUI's node detail."""

    time: str
    user: str
    action: str
    node: str
    value: Any
    outcome: str
    message: str
    balancers: tuple[tuple[str, bool, str | None], ...]  # (name, ok, error)

    @classmethod
    def from_record(cls, d: dict) -> "AuditEntry":
        bals = tuple((str(b.get("name")), bool(b.get("ok")), b.get("error"))
                     for b in d.get("balancers") or () if isinstance(b, dict))
        return cls(str(d.get("time", "")), str(d.get("user", "")), str(d.get("action", "")),
                   str(d.get("node", "")), d.get("value"), str(d.get("outcome", "")),
                   str(d.get("message", "")), bals)


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

    def recent(self, node: str | None = None, n: int = 10) -> list[AuditEntry]:
        """The last `n` entries (oldest first), only `node`'s when given. Bad lines are skipped."""
        out: list[AuditEntry] = []
        for d in self._lines_backwards():
            if node is not None and d.get("node") != node:
                continue
            out.append(AuditEntry.from_record(d))
            if len(out) >= n:
                break
        out.reverse()
        return out

    def _lines_backwards(self) -> Iterable[dict]:
        """Parsed records from the end of the file, reading it in chunks (logs grow without bound)."""
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


def recent(path: str | os.PathLike, node: str | None = None, n: int = 10) -> list[AuditEntry]:
    return AuditLog(path).recent(node, n)
