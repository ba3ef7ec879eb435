"""Notice runtime changes an HAProxy restart or reload threw away, and say so.

HAProxy keeps `set server ... state/weight` and dynamic servers in memory only: a reload (new worker) or a
restart starts from haproxy.cfg again (unless a server-state-file is loaded), so a drained node silently
takes traffic again. asrtop already writes every action it made to the audit log; HAProxy's `show info`
tells when the process serving the socket started (Start_time_sec). A change asrtop made BEFORE that
start which the servers no longer show was lost:

    haproxy: restarted at 10:31:02 UTC, runtime changes lost: node-2 drain (now ready); re-apply them ...

No hook in control is needed: the audit log is the memory (so it works across `asrtop` processes, e.g.
`asrtop drain` then a reload then `asrtop status`). LiveFleetSource calls `ReloadWatch.notes()` on each
snapshot; the result lands in FleetSnapshot.notes (shown by `asrtop status` and the TUI).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from asrtop.audit import AuditLog
from asrtop.balancers.base import ServerState

MAX_RECORDS = 2000  # audit records read back (newest first): far more than one maintenance window needs
START_SLACK = 1.0  # Start_time_sec has 1 s resolution: a change in the start second counts as before it


@dataclass(frozen=True)
class Desired:
    """The last state asrtop set on one server of one balancer, for one field."""

    server: str
    field: str  # admin | weight | backup
    value: object
    at: float  # unix time of the audit record
    what: str  # e.g. "drain", "weight 5", "backup on"


def _ts(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


_FIELD = {"drain": "admin", "ready": "admin", "maint": "admin", "weight": "weight", "backup": "backup"}


def _apply(out: dict[str, dict[tuple[str, str], Desired]], r: dict) -> None:
    """Fold one audit record (oldest to newest) into balancer -> (server, field) -> Desired."""
    action = r.get("action")
    field = _FIELD.get(action) if isinstance(action, str) else None
    at = _ts(r.get("time"))
    if field is None or at is None or r.get("dry_run"):
        return
    for b in r.get("balancers") or ():
        if not isinstance(b, dict) or not b.get("ok") or not isinstance(b.get("after"), dict):
            continue
        after = b["after"]
        server, value = after.get("server"), after.get(field)
        if not isinstance(server, str) or value is None:
            continue
        if field == "admin":
            what = str(action)
        elif field == "weight":
            what = f"weight {value}"
        else:
            what = f"backup {'on' if value else 'off'}"
        out.setdefault(str(b.get("name")), {})[(server, field)] = Desired(server, field, value, at, what)


def desired_states(records: Iterable[dict]) -> dict[str, dict[tuple[str, str], Desired]]:
    """balancer -> (server, field) -> the newest change asrtop made and read back there (records newest first)."""
    out: dict[str, dict[tuple[str, str], Desired]] = {}
    for r in reversed(list(records)):
        _apply(out, r)
    return out


def _current(s: ServerState, field: str) -> object:
    return {"admin": s.admin.value, "weight": s.weight, "backup": s.backup}[field]


def lost_changes(desired: dict[tuple[str, str], Desired], started_at: float,
                 servers: Sequence[ServerState]) -> list[tuple[Desired, object]]:
    """(change, value now) for changes made before `started_at` that the servers no longer show (PURE)."""
    by_name = {s.name: s for s in servers}
    lost = []
    for d in sorted(desired.values(), key=lambda d: (d.server, d.field)):
        s = by_name.get(d.server)
        if s is None or d.at >= started_at + START_SLACK:
            continue
        now = _current(s, d.field)
        if now != d.value:
            lost.append((d, now))
    return lost


def note(balancer: str, started_at: float, lost: list[tuple[Desired, object]]) -> str:
    when = datetime.fromtimestamp(started_at, timezone.utc).strftime("%H:%M:%S UTC")
    items = ", ".join(f"{d.server} {d.what} (now {_show(d.field, now)})" for d, now in lost)
    return (f"{balancer}: restarted at {when}, runtime changes lost: {items}; re-apply them (or persist them "
            f"with a server-state-file / in haproxy.cfg)")


def _show(field: str, value: object) -> str:
    if field == "backup":
        return "backup" if value else "primary"
    if field == "weight":
        return f"weight {value}"
    return str(value)


def haproxy_started_at(balancer) -> float | None:
    """Start time of the HAProxy process answering this balancer's socket (`show info`), None if unknown."""
    api = getattr(balancer, "api", None)
    if api is None:
        return None
    try:
        info = api.command("show info")
    except Exception:  # unreachable: the balancer row already says so
        return None
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    try:
        return float(fields["Start_time_sec"])
    except (KeyError, ValueError):
        try:  # older HAProxy: no Start_time_sec
            return datetime.now(timezone.utc).timestamp() - float(fields["Uptime_sec"])
        except (KeyError, ValueError):
            return None


class ReloadWatch:
    """Reads the audit log (cached by size/mtime) and each HAProxy's start time; gives one note per balancer."""

    def __init__(self, audit_path: str | os.PathLike):
        self.audit = AuditLog(audit_path)
        self._ino: int | None = None
        self._offset = 0  # bytes of the log folded into _desired so far
        self._desired: dict[str, dict[tuple[str, str], Desired]] = {}

    def desired(self) -> dict[str, dict[tuple[str, str], Desired]]:
        """Cheap when nothing changed (one stat); an appended log is read from where we stopped."""
        path = Path(self.audit.path)
        try:
            st = path.stat()
        except OSError:
            self._ino, self._offset, self._desired = None, 0, {}
            return {}
        if st.st_ino != self._ino or st.st_size < self._offset:  # first look, rotated or truncated
            records = []
            for i, r in enumerate(self.audit._lines_backwards()):
                if i >= MAX_RECORDS:
                    break
                records.append(r)
            self._desired, self._ino, self._offset = desired_states(records), st.st_ino, st.st_size
            return self._desired
        if st.st_size > self._offset:
            try:
                with open(path, "rb") as f:
                    f.seek(self._offset)
                    chunk = f.read(st.st_size - self._offset)
            except OSError:
                return self._desired
            end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
            for raw in chunk[:end].splitlines():
                try:
                    r = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(r, dict):
                    _apply(self._desired, r)
            self._offset += end
        return self._desired

    def notes(self, balancers: Sequence, servers: dict[str, Sequence[ServerState]]) -> list[str]:
        """Blocking (one `show info` per HAProxy with remembered changes): run it in a thread."""
        desired = self.desired()
        out = []
        for b in balancers:
            mine = desired.get(b.name)
            if not mine or b.kind != "haproxy" or b.name not in servers:
                continue
            started = haproxy_started_at(b)
            if started is None:
                continue
            lost = lost_changes(mine, started, servers[b.name])
            if lost:
                out.append(note(b.name, started, lost))
        return out
