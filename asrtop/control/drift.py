"""Notice runtime changes an HAProxy restart or reload threw away, and say so.

HAProxy keeps `set server ... state/weight` and dynamic servers in memory only: a reload (new worker) or a
restart starts from haproxy.cfg again (unless a server-state-file is loaded), so a drained node silently
takes traffic again. asrtop already writes every action it made to the audit log; HAProxy's `show info`
tells when the process serving the socket started (Start_time_sec). A change asrtop made BEFORE that
start which the servers no longer show was lost:

    haproxy: restarted at 10:31:02 UTC, runtime changes lost: node-2 drain (now ready); re-apply them ...

The audit log is the memory (so it works across `asrtop` processes, e.g. `asrtop drain` then a reload
then `asrtop status`). The front ends hand a ReloadWatch to the fleet source as a notes provider
(asrtop.sources.live.NotesProvider); its notes land in FleetSnapshot.notes (`asrtop status`, the console).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from asrtop.balancers.base import Balancer, ReportsStartTime, ServerState
from asrtop.control.audit import AuditEntry, AuditLog
from asrtop.control.model import FIELD_OF_KIND

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


def _apply(out: dict[str, dict[tuple[str, str], Desired]], e: AuditEntry) -> None:
    """Fold one audit entry (oldest to newest) into balancer -> (server, field) -> Desired."""
    field = FIELD_OF_KIND.get(e.action)
    if field is None or e.at is None or e.dry_run:
        return
    for b in e.balancers:
        if not b.ok or b.after is None:
            continue
        server, value = b.after.get("server"), b.after.get(field)
        if not isinstance(server, str) or value is None:
            continue
        if field == "admin":
            what = e.action
        elif field == "weight":
            what = f"weight {value}"
        else:
            what = f"backup {'on' if value else 'off'}"
        out.setdefault(b.name, {})[(server, field)] = Desired(server, field, value, e.at, what)


def desired_states(entries: Iterable[AuditEntry]) -> dict[str, dict[tuple[str, str], Desired]]:
    """balancer -> (server, field) -> the newest change asrtop made and read back there (entries newest first)."""
    out: dict[str, dict[tuple[str, str], Desired]] = {}
    for e in reversed(list(entries)):
        _apply(out, e)
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


class ReloadWatch:
    """Reads the audit log (incrementally) and each HAProxy's start time; gives one note per balancer.

    A notes provider for asrtop.sources.live.LiveFleetSource: `await watch.notes(balancers, servers)`."""

    def __init__(self, audit: AuditLog):
        self.audit = audit
        self._ino: int | None = None
        self._offset = 0  # bytes of the log folded into _desired so far
        self._desired: dict[str, dict[tuple[str, str], Desired]] = {}

    def desired(self) -> dict[str, dict[tuple[str, str], Desired]]:
        """Cheap when nothing changed (one stat); an appended log is read from where we stopped."""
        try:
            st = os.stat(self.audit.path)
        except OSError:
            self._ino, self._offset, self._desired = None, 0, {}
            return {}
        if st.st_ino != self._ino or st.st_size < self._offset:  # first look, rotated or truncated
            entries = [e for _, e in zip(range(MAX_RECORDS), self.audit.newest_first())]
            self._desired, self._ino, self._offset = desired_states(entries), st.st_ino, st.st_size
        elif st.st_size > self._offset:
            try:
                new, self._offset = self.audit.read_from(self._offset)
            except OSError:
                return self._desired
            for e in new:
                _apply(self._desired, e)
        return self._desired

    def lost(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]]) -> list[str]:
        """Blocking (one start-time query per HAProxy with remembered changes): run it in a thread."""
        desired = self.desired()
        out = []
        for b in balancers:
            mine = desired.get(b.name)
            if not mine or b.name not in servers or not isinstance(b, ReportsStartTime):
                continue
            started = b.started_at()
            if started is None:
                continue
            lost = lost_changes(mine, started, servers[b.name])
            if lost:
                out.append(note(b.name, started, lost))
        return out

    async def notes(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]]) -> list[str]:
        """HAProxy restarted/reloaded since asrtop changed it, and the change is gone."""
        try:
            if not self.desired():  # nothing asrtop changed: no `show info` round trips
                return []
            return await asyncio.to_thread(self.lost, balancers, servers)
        except Exception as e:  # a note must never take the console down
            return [f"cannot check for lost runtime changes: {type(e).__name__}: {e}"]
