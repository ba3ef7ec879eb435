"""asrtop/audit.py: JSON lines, one write per record, concurrent appenders never interleave, recent() tail."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from datetime import datetime, timezone

from asrtop.control.audit import AuditError, AuditLog, record_for
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.control import Action, ActionResult, BalancerOutcome


def _srv(weight: int, admin: AdminState = AdminState.READY) -> ServerState:
    return ServerState("n1", "127.0.0.1", 8001, weight, False, admin, Health.UP)


def test_record_fields():
    res = ActionResult(Action("weight", "n1", 5), "partial", "partial: weight n1 5 took on a; NOT on b (gone)",
                       (BalancerOutcome("a", True, None, _srv(3), _srv(5)), BalancerOutcome("b", False, "gone", _srv(3))),
                       4)
    rec = record_for(res, force=True, user="ops@bastion", now=datetime(2026, 1, 2, 3, 4, 5, 678000, timezone.utc))
    assert rec == {
        "time": "2026-01-02T03:04:05.678Z", "user": "ops@bastion", "action": "weight", "node": "n1", "value": 5,
        "force": True, "forced": False, "dry_run": False, "outcome": "partial", "message": res.message,
        "balancers": [
            {"name": "a", "ok": True, "error": None,
             "before": {"server": "n1", "admin": "ready", "weight": 3, "backup": False, "health": "up"},
             "after": {"server": "n1", "admin": "ready", "weight": 5, "backup": False, "health": "up"}},
            {"name": "b", "ok": False, "error": "gone",
             "before": {"server": "n1", "admin": "ready", "weight": 3, "backup": False, "health": "up"},
             "after": None}]}
    assert "@" in record_for(res)["user"]


def test_append_creates_parent_and_recent_filters(tmp_path):
    log = AuditLog(tmp_path / "deep" / "dir" / "audit.jsonl")
    for i in range(30):
        log.append({"time": f"t{i}", "user": "u@h", "action": "drain", "node": f"n{i % 3}", "value": None,
                    "outcome": "done", "message": f"m{i}", "balancers": [{"name": "a", "ok": True, "error": None}]})
    assert len(log.path.read_text().splitlines()) == 30
    got = asyncio.run(log.recent("n1", 4))
    assert [e.message for e in got] == ["m28", "m25", "m22", "m19"]  # newest first
    assert got[0].balancers == (("a", True, None, None, None),) and got[0].at is None  # "t28" is no time
    assert [e.message for e in asyncio.run(log.recent(None, 2))] == ["m29", "m28"]
    assert asyncio.run(AuditLog(tmp_path / "none.jsonl").recent("n1")) == []


def test_recent_reads_across_chunks_and_skips_bad_lines(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    big = "x" * 5000
    with open(log.path, "w") as f:
        f.write("not json\n")
        for i in range(40):  # ~200 KB: several 64 KiB chunks, lines cut at chunk edges
            f.write(json.dumps({"node": "n1" if i % 2 else "n2", "message": f"{i}", "pad": big}) + "\n")
        f.write("[1, 2]\n")
    assert [e.message for e in log.newest_first("n1")] == [str(i) for i in range(39, 0, -2)]
    assert [e.message for e in itertools.islice(log.newest_first("n2"), 3)] == ["38", "36", "34"]


def test_read_from_returns_whole_lines_appended_since_an_offset(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    assert log.read_from(0) == ([], 0)
    log.append({"time": "2026-01-01T00:00:01.000Z", "action": "drain", "node": "n1", "forced": True})
    first, offset = log.read_from(0)
    assert [(e.action, e.node, e.forced, e.at) for e in first] == [("drain", "n1", True, 1767225601.0)]
    with open(log.path, "a") as f:
        f.write('{"action": "ready", "node": "n1"}\n{"half')
    more, offset2 = log.read_from(offset)
    assert [e.action for e in more] == ["ready"] and offset2 < log.path.stat().st_size  # the half line waits
    assert log.read_from(offset2) == ([], offset2)


def test_unwritable_log_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = AuditLog(blocker / "audit.jsonl")  # parent is a regular file
    try:
        log.append({"x": 1})
    except AuditError as e:
        assert str(e).startswith(f"{blocker / 'audit.jsonl'}: cannot write audit log:") and "\n" not in str(e)
    else:
        raise AssertionError("no error")


APPENDER = """
import sys
from asrtop.control.audit import AuditLog
log = AuditLog(sys.argv[1])
who = sys.argv[2]
for i in range(int(sys.argv[3])):
    log.append({"who": who, "i": i, "pad": who * 3000})
"""


def test_two_processes_append_concurrently_without_interleaving(tmp_path):
    path = tmp_path / "audit.jsonl"
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), who, str(n)]) for who in "ab"]
    for p in procs:
        assert p.wait(60) == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * n
    recs = [json.loads(ln) for ln in lines]  # every line is one whole record
    for who in "ab":
        assert [r["i"] for r in recs if r["who"] == who] == list(range(n))
        assert all(r["pad"] == who * 3000 for r in recs if r["who"] == who)
