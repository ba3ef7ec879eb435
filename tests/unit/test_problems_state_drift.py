"""The drift facts the problems rules read (FleetSnapshot.drift, .drains): ReloadWatch gives them beside its
notes, the same findings, and the fleet source carries them into the snapshot. Never parsed from a note."""

from __future__ import annotations

import asyncio
import json

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import ClusterConfig, NodeConfig
from asrtop.control.audit import AuditLog
from asrtop.control.drift import ReloadWatch
from asrtop.fleet import DRIFT_AGENT, DRIFT_OUTSIDE, DRIFT_RESTART, DrainRecord, Drift
from asrtop.sources.live import LiveFleetSource

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def srv(name, admin=AdminState.READY, weight=1, agent=None):
    return ServerState(name, "127.0.0.1", 1, weight, False, admin, Health.UP, agent_check=agent is not None,
                       agent_enabled=agent)


class Balancer:
    """servers() and started_at() in memory."""

    kind = "haproxy"
    max_weight = 256

    def __init__(self, name, started, servers=()):
        self.name, self.started, self.now = name, started, list(servers)

    def servers(self):
        return list(self.now)

    def started_at(self):
        return self.started

    def set_state(self, server, state): ...

    def set_weight(self, server, weight): ...

    def set_backup(self, server, backup): ...


def write(log, t, action, server, admin, weight=1):
    rec = {"time": f"2026-01-01T00:00:{t:02d}.000Z", "user": "ops@bastion", "action": action, "node": server,
           "outcome": "done", "balancers": [{"name": "hx", "ok": True, "after": {
               "server": server, "admin": admin, "weight": weight, "backup": False, "health": "up"}}]}
    with open(log, "a") as f:
        f.write(json.dumps(rec) + "\n")


def audit(tmp_path):
    log = tmp_path / "audit.jsonl"
    write(log, 1, "drain", "n1", "drain")
    write(log, 2, "drain", "n2", "drain")
    write(log, 3, "weight", "n4", "ready", weight=5)
    write(log, 40, "maint", "n3", "maint")
    return log


def test_watch_gives_a_fact_for_every_difference_it_notes_and_the_drains_that_hold(tmp_path):
    watch = ReloadWatch(AuditLog(audit(tmp_path)))
    hx = Balancer("hx", started=T0 + 30)  # restarted after the drains, before the maint
    now = [srv("n1"), srv("n2", AdminState.DRAIN), srv("n3", agent=True), srv("n4", weight=7)]
    got = watch.read([hx], {"hx": now})
    assert got.notes == tuple(watch.lost([hx], {"hx": now}))
    restart, agent = got.notes
    assert restart.startswith("hx: restarted at 00:00:30 UTC, runtime changes lost: n1 drain (now ready), "
                              "n4 weight 5 (now weight 7)")
    assert agent.startswith("hx: n3 is ready, asrtop set maint at 00:00:40 UTC")
    assert got.drift == (
        Drift("hx", "n1", "admin", "drain", "ready", DRIFT_RESTART, T0 + 1, "ops@bastion", T0 + 30),
        Drift("hx", "n3", "admin", "maint", "ready", DRIFT_AGENT, T0 + 40, "ops@bastion"),
        Drift("hx", "n4", "weight", "weight 5", "weight 7", DRIFT_RESTART, T0 + 3, "ops@bastion", T0 + 30))
    assert got.drains == (DrainRecord("hx", "n2", "drain", T0 + 2, "ops@bastion"),)
    hx.started = T0  # no restart since the changes: someone outside asrtop
    assert {d.cause for d in watch.read([hx], {"hx": now}).drift} == {DRIFT_OUTSIDE, DRIFT_AGENT}
    same = [srv("n1", AdminState.DRAIN), srv("n2", AdminState.DRAIN), srv("n3", AdminState.MAINT), srv("n4", weight=5)]
    held = watch.read([hx], {"hx": same})
    assert (held.notes, held.drift) == ((), ())
    assert [(r.server, r.state) for r in held.drains] == [("n1", "drain"), ("n2", "drain"), ("n3", "maint")]


def test_the_fleet_source_carries_the_facts_into_the_snapshot(tmp_path):
    log = audit(tmp_path)
    hx = Balancer("hx", T0 + 30, [srv("n1"), srv("n2", AdminState.DRAIN), srv("n3", AdminState.MAINT)])
    cfg = ClusterConfig(None, nodes=(NodeConfig("n1"), NodeConfig("n2"), NodeConfig("n3")), audit_log=log)
    snap = asyncio.run(LiveFleetSource(cfg, None, [hx], (ReloadWatch(AuditLog(log)),)).snapshot())
    assert [(d.server, d.what, d.cause) for d in snap.drift] == [("n1", "drain", DRIFT_RESTART)]
    assert [(r.server, r.state, r.at) for r in snap.drains] == [("n2", "drain", T0 + 2), ("n3", "maint", T0 + 40)]
    assert any("runtime changes lost: n1 drain (now ready)" in n for n in snap.notes)
    quiet = asyncio.run(LiveFleetSource(cfg, None, [hx], ()).snapshot())  # no watch: no facts, no notes
    assert (quiet.drift, quiet.drains) == ((), ())
