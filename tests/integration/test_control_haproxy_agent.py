"""Agent checks on real HAProxy 2.6 (Debian) and 2.8 (wheel): a drain that an agent answering `ready` cannot undo,
`drain --wait` failing when one does (agent_checks = "leave"), and the drift notes naming the cause.

The agent is tests/support/agentcheck.py (answers one word to each connection). HAProxy's state is read
with raw Runtime API commands (support.control_cluster.raw_servers), not with the adapter under test.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from asrtop.exitcodes import DRAIN_UNDONE
from support.agentcheck import AgentCheck
from support.balancers import start_backends, start_haproxy, wait_until
from support.control_cluster import DRAIN_BIT, asrtop_argv, haproxy_entry, raw_servers, run_cli, write_config

NODES = ("n1", "n2", "n3")
INTER_MS = 500
AGENT_ENABLED = 0x04  # CHK_ST_ENABLED in srv_agent_state


@pytest.fixture(params=["2.6", "2.8"])
def haproxy_bin(request, debian_haproxy_bin, wheel_haproxy_bin):
    return debian_haproxy_bin if request.param == "2.6" else wheel_haproxy_bin


@contextmanager
def agent_cluster(tmp_path, binary: str, word: str, mode: str | None = None):
    """n1 with a health check and an agent check (agent-inter 500 ms) answering `word`; n2, n3 plain."""
    with AgentCheck(word) as agent, start_backends(NODES) as be, \
            start_haproxy(binary, tmp_path, be.specs(n1={"check": True, "extra": agent.server_words(INTER_MS)})) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket, agent_checks=mode)], NODES)
        assert wait_until(lambda: agent.answers >= 1, 5), "HAProxy never asked the agent"
        yield agent, be, hx, path


def admin(hx, server: str = "n1") -> int:
    return int(raw_servers(hx)[server]["srv_admin_state"])


def agent_runs(hx, server: str = "n1") -> bool:
    return bool(int(raw_servers(hx)[server]["srv_agent_state"]) & AGENT_ENABLED)


def audit(tmp_path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_drain_holds_while_the_agent_answers_ready_and_ready_resumes_it(tmp_path, haproxy_bin):
    """Default agent_checks = "pause": the drain holds for 10 agent intervals while the agent keeps answering ready.

    Why 10 intervals (5 s) and not 30 s: after `disable agent` HAProxy starts no agent check at all (the agent
    sees no new connection, asserted below), so nothing can undo the drain later; the window covers a check
    already in flight at the pause and scheduling jitter. 30 s would add 50 more intervals of the same nothing.
    """
    with agent_cluster(tmp_path, haproxy_bin, "ready\n") as (agent, _, hx, path):
        dry = run_cli(path, "drain", "n1", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "  hx: state ready -> drain, agent check paused (`disable agent`)" in dry.stdout.splitlines()
        p = run_cli(path, "drain", "n1")
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines() == [
            "drain n1: done on hx",
            "  note: hx: n1 has an agent check that can set it back to ready: asrtop pauses it during the drain "
            "(`disable agent`) and resumes it on ready",
            "  note: hx: drain is lost on a reload: no server-state-file configured (README: Balancers)"]
        assert admin(hx) & DRAIN_BIT and not agent_runs(hx)
        asked = agent.answers
        end = time.monotonic() + 10 * INTER_MS / 1000
        while time.monotonic() < end:
            assert admin(hx) & DRAIN_BIT, "the agent check undid the drain"
            time.sleep(0.1)
        assert agent.answers <= asked + 1  # paused: at most the one check in flight at the pause
        b = audit(tmp_path)[-1]["balancers"][0]
        assert (b["before"]["agent"], b["after"]["agent"]) == ("enabled", "disabled")

        dry = run_cli(path, "ready", "n1", "--dry-run")
        assert "  hx: state drain -> ready, agent check resumed (`enable agent`)" in dry.stdout.splitlines()
        assert run_cli(path, "ready", "n1").returncode == 0
        assert admin(hx) == 0 and agent_runs(hx)  # `show servers state` says the agent runs again
        asked = agent.answers
        assert wait_until(lambda: agent.answers > asked, 5), "the agent check did not resume"
        assert audit(tmp_path)[-1]["balancers"][0]["after"]["agent"] == "enabled"
        status = run_cli(path, "status")
        assert "note:" not in status.stdout, status.stdout  # as asrtop set it: nothing to say


def slow_request_on_n1(be, hx) -> threading.Thread:
    """One request in flight on n1 for 8 s (n2/n3 in maint while it is sent, then ready again)."""
    for s in ("n2", "n3"):
        hx.command(f"set server asr/{s} state maint")
    t = threading.Thread(target=lambda: httpx.get(hx.url("/slow?s=8"), timeout=30), daemon=True)
    t.start()
    assert wait_until(lambda: be.in_flight["n1"] == 1, 5)
    for s in ("n2", "n3"):
        hx.command(f"set server asr/{s} state ready")
    return t


def test_leave_warns_and_drain_wait_fails_when_the_agent_undoes_it(tmp_path, haproxy_bin):
    # The agent answers `up 100%` (no state word) until the drain is done and read back, then `ready`: so the
    # undo happens while `drain --wait` waits, never between the change and its read-back.
    with agent_cluster(tmp_path, haproxy_bin, "up 100%\n", mode="leave") as (agent, be, hx, path):
        dry = run_cli(path, "drain", "n1", "--dry-run")
        assert "  hx: state ready -> drain" in dry.stdout.splitlines()
        assert ('  note: hx: n1 has an agent check that can set it back to ready: agent_checks = "leave" on this '
                "balancer, so asrtop leaves it running and its next answer may undo the drain (`drain --wait` fails "
                "if it does)") in dry.stdout.splitlines()
        slow = slow_request_on_n1(be, hx)
        proc = subprocess.Popen(asrtop_argv(path, "drain", "n1", "--wait", "--timeout", "30"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "drain n1: done on hx\n"
        assert agent_runs(hx)  # left alone
        agent.word = "ready\n"
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == DRAIN_UNDONE == 6  # and not the timeout: its line would say "timed out"
        assert err.splitlines() == ["asrtop: n1 is ready again on hx: its agent check answered ready; not safe to "
                                    "upgrade"]
        assert "safe to upgrade" not in out
        assert admin(hx) == 0  # HAProxy: ready again, taking new requests
        status = run_cli(path, "status")
        (note,) = [ln for ln in status.stdout.splitlines() if "note:" in ln]
        assert note.startswith("  note: hx: n1 is ready, asrtop set drain at ") and " UTC (" in note
        assert "most likely its agent check" in note
        slow.join(15)


def test_a_change_made_through_the_socket_is_reported_as_outside_asrtop(tmp_path, haproxy_bin):
    with agent_cluster(tmp_path, haproxy_bin, "up 100%\n") as (_, _, hx, path):
        assert run_cli(path, "drain", "n2").returncode == 0
        assert run_cli(path, "weight", "n3", "2").returncode == 0
        assert [ln for ln in run_cli(path, "status").stdout.splitlines() if "note:" in ln] == []
        hx.command("set server asr/n2 state ready")  # another tool, or an operator with socat
        hx.command("set server asr/n3 weight 7")
        notes = [ln for ln in run_cli(path, "status").stdout.splitlines() if "note:" in ln]
        assert len(notes) == 2, notes
        n2, n3 = notes
        assert n2.startswith("  note: hx: n2 is ready, asrtop set drain at ")
        assert n3.startswith("  note: hx: n3 is weight 7, asrtop set weight 2 at ")
        assert all(n.endswith("changed outside asrtop (another tool or operator)") for n in notes)
        assert "restarted" not in " ".join(notes)  # the same HAProxy process: not a reload
        assert run_cli(path, "drain", "n2").returncode == 0  # asking again makes intent and state agree
        assert len([ln for ln in run_cli(path, "status").stdout.splitlines() if "note:" in ln]) == 1
