"""Controller with a balancer that pauses agent checks (PausesAgentChecks), in memory: the plan's change lines
and notes, the audit line's agent state, the read-back of the agent state, and wait_drained failing when the
drain is undone. The same on real HAProxy: tests/integration/test_control_haproxy_agent.py.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import asrtop.balancers.haproxy_agent as agent
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import parse_config
from asrtop.control import Action, Controller
from asrtop.control.controller import DrainUndone


class AgentBalancer:
    """An HAProxy in memory whose n1 has an agent check; `agent_answer()` is its agent's next answer."""

    kind = "haproxy"
    max_weight = 256

    def __init__(self, name: str = "mem", mode: str = "pause", obeys_disable: bool = True):
        self.name, self.mode, self.obeys_disable = name, mode, obeys_disable
        self.state = {n: ServerState(n, "127.0.0.1", 1, 1, False, AdminState.READY, Health.UP, 1 if n == "n1" else 0,
                                     agent_check=n == "n1", agent_enabled=True if n == "n1" else None)
                      for n in ("n1", "n2", "n3")}
        self.started: float | None = 0.0
        self.sent: list[str] = []

    def servers(self):
        return list(self.state.values())

    def set_state(self, server, state):
        before, after = agent.commands(f"b/{server}", state, self.mode)
        for cmd in before + after:
            self.sent.append(cmd)
            if self.state[server].agent_check and self.obeys_disable:
                self.state[server] = replace(self.state[server], agent_enabled=cmd.startswith("enable"))
        self.state[server] = replace(self.state[server], admin=state)

    def set_weight(self, server, weight): ...

    def set_backup(self, server, backup): ...

    def agent_change(self, server, state):
        return agent.agent_change(server, state, self.mode)

    def plan_notes(self, server, kind, value):
        return agent.plan_notes(server, kind, self.mode)

    def started_at(self):
        return self.started

    def agent_answer(self, word: str = "ready") -> None:
        s = self.state["n1"]
        if s.agent_enabled:
            self.state["n1"] = replace(s, admin=AdminState(word))


def controller(tmp_path, *balancers) -> Controller:
    cfg = parse_config({"cluster": {"audit_log": str(tmp_path / "audit.jsonl")},
                        "nodes": [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}]})
    return Controller(cfg, list(balancers))


def audit(tmp_path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]


async def test_plan_and_audit_show_the_agent_paused_and_resumed(tmp_path):
    mem = AgentBalancer()
    ctl = controller(tmp_path, mem)
    plan = await ctl.plan(Action("drain", "n1"))
    assert plan.changes == ("mem: state ready -> drain, agent check paused (`disable agent`)",)
    assert "mem: n1 has an agent check that can set it back to ready: asrtop pauses it during the drain " \
           "(`disable agent`) and resumes it on ready" in plan.warnings
    res = await ctl.apply(Action("drain", "n1"))
    assert res.outcome == "done", res.message
    mem.agent_answer("ready")  # paused: nothing happens
    assert mem.state["n1"].admin is AdminState.DRAIN and mem.sent == ["disable agent b/n1"]
    (rec,) = audit(tmp_path)
    b = rec["balancers"][0]
    assert (b["before"]["agent"], b["after"]["agent"]) == ("enabled", "disabled")
    plan = await ctl.plan(Action("ready", "n1"))
    assert plan.changes == ("mem: state drain -> ready, agent check resumed (`enable agent`)",)
    assert (await ctl.apply(Action("ready", "n1"))).outcome == "done"
    assert mem.state["n1"].agent_enabled is True
    assert audit(tmp_path)[-1]["balancers"][0]["after"]["agent"] == "enabled"
    assert set(audit(tmp_path)[-1]["balancers"][0]["after"]) == {"server", "admin", "weight", "backup", "health",
                                                                 "agent"}  # one key added, none changed


async def test_a_drained_node_with_a_running_agent_is_not_a_no_op(tmp_path):
    mem = AgentBalancer()
    mem.state["n1"] = replace(mem.state["n1"], admin=AdminState.DRAIN)  # e.g. its agent answered drain
    ctl = controller(tmp_path, mem)
    plan = await ctl.plan(Action("drain", "n1"))
    assert plan.changes == ("mem: state drain already, agent check paused (`disable agent`)",)
    assert (await ctl.apply(Action("drain", "n1"))).outcome == "done"
    assert mem.state["n1"].agent_enabled is False
    plan = await ctl.plan(Action("drain", "n1"))
    assert plan.changes == ("mem: state drain already, no change",)


async def test_leave_mode_changes_nothing_about_the_agent_and_warns(tmp_path):
    mem = AgentBalancer(mode="leave")
    ctl = controller(tmp_path, mem)
    plan = await ctl.plan(Action("drain", "n1"))
    assert plan.changes == ("mem: state ready -> drain",)
    assert any('agent_checks = "leave"' in w and "may undo the drain" in w for w in plan.warnings)
    assert (await ctl.apply(Action("drain", "n1"))).outcome == "done"
    assert mem.sent == [] and "agent" in audit(tmp_path)[0]["balancers"][0]["after"]


async def test_read_back_with_the_agent_still_running_is_a_disagreement(tmp_path):
    ctl = controller(tmp_path, AgentBalancer("good"), AgentBalancer("stubborn", obeys_disable=False))
    res = await ctl.apply(Action("drain", "n1"))
    assert res.outcome == "partial" and res.exit_code == 4
    assert "stubborn: sent, but the read-back shows the agent check running" in res.message


async def test_wait_drained_fails_when_the_drain_is_undone(tmp_path):
    mem = AgentBalancer(mode="leave")
    ctl = controller(tmp_path, mem)
    assert (await ctl.apply(Action("drain", "n1"))).outcome == "done"
    seen = []

    def progress(n, waited):
        seen.append(n)
        if len(seen) == 2:
            mem.agent_answer("ready")

    with pytest.raises(DrainUndone) as e:
        await ctl.wait_drained("n1", 10, progress, interval=0.01)
    assert str(e.value) == "n1 is ready again on mem: its agent check answered ready; not safe to upgrade"
    assert seen == [1, 1]  # never reported empty
    # undone by a restart after the wait began: said so, whatever the agent does
    assert (await ctl.apply(Action("drain", "n1"))).outcome == "done"
    mem.started = 4e9
    mem.agent_answer("ready")
    with pytest.raises(DrainUndone, match="mem restarted at .* and forgot the drain"):
        await ctl.wait_drained("n1", 10, interval=0.01)
