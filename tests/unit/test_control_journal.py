"""The intent journal (asrtop.control.journal), the signal hold (signals.py) and the recovery's wording and
outcomes (recover.py), without a balancer. Crash tests on real HAProxy: tests/integration/test_control_recover.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from asrtop.balancers.base import StepInterrupted
from asrtop.control.journal import (
    InterruptedNotes,
    Journal,
    JournalError,
    about,
    by_action,
    interrupted_line,
    journal_path,
    missing_line,
)
from asrtop.control.model import RecoveryItem
from asrtop.control.oplock import action_lock, held, lock_path
from asrtop.control.recover import _summary
from asrtop.control.signals import SignalHold
from asrtop.exitcodes import INTERRUPTED

FACTS = {"backend": "asr", "server": "n2", "backup": True, "was_backup": False,
         "add_line": "add server asr/n2 10.0.0.6:10095 check weight 3 id 2 backup",
         "restore_line": "add server asr/n2 10.0.0.6:10095 check weight 3 id 2", "admin": "drain", "weight": 3,
         "checks": ["health"], "probe": "asrtop-probe-1-2", "addr": "10.0.0.6", "port": 10095}


def journal(tmp_path: Path) -> Journal:
    return Journal.beside(tmp_path / "audit.jsonl")


def toggle(j: Journal, balancer: str, steps: list[str], aid: str = "A1", hold: SignalHold | None = None):
    op = j.begin("backup", "node-2", True, balancer, "n2", hold, aid)
    op.step("planned", **FACTS)
    for s in steps:
        op.step(s)
    return op


def test_one_readable_line_per_step_beside_the_audit_log(tmp_path):
    j = journal(tmp_path)
    assert j.path == tmp_path / "journal.jsonl" == journal_path(tmp_path / "audit.jsonl")
    toggle(j, "hx-a", ["probe added", "probe deleted", "maint set", "deleting", "deleted"])
    records = [json.loads(x) for x in j.path.read_text().splitlines()]
    assert [r["step"] for r in records] == ["planned", "probe added", "probe deleted", "maint set", "deleting",
                                            "deleted"]
    first = records[0]
    assert first["op"] == "A1/hx-a" and first["balancer"] == "hx-a" and first["server"] == "n2"
    assert first["add_line"] == FACTS["add_line"] and first["admin"] == "drain" and first["pid"] == os.getpid()
    assert first["time"].endswith("Z") and "@" in first["user"]
    assert all(r["op"] == "A1/hx-a" and r["balancer"] == "hx-a" for r in records)


def test_unfinished_ops_make_one_note_per_action_naming_where_they_stopped(tmp_path):
    j = journal(tmp_path)
    toggle(j, "hx-a", ["probe added", "probe deleted", "maint set", "deleting", "deleted"])
    toggle(j, "hx-b", ["probe added", "probe deleted", "maint set", "deleting", "deleted", "added", "health enabled"])
    toggle(j, "hx-a", ["done", "audited"], aid="A0")  # an earlier action, finished: no note
    groups = by_action(j.unfinished())
    assert [[o.balancer for o in g] for g in groups] == [["hx-a", "hx-b"]]
    line = interrupted_line(groups[0], {"hx-a": [], "hx-b": []})
    assert line.startswith("interrupted: `asrtop backup node-2 on` stopped on hx-a after `del server` at ")
    assert ", on hx-b after `enable health` at " in line and line.endswith("; run `asrtop recover`")
    assert "n2 is missing from hx-a, hx-b" in line
    notes = asyncio.run(InterruptedNotes(j).notes([], {}))
    assert len(notes) == 1 and notes[0].startswith("interrupted: `asrtop backup node-2 on` stopped on hx-a")
    assert "is missing because `asrtop backup node-2 on` was interrupted on hx-a after `del server`" in \
        missing_line(about(j.unfinished(), "node-2"), "node-2")
    assert about(j.unfinished(), "node-3") == []


def test_done_but_not_audited_is_unfinished_and_compaction_waits_for_all(tmp_path):
    j = journal(tmp_path)
    op = toggle(j, "hx-a", ["probe added", "done"])
    (o,) = j.unfinished()
    assert o.stopped[0] == "done" and "after it finished, before its audit line" in interrupted_line([o])
    assert not j.compact()  # an unfinished operation: kept
    j.audited([op], locked=True)
    assert j.unfinished() == [] and j.path.read_text() == ""  # all finished: compacted, atomically
    assert j.operations() == []


def test_an_operation_whose_process_holds_the_lock_is_in_progress_not_interrupted(tmp_path):
    j = journal(tmp_path)
    toggle(j, "hx-a", ["maint set"])  # this process, alive

    async def check() -> tuple[int, int]:
        async with action_lock(lock_path(tmp_path / "audit.jsonl")):
            during = len(j.unfinished())
        return during, len(j.unfinished())

    assert asyncio.run(check()) == (0, 1)  # while it holds the lock: in progress; after: interrupted
    assert len(j.unfinished(include_running=True)) == 1


def test_held_never_creates_the_lock_file(tmp_path):
    assert held(tmp_path / "missing.lock") is False and not (tmp_path / "missing.lock").exists()


def test_the_intent_must_be_written_before_anything_changes(tmp_path):
    j = Journal(tmp_path / "ro" / "journal.jsonl")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "journal.jsonl").mkdir()  # cannot be opened for writing, as root too
    op = j.begin("backup", "n2", True, "hx-a", "n2")
    with pytest.raises(JournalError, match="cannot write the intent journal .*; nothing changed"):
        op.step("planned", **FACTS)
    op.step("probe added")  # a progress record that cannot be written does not stop a change in the middle
    assert op.lost == 1 and not op.started


def test_checkpoint_stops_between_steps_never_inside_the_critical_section(tmp_path):
    hold = SignalHold()
    op = toggle(journal(tmp_path), "hx-a", [], hold=hold)
    op.checkpoint()  # nothing pending
    hold.pending = signal.SIGINT
    with op.critical():
        op.checkpoint()  # held: the section runs to its end
    with pytest.raises(StepInterrupted, match=r"hx-a: stopped by SIGINT \(Ctrl\+C\) before n2 was deleted"):
        op.checkpoint()


def test_bad_lines_and_a_line_being_written_are_skipped(tmp_path):
    j = journal(tmp_path)
    toggle(j, "hx-a", ["maint set"])
    with open(j.path, "ab") as f:
        f.write(b"not json\n[1, 2]\n{\"op\": \"A1/hx-a\", \"step\": \"dele")  # no newline: still being written
    (o,) = j.operations()
    assert o.last == "maint set"


# -- the signal hold ---------------------------------------------------------------------------------


def test_hold_defers_sigint_and_sigterm_then_delivers_to_the_previous_handler():
    seen: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with pytest.raises(KeyboardInterrupt):
            with SignalHold() as hold:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                assert hold.pending == signal.SIGINT and hold.count == 2 and seen == []
        with SignalHold() as hold:
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]  # delivered after the hold, to the handler that was there
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, old)


def test_holds_nest_and_an_outer_hold_gets_what_the_inner_one_delivers():
    with SignalHold(redeliver=False) as outer:
        with SignalHold() as inner:
            os.kill(os.getpid(), signal.SIGHUP)
            assert inner.pending == signal.SIGHUP
        assert outer.pending == signal.SIGHUP
    assert outer.name == "SIGHUP"  # not delivered: the caller does it (the CLI prints first)


def test_hold_outside_the_main_thread_holds_nothing():
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.append(SignalHold().__enter__().active))
    t.start()
    t.join()
    assert out == [False]


def test_sigterm_held_then_the_process_still_dies_by_it():
    code = ("import os, signal\nfrom asrtop.control.signals import SignalHold\n"
            "with SignalHold():\n    os.kill(os.getpid(), signal.SIGTERM)\n    print('finished', flush=True)\n"
            "print('never')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == -signal.SIGTERM and p.stdout == "finished\n"


# -- recovery outcomes -------------------------------------------------------------------------------


def item(result: str, kind: str | None = None) -> RecoveryItem:
    return RecoveryItem("hx-a", "`asrtop backup n2 on`", "after `del server` at 10:31:02 UTC", result,
                        ("add server asr/n2 10.0.0.6:10095 backup",), None if result != "failed" else "refused",
                        kind)


@pytest.mark.parametrize("items,outcome,code", [
    ((), "done", 0),
    ((item("completed"), item("undone")), "done", 0),
    ((item("completed"), item("failed", "unreachable")), "partial", 4),
    ((item("failed", "unreachable"),), "unreachable", 5),
    ((item("failed", "missing"),), "bad-input", 2),
    ((item("failed", "rejected"), item("failed", "unreachable")), "rejected", 7),
])
def test_recovery_outcomes_and_exit_codes(items, outcome, code):
    res = _summary(tuple(items), False)
    assert (res.outcome, res.exit_code) == (outcome, code)
    if not items:
        assert res.message == "nothing to recover: the intent journal has no interrupted change"


def test_recovery_lines_say_which_way_it_went():
    assert item("completed").line() == ("hx-a: `asrtop backup n2 on` completed (stopped after `del server` at "
                                        "10:31:02 UTC): add server asr/n2 10.0.0.6:10095 backup")
    assert "undone, left as before it (run it again to make the change)" in item("undone").line()
    assert item("completed").line(dry_run=True).startswith("hx-a: would complete `asrtop backup n2 on`")
    assert item("failed", "rejected").line().startswith("hx-a: cannot recover `asrtop backup n2 on`")
    assert INTERRUPTED == 130


def test_a_long_lived_reader_follows_appends_and_a_file_emptied_and_refilled(tmp_path):
    writer, reader = journal(tmp_path), journal(tmp_path)  # two processes: an asrtop action and the console
    op = toggle(writer, "hx-a", ["maint set"], aid="A1")
    assert [o.last for o in reader.unfinished()] == ["maint set"]
    op.step("deleting")
    op.step("deleted")
    assert [o.last for o in reader.unfinished()] == ["deleted"]  # read from where it stopped
    op.step("done")
    writer.audited([op], locked=True)
    assert writer.path.stat().st_size == 0 and reader.unfinished() == []
    toggle(writer, "hx-b", ["probe added"] * 30, aid="B2")  # refilled past the old offset: read from the start
    assert [(o.op, o.balancer) for o in reader.unfinished()] == [("B2/hx-b", "hx-b")]
    assert reader.operations()[0].facts["add_line"] == FACTS["add_line"]


def test_a_change_that_failed_in_the_middle_stays_unfinished_after_its_audit_line(tmp_path):
    j = journal(tmp_path)
    op = toggle(j, "hx-a", ["maint set", "deleting", "deleted"])  # then HAProxy stopped answering: no "done"
    j.audited([op], locked=True)
    (o,) = j.unfinished()
    assert o.last == "deleted" and j.path.stat().st_size > 0  # `asrtop recover` re-adds the server
