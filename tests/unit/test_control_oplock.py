"""asrtop.control.oplock: one action at a time across processes sharing the audit log's directory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from asrtop.control.oplock import LockTimeout, action_lock, lock_path


async def test_second_holder_waits_then_gets_it(tmp_path):
    path = lock_path(tmp_path / "audit.jsonl")
    assert path.name == "audit.jsonl.lock"
    order = []

    async def hold(tag, delay):
        await asyncio.sleep(delay)
        async with action_lock(path) as held:
            assert held
            order.append(f"{tag}+")
            await asyncio.sleep(0.2)
            order.append(f"{tag}-")

    await asyncio.gather(hold("a", 0), hold("b", 0.05))
    assert order == ["a+", "a-", "b+", "b-"]  # never interleaved


async def test_held_by_another_process_times_out_in_one_line(tmp_path):
    path = lock_path(tmp_path / "audit.jsonl")
    code = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout) as e:
            async with action_lock(path, timeout=0.3):
                pass
        assert "\n" not in str(e.value) and "another asrtop action" in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    async with action_lock(path, timeout=5) as held:  # released with the process
        assert held


async def test_a_wait_past_the_notice_is_said_once_naming_the_holder(tmp_path, monkeypatch):
    import asrtop.control.oplock

    path = lock_path(tmp_path / "audit.jsonl")
    said: list[str] = []

    async def hold(seconds):
        async with action_lock(path):
            await asyncio.sleep(seconds)

    # a wait shorter than the notice is not worth a line; a longer one is said once, not every poll
    for seconds, notice in ((0.2, 3.0), (1.2, 0.3)):  # wide margins: a loaded machine stalls the loop
        monkeypatch.setattr(asrtop.control.oplock, "WAIT_NOTICE", notice)
        holder = asyncio.create_task(hold(seconds))
        await asyncio.sleep(0.05)
        async with action_lock(path, on_wait=said.append) as held:
            assert held and path.read_text() == f"{os.getpid()}\n"  # the holder's name, for the next waiter
        await holder
        assert said == ([] if notice > seconds else [f"waiting for another asrtop action to finish (pid {os.getpid()} "
                                                  f"holds {path}; nothing sent yet, giving up after 90 s)"])
    assert path.read_text() == ""  # released: no stale pid


async def test_a_holder_that_wrote_no_pid_is_waited_for_without_a_name(tmp_path):
    path = lock_path(tmp_path / "audit.jsonl")
    code = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(1)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    said: list[str] = []
    try:
        assert holder.stdout.readline().strip() == "held"
        async with action_lock(path, timeout=10, on_wait=said.append) as held:
            assert held
    finally:
        holder.kill()
        holder.wait()
    assert said == [f"waiting for another asrtop action to finish (holds {path}; nothing sent yet, "
                    f"giving up after 10 s)"]


async def test_unwritable_state_dir_does_not_block_actions(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    async with action_lock(blocker / "sub" / "audit.jsonl.lock") as held:
        assert held is False


class OneServer:
    name, kind, max_weight = "fake", "haproxy", 256

    def __init__(self):
        from asrtop.balancers.base import AdminState, Health, ServerState

        self.state = ServerState("n1", "127.0.0.1", 1, 1, False, AdminState.READY, Health.UP)
        self.sent = []

    def servers(self):
        return [self.state]

    def set_weight(self, server, weight):
        self.sent.append((server, weight))


async def test_controller_refuses_in_one_line_when_another_action_holds_the_lock(tmp_path, monkeypatch):
    import asrtop.control.oplock
    from asrtop.config import parse_config
    from asrtop.control import Action, Controller
    from asrtop.exitcodes import REFUSED_GUARDRAIL

    cfg = parse_config({"cluster": {"audit_log": str(tmp_path / "audit.jsonl")}, "nodes": [{"name": "n1"}]})
    b = OneServer()
    monkeypatch.setattr(asrtop.control.oplock, "LOCK_TIMEOUT", 0.3)
    async with action_lock(lock_path(cfg.audit_log)):
        res = await Controller(cfg, [b]).apply(Action("weight", "n1", 5))
    assert (res.outcome, res.exit_code) == ("refused", REFUSED_GUARDRAIL) and "\n" not in res.message
    assert b.sent == [] and "another asrtop action" in cfg.audit_log.read_text()
    res = await Controller(cfg, [b]).apply(Action("weight", "n1", 5))  # free again: it goes through
    assert b.sent == [("n1", 5)]
