"""asrtop/control/drift.py: intent versus actual (PURE parts) and ReloadWatch's notes over in-memory balancers.

What asrtop last set (the audit log) against what a balancer shows, and the likely cause: a restart (the
change is older than the process), the server's running agent check, or something outside asrtop.
"""

from __future__ import annotations

import json
from dataclasses import replace

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.control.audit import AuditLog
from asrtop.control.drift import (
    OUTSIDE,
    Desired,
    ReloadWatch,
    differences,
    intent_note,
    ready_again,
    undone_line,
)
from asrtop.config import NodeConfig
from asrtop.fleet import NodeView

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def srv(name="n1", admin=AdminState.READY, weight=1, agent: bool | None = None) -> ServerState:
    return ServerState(name, "127.0.0.1", 1, weight, False, admin, Health.UP, agent_check=agent is not None,
                       agent_enabled=agent)


def desired(server="n1", field="admin", value="drain", at=T0 + 5, what="drain") -> dict:
    return {(server, field): Desired(server, field, value, at, what, "ops@bastion")}


def test_differences_and_intent_note_name_server_intent_time_and_cause():
    (d, s, now), = differences(desired(), [srv(agent=True), srv("n2")])
    assert (d.what, s.name, now) == ("drain", "n1", "ready")
    assert intent_note("hx-a", d, s, now).startswith(
        "hx-a: n1 is ready, asrtop set drain at 00:00:05 UTC (ops@bastion): most likely its agent check (it runs")
    assert intent_note("hx-a", d, srv(), now) == (
        "hx-a: n1 is ready, asrtop set drain at 00:00:05 UTC (ops@bastion): " + OUTSIDE)
    # a paused agent check could not have done it; nor can an agent change `backup`
    assert intent_note("hx-a", d, srv(agent=False), now).endswith(OUTSIDE)
    (d, s, now), = differences(desired(field="weight", value=5, what="weight 5"), [srv(weight=7, agent=True)])
    assert "n1 is weight 7, asrtop set weight 5" in intent_note("b", d, s, now) and "agent check" in \
        intent_note("b", d, s, now)
    assert differences(desired(), [srv(admin=AdminState.DRAIN)]) == []  # as asrtop set it
    assert differences(desired(), [srv("other")]) == []  # not there: nothing to compare


def test_undone_line_names_who():
    s = srv(agent=True)
    assert undone_line("n1", "hx-a", s, None) == \
        "n1 is ready again on hx-a: its agent check answered ready; not safe to upgrade"
    assert undone_line("n1", "hx-a", srv(), None) == f"n1 is ready again on hx-a: {OUTSIDE}; not safe to upgrade"
    assert undone_line("n1", "hx-a", s, T0 + 62).startswith(
        "n1 is ready again on hx-a: hx-a restarted at 00:01:02 UTC and forgot the drain")
    assert "a reload, another tool or an operator" in undone_line("n1", "hx-a", srv(), None, restart_checked=False)
    assert "\n" not in undone_line("n1", "hx-a", s, T0)


def test_ready_again_finds_the_balancer_showing_ready():
    view = NodeView("n1", NodeConfig("n1"), None, {"b": srv(admin=AdminState.DRAIN), "a": srv(admin=AdminState.DRAIN)})
    assert ready_again(view) is None
    view = NodeView("n1", NodeConfig("n1"), None, {"b": srv(agent=True), "a": srv(admin=AdminState.MAINT)})
    assert ready_again(view) == ("b", srv(agent=True))


class Balancer:
    """servers() and started_at() in memory; counts the start-time queries (each is a `show info`)."""

    kind = "haproxy"
    max_weight = 256

    def __init__(self, name: str, started: float | None):
        self.name, self.started, self.asked = name, started, 0

    def servers(self):
        return []

    def started_at(self):
        self.asked += 1
        return self.started

    def set_state(self, server, state): ...

    def set_weight(self, server, weight): ...

    def set_backup(self, server, backup): ...


def write(log, t: int, action: str, server: str, admin: str, weight: int = 1, balancer: str = "hx") -> None:
    rec = {"time": f"2026-01-01T00:00:{t:02d}.000Z", "user": "ops@bastion", "action": action, "node": server,
           "outcome": "done", "balancers": [{"name": balancer, "ok": True, "after": {
               "server": server, "admin": admin, "weight": weight, "backup": False, "health": "up"}}]}
    with open(log, "a") as f:
        f.write(json.dumps(rec) + "\n")


def test_watch_splits_restart_agent_and_outside_and_asks_start_time_only_on_a_difference(tmp_path):
    log = tmp_path / "audit.jsonl"
    write(log, 1, "drain", "n1", "drain")
    write(log, 2, "drain", "n2", "drain")
    write(log, 40, "maint", "n3", "maint")
    watch = ReloadWatch(AuditLog(log))
    hx = Balancer("hx", started=T0 + 30)  # restarted between the drains and the maint
    same = [srv("n1", AdminState.DRAIN), srv("n2", AdminState.DRAIN), srv("n3", AdminState.MAINT)]
    assert watch.lost([hx], {"hx": same}) == [] and hx.asked == 0  # all as set: no `show info`
    now = [srv("n1"), srv("n2", AdminState.DRAIN), replace(srv("n3", agent=True))]
    restart, agent = watch.lost([hx], {"hx": now})
    assert hx.asked == 1
    assert restart.startswith("hx: restarted at 00:00:30 UTC, runtime changes lost: n1 drain (now ready)")
    assert agent.startswith("hx: n3 is ready, asrtop set maint at 00:00:40 UTC (ops@bastion): most likely its agent")
    hx.started = T0  # no restart since: the n1 change was made outside asrtop
    (outside, agent) = watch.lost([hx], {"hx": [srv("n1"), *now[1:]]})
    assert outside == f"hx: n1 is ready, asrtop set drain at 00:00:01 UTC (ops@bastion): {OUTSIDE}"
    # a balancer without a start time (nginx) still gets intent notes; an unread one gets none
    write(log, 41, "drain", "n9", "maint", balancer="ng")
    ng = Balancer("ng", None)
    notes = watch.lost([ng], {"ng": [srv("n9")]})
    assert notes == [f"ng: n9 is ready, asrtop set drain at 00:00:41 UTC (ops@bastion): {OUTSIDE}"]
    assert watch.lost([ng], {}) == []


def test_a_change_made_after_the_reading_began_is_not_called_outside(tmp_path):
    """The console's poll overlaps its own action: servers read before the drain still show ready, and the
    audit line of the drain lands before the notes are made. That reading says nothing about the drain."""
    log = tmp_path / "audit.jsonl"
    write(log, 10, "drain", "n1", "drain")
    watch = ReloadWatch(AuditLog(log))
    hx = Balancer("hx", started=T0)
    before = {"hx": [srv("n1")]}  # read before the drain: still ready
    assert watch.lost([hx], before, read_at=T0 + 9.5) == []
    (late,) = watch.lost([hx], before, read_at=T0 + 10.5)  # read after the drain and still ready: a real note
    assert late == f"hx: n1 is ready, asrtop set drain at 00:00:10 UTC (ops@bastion): {OUTSIDE}"
