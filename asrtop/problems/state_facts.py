"""PURE: what several snapshot rules ask of a node, answered once, and the settings' durations as functions.

Rules that judge from the current snapshot (no trend) read a node's facts through these, so "takes traffic"
or "its agent's answer counts" means the same in every rule. What more than one rule needs of the whole
snapshot is computed once per snapshot (`per_snapshot`): 1,000 nodes are judged on every refresh.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from asrtop.agentstatus import AgentStatus
from asrtop.balancers.base import AdminState, Health
from asrtop.fleet import FleetSnapshot, NodeView

T = TypeVar("T")


def per_snapshot(fn: Callable[[FleetSnapshot], T]) -> Callable[[FleetSnapshot], T]:
    """fn(snapshot), computed once for the latest snapshot (snapshots are immutable; the one kept is held, so
    its id cannot be reused by another)."""
    last: list = [None, None]

    def cached(snap: FleetSnapshot) -> T:
        held = last  # one read: a concurrent evaluation at worst computes it again
        if held[0] is snap:
            return held[1]
        value = fn(snap)
        last[:] = [snap, value]
        return value

    return cached


Live = tuple[tuple[NodeView, AgentStatus], ...]


@per_snapshot
def _live_pass(snap: FleetSnapshot) -> tuple[Live, Live]:
    """(live, live_troubled): one pass over the nodes per snapshot."""
    live_now, troubled = [], []
    for n in snap.nodes:
        if n.stale or n.agent is None or (st := n.agent.status) is None:
            continue
        live_now.append((n, st))
        if st.gpu_error or st.host.error or st.model.error or st.asr.error or st.model.state == "error" \
                or st.asr.up is False:
            troubled.append((n, st))
    return tuple(live_now), tuple(troubled)


def live(snap: FleetSnapshot) -> Live:
    """(node, its agent's status) while the answer is fresh; a stale one's last answer judges nothing
    (agent-stale says it is stale)."""
    return _live_pass(snap)[0]


def live_troubled(snap: FleetSnapshot) -> Live:
    """The live nodes whose agent reports an error of some collector, a model in state "error" or the ASR
    service down: the only ones collector-failing, model-hash-failed and asr-down-with-traffic can fire on
    (found in the same pass per snapshot as `live`, instead of one pass per rule over 1,000 nodes)."""
    return _live_pass(snap)[1]


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
