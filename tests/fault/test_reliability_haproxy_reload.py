"""HAProxy restarted after asrtop changed it: the runtime changes are gone, and asrtop says so.

Real HAProxy; the changes go through Controller (audited), the restart is a real new process on the same
config and socket; detection is LiveFleetSource's snapshot notes and `asrtop status` (asrtop.control.drift).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.control import Action, Controller
from asrtop.control.audit import AuditEntry, AuditLog
from asrtop.control.drift import ReloadWatch, desired_states, lost_changes
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.sources.live import LiveFleetSource
from support.balancers import start_backends, start_haproxy
from support.control_cluster import admin_weight, config, haproxy_entry, run_cli, write_config

NODES = ("n1", "n2", "n3")


def restart(hx, how: str) -> subprocess.Popen:
    """A new HAProxy process on the same config and admin socket: `restart` stops the old one first,
    `reload` is the soft reload (`-sf OLDPID`: the new process takes over, the old one finishes and exits)."""
    old = hx.proc
    argv = [hx.binary, "-db", "-f", str(hx.config_path)]
    if how == "restart":
        old.terminate()
        old.wait(10)
    else:
        argv += ["-sf", str(old.pid)]
    with open(hx.log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=hx.config_path.parent)
    hx.proc = proc  # hx.stop() ends the new one
    old.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if hx.command("show info").startswith("Name:"):
                return proc
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("haproxy did not come back")


async def notes(cfg):
    source = LiveFleetSource(cfg, None, build_balancers(cfg), (ReloadWatch(AuditLog(cfg.audit_log)),))
    return [n for n in (await source.snapshot()).notes if "runtime changes lost" in n]


@pytest.mark.parametrize("how", ["reload", "restart"])
@pytest.mark.parametrize("which", ["debian", "wheel"])
async def test_restart_loses_runtime_changes_and_asrtop_says_so(tmp_path, debian_haproxy_bin, wheel_haproxy_bin,
                                                               which, how):
    binary = debian_haproxy_bin if which == "debian" else wheel_haproxy_bin
    with start_backends(NODES) as be, start_haproxy(binary, tmp_path, be.specs()) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], NODES)
        cfg = config(path)
        ctl = Controller(cfg, build_balancers(cfg))
        assert (await ctl.apply(Action("drain", "n2"))).outcome == "done"
        assert (await ctl.apply(Action("weight", "n1", 5))).outcome == "done"
        assert (await ctl.apply(Action("weight", "n3", 4))).outcome == "done"
        assert (await ctl.apply(Action("weight", "n3", 1))).outcome == "done"  # back to the config's value
        assert await notes(cfg) == []  # same process: nothing lost
        old_pid = hx.proc.pid
        restart(hx, how)
        assert hx.proc.pid != old_pid and admin_weight(hx)["n2"] == ("0", "1")  # HAProxy forgot
        (line,) = await notes(cfg)
        assert line.startswith("hx: restarted at ") and "n1 weight 5 (now weight 1)" in line
        assert "n2 drain (now ready)" in line and "n3" not in line
        status = run_cli(path, "status")
        assert status.returncode == 0 and "runtime changes lost" in status.stdout, status.stdout + status.stderr
        # re-applying clears it, one change at a time
        assert run_cli(path, "drain", "n2").returncode == 0
        (line,) = await notes(cfg)
        assert "n2" not in line and "n1 weight 5" in line
        assert run_cli(path, "weight", "n1", "5").returncode == 0
        assert await notes(cfg) == []


def s(name, admin=AdminState.READY, weight=1, backup=False):
    return ServerState(name, "127.0.0.1", 1, weight, backup, admin, Health.UP)


def test_lost_changes_rules():
    recs = [  # newest first, as read from the log's end
        {"time": "2026-01-01T00:00:10.000Z", "action": "ready", "node": "a", "balancers": [
            {"name": "hx", "ok": True, "after": {"server": "a", "admin": "ready", "weight": 1, "backup": False}}]},
        {"time": "2026-01-01T00:00:05.000Z", "action": "drain", "node": "a", "balancers": [
            {"name": "hx", "ok": True, "after": {"server": "a", "admin": "drain", "weight": 1, "backup": False}}]},
        {"time": "2026-01-01T00:00:04.000Z", "action": "drain", "node": "b", "dry_run": True, "balancers": [
            {"name": "hx", "ok": True, "after": {"server": "b", "admin": "drain", "weight": 1, "backup": False}}]},
        {"time": "2026-01-01T00:00:03.000Z", "action": "backup", "node": "c", "value": True, "balancers": [
            {"name": "hx", "ok": True, "after": {"server": "c", "admin": "ready", "weight": 1, "backup": True}},
            {"name": "hy", "ok": False, "error": "unreachable", "after": None}]},
        {"time": "garbage", "action": "weight", "balancers": []}, {"action": 3}, {},
    ]
    d = desired_states([AuditEntry.from_record(r) for r in recs])
    assert set(d) == {"hx"} and d["hx"][("a", "admin")].value == "ready"  # the newest wins; dry runs ignored
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z
    servers = [s("a"), s("b"), s("c")]
    assert [(x.server, now) for x, now in lost_changes(d["hx"], t0 + 20, servers)] == [("c", False)]
    assert lost_changes(d["hx"], t0 + 1, servers) == []  # HAProxy started before the changes: nothing lost
    assert lost_changes(d["hx"], t0 + 20, [s("a"), s("c", backup=True)]) == []


def test_watch_follows_the_audit_log_incrementally(tmp_path):
    import json as _json

    log = tmp_path / "audit.jsonl"
    w = ReloadWatch(AuditLog(log))
    assert w.desired() == {}

    def rec(t, action, admin, weight=1):
        return {"time": f"2026-01-01T00:00:{t:02d}.000Z", "action": action, "node": "a", "value": weight,
                "balancers": [{"name": "hx", "ok": True,
                               "after": {"server": "a", "admin": admin, "weight": weight, "backup": False}}]}

    with open(log, "a") as f:
        f.write(_json.dumps(rec(1, "drain", "drain")) + "\n")
    assert w.desired()["hx"][("a", "admin")].value == "drain"
    with open(log, "a") as f:
        f.write(_json.dumps(rec(2, "ready", "ready")) + "\n" + '{"half a line')
    assert w.desired()["hx"][("a", "admin")].value == "ready"  # the partial line is not read yet
    with open(log, "a") as f:
        f.write('": 1}\n' + _json.dumps(rec(3, "weight", "ready", 7)) + "\n")
    d = w.desired()["hx"]
    assert d[("a", "admin")].value == "ready" and d[("a", "weight")].value == 7
    log.write_text(_json.dumps(rec(4, "maint", "maint")) + "\n")  # truncated / rotated: read again
    assert w.desired()["hx"][("a", "admin")].value == "maint" and ("a", "weight") not in w.desired()["hx"]
