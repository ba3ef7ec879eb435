"""PURE: what several snapshot rules ask of a node, answered once, and the settings' durations as functions.

Rules that judge from the current snapshot (no trend) read a node's facts through these, so "takes traffic"
or "its agent's answer counts" means the same in every rule.
"""

from __future__ import annotations

from typing import Any

from asrtop.agentstatus import AgentStatus
from asrtop.balancers.base import AdminState, Health
from asrtop.fleet import NodeView


def live_status(n: NodeView) -> AgentStatus | None:
    """The agent's status while its answer is fresh; a stale one's last answer judges nothing (agent-stale)."""
    return None if n.stale else n.status


def sending_traffic(n: NodeView) -> tuple[str, ...]:
    """The balancers that still send this node requests: it is ready there and its check is not DOWN, or it
    carries sessions there now."""
    return tuple(sorted(b for b, s in n.servers.items()
                        if (s.admin is AdminState.READY and s.health is not Health.DOWN)
                        or (s.active_sessions or 0) > 0))


def names(items: tuple[str, ...] | list[str]) -> str:
    return ", ".join(items)


def sends(balancers: tuple[str, ...]) -> str:
    """'hx-a still sends' / 'hx-a, hx-b still send'."""
    return f"{names(balancers)} still send{'s' if len(balancers) == 1 else ''}"


# The durations a rule holds for and clears after, read from the [problems] settings at each evaluation.
def down_for(settings: Any) -> float:
    return settings.down_for


def gpu_for(settings: Any) -> float:
    return settings.gpu_for


def clear_after(settings: Any) -> float:
    return settings.clear_after


def at_once(settings: Any) -> float:
    return 0.0
