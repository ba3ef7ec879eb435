"""Intent versus actual: what asrtop last set on each server, what the balancer shows now, and why they differ.

asrtop writes every action it made to the audit log; the newest change read back per (balancer, server,
field) is what asrtop intends there. When a balancer shows something else, one of three things most likely
changed it, and a note says which:

- HAProxy restarted or reloaded (`show info` Start_time_sec is after the change): a reload starts from
  haproxy.cfg again (unless a server-state-file is loaded), so a drained node silently takes traffic again.
  One note per balancer lists what was lost:

      haproxy: restarted at 10:31:02 UTC, runtime changes lost: node-2 drain (now ready); re-apply them ...

- the server's agent check (HAProxy `agent-check`, running): its ready/drain/maint and weight answers act
  like the Runtime API's:

      hx-a: n1 is ready, asrtop set drain at 10:31:02 UTC (ops@bastion): most likely its agent check ...

- anything else: "changed outside asrtop (another tool or operator)".

The audit log is the memory (so it works across `asrtop` processes, e.g. `asrtop drain` then a reload
then `asrtop status`); it is read incrementally, one stat per snapshot when unchanged, and `show info` is
asked only of a balancer where something differs. The front ends hand a ReloadWatch to the fleet source as
a notes provider (asrtop.sources.live.DriftProvider); its notes land in FleetSnapshot.notes (`asrtop
status`, the console) and the same findings as facts in FleetSnapshot.drift (plus the drains it still sees
held, with their audit time, in FleetSnapshot.drains) for the problems rules. The same causes name who
undid a drain that `drain --wait` or the console follows.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from asrtop.balancers.base import AdminState, Balancer, ReportsStartTime, ServerState
from asrtop.control.audit import AuditEntry, AuditLog
from asrtop.control.model import FIELD_OF_KIND
from asrtop.fleet import DRIFT_AGENT, DRIFT_OUTSIDE, DRIFT_RESTART, DrainRecord, Drift, NodeView
from asrtop.sources.live import DriftReading

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
    user: str = ""  # who asked (the audit record's user@host)


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
        out.setdefault(b.name, {})[(server, field)] = Desired(server, field, value, e.at, what, e.user)


def desired_states(entries: Iterable[AuditEntry]) -> dict[str, dict[tuple[str, str], Desired]]:
    """balancer -> (server, field) -> the newest change asrtop made and read back there (entries newest first)."""
    out: dict[str, dict[tuple[str, str], Desired]] = {}
    for e in reversed(list(entries)):
        _apply(out, e)
    return out


def _current(s: ServerState, field: str) -> object:
    return {"admin": s.admin.value, "weight": s.weight, "backup": s.backup}[field]


def differences(desired: dict[tuple[str, str], Desired], servers: Sequence[ServerState]
                ) -> list[tuple[Desired, ServerState, object]]:
    """(intent, the server now, its value now) wherever a server no longer shows what asrtop set (PURE)."""
    by_name = {s.name: s for s in servers}
    out = []
    for d in sorted(desired.values(), key=lambda d: (d.server, d.field)):
        s = by_name.get(d.server)
        if s is not None and _current(s, d.field) != d.value:
            out.append((d, s, _current(s, d.field)))
    return out


def restarted_since(d: Desired, started_at: float | None) -> bool:
    """Was the change made before the balancer's process started (so a reload/restart threw it away)?"""
    return started_at is not None and d.at < started_at + START_SLACK


def lost_changes(desired: dict[tuple[str, str], Desired], started_at: float,
                 servers: Sequence[ServerState]) -> list[tuple[Desired, object]]:
    """(change, value now) for changes made before `started_at` that the servers no longer show (PURE)."""
    return [(d, now) for d, _, now in differences(desired, servers) if restarted_since(d, started_at)]


def agent_may_have(s: ServerState, field: str) -> bool:
    """Could the server's agent check have set this field? (a running one sets state and weight)"""
    return s.agent_check and s.agent_enabled is True and field in ("admin", "weight")


def intent_note(balancer: str, d: Desired, s: ServerState, now: object) -> str:
    """One server that differs from asrtop's intent for a reason other than a restart (PURE)."""
    who = f" ({d.user})" if d.user else ""
    if agent_may_have(s, d.field):
        why = ("most likely its agent check (it runs, and its answers set state and weight like the Runtime "
               "API: `agent_checks = \"pause\"` keeps it from undoing a drain or maint)")
    else:
        why = OUTSIDE
    return f"{balancer}: {s.name} is {_show(d.field, now)}, asrtop set {d.what} at {_clock(d.at)}{who}: {why}"


OUTSIDE = "changed outside asrtop (another tool or operator)"


def ready_again(view: NodeView) -> tuple[str, ServerState] | None:
    """(balancer, server) where a node asrtop drained (or put in maint) shows ready again (PURE)."""
    for balancer, s in sorted(view.servers.items()):
        if s.admin is AdminState.READY:
            return balancer, s
    return None


def undone_line(node: str, balancer: str, s: ServerState, restarted_at: float | None,
                restart_checked: bool = True) -> str:
    """One line naming who most likely undid a drain: a restart at `restarted_at` (None: no restart since the
    drain, or not known), the agent check, or someone outside asrtop. `restart_checked` False: the caller
    could not ask the balancer when it started (the console: the notes then say) (PURE)."""
    if restarted_at is not None:
        why = f"{balancer} restarted at {_clock(restarted_at)} and forgot the drain (a reload starts from haproxy.cfg)"
    elif agent_may_have(s, "admin"):
        why = "its agent check answered ready"
    elif not restart_checked:
        why = "not by asrtop: a reload, another tool or an operator (the notes say which)"
    else:
        why = OUTSIDE
    return f"{node} is ready again on {balancer}: {why}; not safe to upgrade"


def drift_fact(balancer: str, d: Desired, s: ServerState, now: object, started_at: float | None) -> Drift:
    """The difference an intent note or a restart note words, as a fact (same causes, same order) (PURE)."""
    if restarted_since(d, started_at):
        cause, restarted = DRIFT_RESTART, started_at
    else:
        cause, restarted = (DRIFT_AGENT if agent_may_have(s, d.field) else DRIFT_OUTSIDE), None
    return Drift(balancer, d.server, d.field, d.what, _show(d.field, now), cause, d.at, d.user, restarted)


def held_drains(balancer: str, desired: dict[tuple[str, str], Desired], servers: Sequence[ServerState]
                ) -> list[DrainRecord]:
    """The drains and maints asrtop set that the servers still show, with when and by whom (PURE)."""
    by_name = {s.name: s for s in servers}
    out = []
    for d in desired.values():
        s = by_name.get(d.server)
        if d.field == "admin" and d.value in ("drain", "maint") and s is not None and s.admin.value == d.value:
            out.append(DrainRecord(balancer, d.server, str(d.value), d.at, d.user))
    return out


def note(balancer: str, started_at: float, lost: list[tuple[Desired, object]]) -> str:
    when = _clock(started_at)
    items = ", ".join(f"{d.server} {d.what} (now {_show(d.field, now)})" for d, now in lost)
    return (f"{balancer}: restarted at {when}, runtime changes lost: {items}; re-apply them (or persist them "
            f"with a server-state-file / in haproxy.cfg)")


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S UTC")


def _show(field: str, value: object) -> str:
    if field == "backup":
        return "backup" if value else "primary"
    if field == "weight":
        return f"weight {value}"
    return str(value)


class ReloadWatch:
    """Reads the audit log (incrementally) and, where a server differs from it, that HAProxy's start time.

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

    def lost(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]],
             read_at: float | None = None) -> list[str]:
        """The notes of `read` (blocking: run it in a thread)."""
        return list(self.read(balancers, servers, read_at).notes)

    def read(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]],
             read_at: float | None = None) -> DriftReading:
        """Blocking (one start-time query per HAProxy where a server differs from asrtop's intent): run it in
        a thread. A restart note per balancer for changes it threw away, an intent note per other difference;
        each difference as a Drift fact, and the drains asrtop set that still hold.

        `read_at`: when the reading of `servers` began. A change asrtop made after it is not in that reading
        yet (the console's poll overlaps its own actions), so it is not compared: no false "changed outside"."""
        desired = self.desired()
        notes: list[str] = []
        facts: list[Drift] = []
        drains: list[DrainRecord] = []
        for b in balancers:
            mine = desired.get(b.name)
            if mine and read_at is not None:
                mine = {k: d for k, d in mine.items() if d.at <= read_at}
            if not mine or b.name not in servers:
                continue
            drains += held_drains(b.name, mine, servers[b.name])
            differ = differences(mine, servers[b.name])
            if not differ:
                continue
            started = b.started_at() if isinstance(b, ReportsStartTime) else None
            lost = [(d, now) for d, _, now in differ if restarted_since(d, started)]
            if lost and started is not None:
                notes.append(note(b.name, started, lost))
            notes += [intent_note(b.name, d, s, now) for d, s, now in differ if not restarted_since(d, started)]
            facts += [drift_fact(b.name, d, s, now, started) for d, s, now in differ]
        return DriftReading(tuple(notes), tuple(facts), tuple(drains))

    async def notes(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]],
                    read_at: float | None = None) -> list[str]:
        """Servers that no longer show what asrtop set, and the likely cause (restart, agent check, outside)."""
        return list((await self.drift(balancers, servers, read_at)).notes)

    async def drift(self, balancers: Sequence[Balancer], servers: Mapping[str, Sequence[ServerState]],
                    read_at: float | None = None) -> DriftReading:
        """The notes and their facts (asrtop.sources.live.DriftProvider). Never raises: a failure is a note."""
        try:
            if not self.desired():  # nothing asrtop changed: no `show info` round trips
                return DriftReading()
            return await asyncio.to_thread(self.read, balancers, servers, read_at)
        except Exception as e:  # a note must never take the console down
            return DriftReading((f"cannot compare the balancers with asrtop's changes: {type(e).__name__}: {e}",))
