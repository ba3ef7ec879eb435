"""The pieces of asrtop.control that decide and describe: validation, read-back checks, plan lines, summaries.

Kept apart from the Controller (which does the I/O) so each rule reads on its own. No textual.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Sequence

from asrtop.balancers.base import (
    AdminState,
    Balancer,
    BalancerError,
    BalancerUnreachable,
    ServerState,
)
from asrtop.fleet import FleetSnapshot, primaries_staying_ready

if TYPE_CHECKING:
    from asrtop.control import Action

ACTION_KINDS = ("drain", "ready", "maint", "weight", "backup")
_STATE_OF = {"drain": AdminState.DRAIN, "maint": AdminState.MAINT, "ready": AdminState.READY}
DEFAULT_MAX_WEIGHT = {"haproxy": 256, "nginx": 1000}


def one_line(e: BaseException | str, balancer: str | None = None) -> str:
    """Error text on one line, without a leading "<balancer>: " (adapters name themselves; we do too)."""
    text = " ".join((str(e) or type(e).__name__).split())
    if balancer and text.startswith(balancer + ": "):
        text = text[len(balancer) + 2:]
    return text


def weight_range(b: Balancer) -> tuple[int, int]:
    """HAProxy accepts 0 (no new requests); nginx has no weight 0 (its `down` is the drain)."""
    lo = 0 if b.kind == "haproxy" else 1
    hi = int(getattr(b, "max_weight", 0) or DEFAULT_MAX_WEIGHT.get(b.kind, 256))
    return lo, hi


def validate(action: "Action", balancers: Sequence[Balancer]) -> str | None:
    """One line saying why the action is malformed, or None. No I/O."""
    if action.kind not in ACTION_KINDS:
        return f"unknown action {action.kind!r} (known: {', '.join(ACTION_KINDS)})"
    if not isinstance(action.node, str) or not action.node:
        return "no node named"
    if not balancers:
        return "no balancers configured: add a [[balancers]] entry to the cluster file"
    if action.kind == "weight":
        v = action.value
        if isinstance(v, bool) or not isinstance(v, int):
            return f"weight must be a whole number, got {v!r}"
        for b in balancers:
            lo, hi = weight_range(b)
            if not lo <= v <= hi:
                hint = " (nginx has no weight 0: use `drain`)" if b.kind == "nginx" and v == 0 else ""
                return f"weight {v} is out of range for {b.name} ({b.kind} accepts {lo}-{hi}){hint}"
    if action.kind == "backup" and not isinstance(action.value, bool):
        return f"backup must be on or off, got {action.value!r}"
    return None


def describe(action: "Action") -> str:
    if action.kind == "weight":
        return f"weight {action.node} {action.value}"
    if action.kind == "backup":
        return f"backup {action.node} {_onoff(action.value)}"
    return f"{action.kind} {action.node}"


def takes_out(action: "Action") -> bool:
    """Does the action take the node out of primary rotation (so the min_ready guardrail applies)?"""
    return (action.kind in ("drain", "maint") or (action.kind == "backup" and action.value is True)
            or (action.kind == "weight" and action.value == 0))


def took(action: "Action", s: ServerState, balancer_kind: str) -> bool:
    """Does this server (read back) show the action's effect?"""
    if action.kind in _STATE_OF:
        want = _STATE_OF[action.kind]
        if balancer_kind == "nginx" and want is not AdminState.READY:
            return s.admin in (AdminState.DRAIN, AdminState.MAINT)  # both are `down` in open-source nginx
        return s.admin is want
    if action.kind == "weight":
        return s.weight == action.value
    return s.backup == action.value


def field_of(action: "Action", s: ServerState) -> str:
    if action.kind in _STATE_OF:
        return f"state {s.admin.value}"
    if action.kind == "weight":
        return f"weight {s.weight}"
    return f"backup {_onoff(s.backup)}"


def wanted(action: "Action") -> str:
    if action.kind in _STATE_OF:
        return f"state {action.kind}"
    if action.kind == "weight":
        return f"weight {action.value}"
    return f"backup {_onoff(action.value)}"


def change_line(action: "Action", name: str, kind: str, before: ServerState | None, problem: str | None,
                noop: bool) -> str:
    """Plan line for one balancer: "haproxy-a: weight 3 -> 5"."""
    if problem is not None:
        return f"{name}: cannot change ({problem})"
    assert before is not None
    if noop:
        return f"{name}: {field_of(action, before)} already, no change"
    new = wanted(action).split(" ", 1)[1]
    note = " (nginx: `down` + reload)" if kind == "nginx" and action.kind in ("drain", "maint") else ""
    return f"{name}: {field_of(action, before)} -> {new}{note}"


def node_in_flight(snap: FleetSnapshot, node: str) -> int | None:
    """Requests still on `node`: max of (sessions + queue summed over balancers) and the agent's in-flight.

    A request shows in both signals, hence max, not sum. None = cannot tell (no signal at all, or a
    balancer unreadable and no agent to cover for it).
    """
    try:
        view = snap.node(node)
    except KeyError:
        return None
    sessions = [(s.active_sessions or 0) + (s.queued or 0) for s in view.servers.values()
                if s.active_sessions is not None]
    balancer_sum = sum(sessions) if sessions else None
    unreadable = any(not r.reachable for r in snap.balancers)  # its sessions are missing from the sum
    agent = None
    st = view.status
    if view.config.agent is not None and st is not None and not view.stale:
        agent = st.asr.in_flight
    if agent is None:
        return None if unreadable else balancer_sum
    return agent if balancer_sum is None else max(agent, balancer_sum)


def consequence(snap: FleetSnapshot, action: "Action") -> str:
    """ "node-3 carries 7 in-flight requests; 2 of 3 primaries stay ready" """
    n = node_in_flight(snap, action.node)
    carries = (f"{action.node} carries {n} in-flight request{'s' if n != 1 else ''}" if n is not None
               else f"{action.node}: in-flight requests unknown")
    primaries = sum(1 for v in snap.nodes if v.servers and not any(s.backup for s in v.servers.values()))
    if takes_out(action):
        staying = primaries_staying_ready(snap, (action.node,))
        return f"{carries}; {staying} of {primaries} primaries stay ready"
    if action.kind == "weight":
        return f"{carries}; new requests are shared by weight"
    return f"{carries}; {primaries_staying_ready(snap, ())} of {primaries} primaries ready now"


async def read_servers(b: Balancer) -> list[ServerState] | Exception:
    try:
        return await asyncio.to_thread(b.servers)
    except Exception as e:  # classified by the caller; an adapter bug is reported, not raised
        return e


def _call(b: Balancer, server: str, action: "Action") -> None:
    if action.kind in _STATE_OF:
        b.set_state(server, _STATE_OF[action.kind])
    elif action.kind == "weight":
        b.set_weight(server, int(action.value))  # type: ignore[arg-type]
    else:
        b.set_backup(server, bool(action.value))


async def send(b: Balancer, server: str, action: "Action") -> tuple[str, str] | None:
    """None when the balancer accepted the change, else (unreachable|rejected, one line)."""
    try:
        await asyncio.to_thread(_call, b, server, action)
    except BalancerUnreachable as e:
        return "unreachable", one_line(e, b.name)
    except BalancerError as e:  # refused, unsupported
        return "rejected", one_line(e, b.name)
    except Exception as e:  # an adapter bug: report it by balancer, never a traceback
        return "rejected", f"{type(e).__name__}: {one_line(e, b.name)}"
    return None


def summarize(action: "Action", results: Sequence[Any], kinds: dict[str, str]) -> tuple[str, str]:
    """(outcome, one line) from per-balancer results (BalancerOutcome) and their kinds."""
    desc = describe(action)
    good = [r.balancer for r in results if r.ok]
    bad = [r for r in results if not r.ok]
    already = [n for n in good if kinds.get(n) == "already"]
    note = f" ({', '.join(already)}: already so)" if already else ""
    if not bad:
        return "done", f"{desc}: done on {', '.join(good)}{note}"
    why = "; ".join(f"{r.balancer}: {r.error}" for r in bad)
    if good:
        return "partial", (f"partial: {desc} took on {', '.join(good)}{note}; "
                           f"NOT on {', '.join(r.balancer for r in bad)} ({why})")
    if all(kinds.get(r.balancer) == "unreachable" for r in bad):
        return "unreachable", f"unreachable: {desc} changed nothing ({why})"
    return "rejected", f"rejected: {desc} changed nothing ({why})"


def unreadable(problems: Sequence[tuple[str, str, str]]) -> tuple[str, str]:
    """(outcome, line) when no balancer can be acted on; problems: (balancer, kind, message)."""
    why = "; ".join(f"{n}: {m}" for n, _, m in problems)
    if all(k == "unreachable" for _, k, _ in problems):
        return "unreachable", f"unreachable: no balancer can be reached, nothing changed ({why})"
    return "rejected", f"rejected: no balancer can be changed, nothing changed ({why})"


def _onoff(v: Any) -> str:
    return "on" if v else "off"
