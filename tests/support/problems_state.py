"""Snapshots for the snapshot-rule tests (asrtop/problems/rules_state.py), built from asrtop.fleet's own merge,
and a tracker run that steps time to check a rule's raise and clear durations."""

from __future__ import annotations

import types
from typing import Any, Iterable, Mapping

from asrtop.agentstatus import AgentStatus, parse_status
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig, ProblemsConfig
from asrtop.fleet import AgentReading, BalancerReading, FleetSnapshot, merge
from asrtop.problems.engine import ProblemTracker
from asrtop.problems.model import Problem
from asrtop.problems.rules_state import STATE_RULES

T0 = 1767225600.0  # 2026-01-01T00:00:00Z
DIGEST_A = "366146db9020" + "a" * 52
DIGEST_B = "8f1a19189105" + "b" * 52
GPU = {"index": 0, "temperature_celsius": 60.0}


def settings(min_ready: int = 1, **over: float) -> Any:
    """What H1a's settings object offers: the [problems] attributes plus cluster.min_ready."""
    return types.SimpleNamespace(**{**ProblemsConfig().as_dict(), **over}, min_ready=min_ready)


def status(name: str, *, up: bool | None = True, asr_error: str | None = None, pid: int | None = 4242,
           digest: str | None = DIGEST_A, model_state: str = "ok", model_error: str | None = None,
           gpus: Iterable[dict] = (GPU,), gpu_error: str | None = None, host_error: str | None = None
           ) -> AgentStatus:
    """A schema-1 status as the agent sends it, parsed the way asrtop parses it (absent keys stay None)."""
    return parse_status({
        "schema": 1, "node": name, "gpu_source": "nvml", "gpu_error": gpu_error, "gpus": list(gpus),
        "host": {"error": host_error},
        "asr": {"up": up, "error": asr_error, "pid": pid},
        "model": {"state": model_state, "sha256": digest if model_state == "ok" else None, "error": model_error},
    })


def srv(name: str, admin: AdminState = AdminState.READY, health: Health = Health.UP, backup: bool = False,
        sessions: int = 0) -> ServerState:
    return ServerState(name, "127.0.0.1", None, 1, backup, admin, health, active_sessions=sessions)


def fleet(*nodes: tuple[str, AgentStatus | None, Mapping[str, ServerState] | ServerState | None],
          now: float = T0, unreachable: Mapping[str, str] = {}, stale: Iterable[str] = (),
          changing: Mapping[str, str] = {}, agentless: Iterable[str] = (), **kw: Any) -> FleetSnapshot:
    """nodes: (name, its agent's status or None, its server on "hx-a" or {balancer: server}); `stale`: agents
    that last answered long ago; `agentless`: nodes without an agent; `unreachable`: balancer -> its error;
    kw: merge's drift, drains, model_sha256."""
    by_balancer: dict[str, list[ServerState]] = {b: [] for b in unreachable}
    configs, agents = [], {}
    for name, st, servers in nodes:
        if name in agentless:
            configs.append(NodeConfig(name))
        else:
            configs.append(NodeConfig(name, agent=f"http://127.0.0.1:9/{name}"))
            fetched = now - 600 if name in stale else now
            agents[name] = AgentReading(f"http://127.0.0.1:9/{name}", st, fetched if st is not None else None,
                                        "timed out" if name in stale or st is None else None)
        if isinstance(servers, ServerState):
            servers = {"hx-a": servers}
        for b, s in (servers or {}).items():
            by_balancer.setdefault(b, []).append(s)
    readings = [BalancerReading(b, "haproxy", () if b in unreachable else tuple(ss),
                                f"{b}: {unreachable[b]}" if b in unreachable else None)
                for b, ss in by_balancer.items()]
    return merge(configs, agents, readings, now, changing=changing, **kw)


def ready(name: str, **kw: Any) -> tuple[str, AgentStatus, ServerState]:
    """A healthy node in rotation on hx-a; kw go to its status."""
    return name, status(name, **kw), srv(name)


def steps(rules: Iterable = STATE_RULES, **over: float) -> "Steps":
    return Steps(ProblemTracker(tuple(rules), settings(**over)))


class Steps:
    """Feeds a tracker snapshots at chosen times (seconds after T0); `rule(id)` reads its problems now."""

    def __init__(self, tracker: ProblemTracker):
        self.tracker = tracker

    def at(self, seconds: float, snap: FleetSnapshot) -> tuple[Problem, ...]:
        return self.tracker.update(snap, None, now=T0 + seconds)

    def of(self, rule: str) -> list[Problem]:
        return [p for p in self.tracker.problems if p.rule == rule]
