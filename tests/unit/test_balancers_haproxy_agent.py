"""asrtop/balancers/haproxy_agent.py and the agent columns of haproxy_stat.py (PURE), plus what
HAProxyBalancer.set_state sends around a drain (fake Runtime API).

Fixtures: tests/fixtures/haproxy/agent_* recorded from real 2.6 and 2.8 (capture_agent.py): n1 agent running,
n2 agent paused (`disable agent`), n3 without one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import asrtop.balancers.haproxy_agent as agent
from asrtop.balancers.base import AddsPlanNotes, AdminState, BalancerRefused, Health, PausesAgentChecks, ServerState
from asrtop.balancers.haproxy import HAProxyBalancer
from asrtop.balancers.haproxy_stat import build_server_states

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"
VERSIONS = ("2.6", "2.8")


def recorded(version: str) -> dict[str, ServerState]:
    stat = (FIXTURES / f"agent_show_stat_{version}.csv").read_text()
    state = (FIXTURES / f"agent_servers_state_{version}.txt").read_text()
    return {s.name: s for s in build_server_states(stat, state, "asr")}


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_agent_states(version):
    s = recorded(version)
    assert (s["n1"].agent_check, s["n1"].agent_enabled) == (True, True)
    assert (s["n2"].agent_check, s["n2"].agent_enabled) == (True, False)
    assert (s["n3"].agent_check, s["n3"].agent_enabled) == (False, None)


@pytest.mark.parametrize("version", VERSIONS)
def test_without_servers_state_show_stat_sees_a_running_agent_only(version):
    """No `show servers state` row: `show stat` prints an agent_status only while the agent runs."""
    stat = (FIXTURES / f"agent_show_stat_{version}.csv").read_text()
    s = {x.name: x for x in build_server_states(stat, "1\n# be_id be_name srv_name\n", "asr")}
    assert (s["n1"].agent_check, s["n1"].agent_enabled) == (True, True)
    assert (s["n2"].agent_check, s["n2"].agent_enabled) == (False, None)  # paused reads as none: said so
    assert (s["n3"].agent_check, s["n3"].agent_enabled) == (False, None)


def srv(agent_check=True, enabled: bool | None = True, admin=AdminState.READY) -> ServerState:
    return ServerState("n1", "127.0.0.1", 1, 1, False, admin, Health.UP, agent_check=agent_check,
                       agent_enabled=enabled if agent_check else None)


def test_agent_change():
    D, M, R = AdminState.DRAIN, AdminState.MAINT, AdminState.READY
    assert agent.agent_change(srv(), D, "pause") is False  # pause it
    assert agent.agent_change(srv(), M, "pause") is False
    assert agent.agent_change(srv(enabled=False), D, "pause") is None  # already paused
    assert agent.agent_change(srv(enabled=False), R, "pause") is True  # resume on ready
    assert agent.agent_change(srv(), R, "pause") is None  # runs already
    assert agent.agent_change(srv(agent_check=False), D, "pause") is None  # none to pause
    assert all(agent.agent_change(srv(enabled=e), st, "leave") is None for e in (True, False) for st in (D, M, R))


def test_commands_pause_before_and_resume_after():
    assert agent.commands("asr/n1", AdminState.DRAIN, "pause") == (["disable agent asr/n1"], [])
    assert agent.commands("asr/n1", AdminState.MAINT, "pause") == (["disable agent asr/n1"], [])
    assert agent.commands("asr/n1", AdminState.READY, "pause") == ([], ["enable agent asr/n1"])
    assert agent.commands("asr/n1", AdminState.DRAIN, "leave") == ([], [])


def test_plan_notes_wording():
    (line,) = agent.plan_notes(srv(), "drain", "pause")
    assert line == ("n1 has an agent check that can set it back to ready: asrtop pauses it during the drain "
                    "(`disable agent`) and resumes it on ready")
    (line,) = agent.plan_notes(srv(), "maint", "leave")
    assert "agent_checks = \"leave\"" in line and "may undo the maint" in line and "drain --wait` fails" in line
    assert agent.plan_notes(srv(agent_check=False), "drain", "pause") == []
    assert agent.plan_notes(srv(enabled=False), "ready", "pause") == []  # the change line says "resumed"
    assert "stays paused" in agent.plan_notes(srv(enabled=False), "ready", "leave")[0]
    assert "replaces this one" in agent.plan_notes(srv(), "weight", "pause")[0]
    assert agent.plan_notes(srv(), "backup", "pause") == []
    assert all("\n" not in n for k in ("drain", "maint", "ready", "weight") for m in agent.AGENT_MODES
               for e in (True, False) for n in agent.plan_notes(srv(enabled=e), k, m))


class Recorder:
    """The Runtime API as a list of commands; answers like HAProxy 2.6/2.8. A remote socket without a config
    file: no server-state-file to look for (that has its own tests)."""

    kind, target = "tcp", ("192.0.2.1", 9999)

    def __init__(self, answers: dict[str, str] | None = None):
        self.sent: list[str] = []
        self.answers = answers or {}

    def command(self, cmd: str) -> str:
        self.sent.append(cmd)
        return self.answers.get(cmd.split(" asr/")[0], "\n")


def balancer(mode: str = "pause", answers: dict[str, str] | None = None) -> HAProxyBalancer:
    b = HAProxyBalancer("hx", "/nonexistent.sock", "asr", agent_checks=mode)
    b.api = Recorder(answers)  # type: ignore[assignment]
    return b


def test_set_state_pauses_the_agent_first_and_resumes_it_last():
    b = balancer()
    assert isinstance(b, PausesAgentChecks) and isinstance(b, AddsPlanNotes)
    b.set_state("n1", AdminState.DRAIN)
    b.set_state("n1", AdminState.MAINT)
    b.set_state("n1", AdminState.READY)
    assert b.api.sent == ["disable agent asr/n1", "set server asr/n1 state drain",
                          "disable agent asr/n1", "set server asr/n1 state maint",
                          "set server asr/n1 state ready", "enable agent asr/n1"]
    # a server without an agent check: HAProxy says so to `enable agent`, which is no failure
    b = balancer(answers={"enable agent": agent.NOT_CONFIGURED + "\n\n"})
    b.set_state("n1", AdminState.READY)
    b = balancer("leave")
    b.set_state("n1", AdminState.DRAIN)
    b.set_state("n1", AdminState.READY)
    assert b.api.sent == ["set server asr/n1 state drain", "set server asr/n1 state ready"]


def test_a_refused_disable_agent_sends_no_drain():
    b = balancer(answers={"disable agent": "Permission denied\n"})
    with pytest.raises(BalancerRefused, match="level admin"):
        b.set_state("n1", AdminState.DRAIN)
    assert b.api.sent == ["disable agent asr/n1"]


def test_bad_mode_is_refused_in_one_line():
    with pytest.raises(ValueError, match="agent_checks must be one of pause, leave, got 'off'"):
        HAProxyBalancer("hx", "/s", "asr", agent_checks="off")


def test_balancer_answers_for_its_mode():
    assert balancer().agent_change(srv(), AdminState.DRAIN) is False
    assert balancer("leave").agent_change(srv(), AdminState.DRAIN) is None
    assert balancer("leave").plan_notes(replace(srv(), name="n7"), "drain", None)[0].startswith("n7 has an agent")
