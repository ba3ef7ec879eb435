"""A drain's cutoff: after S seconds, end what is still open on the drained node through every balancer.

HAProxy ends one server's sessions with `shutdown sessions server B/S` (balancers.base.EndsSessions);
open-source nginx cannot (drain_words.NGINX_CUT), so a cutoff is refused up front, before the drain is sent,
when any configured balancer cannot cut. The cut is said before it is sent (how many streams, on which
node), sent to every balancer at once, reported per balancer and written to the audit log (action "cut").
It changes no server state, so there is nothing to journal: a balancer that failed is named, and the cut
can simply be repeated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Sequence

from asrtop.balancers.base import Balancer, BalancerError, EndsSessions
from asrtop.control.audit import AuditError, now_text, state_record, who
from asrtop.control.drain_words import cut_split, cutoff_refusal, cutting_line, plural
from asrtop.control.oplock import LockTimeout, action_lock, lock_path
from asrtop.control.rules import one_line
from asrtop.exitcodes import OK, PARTIAL, REFUSED_GUARDRAIL, UNREACHABLE

CUT = "cut"  # the audit line's action


def refusal(balancers: Sequence[Balancer]) -> str | None:
    """Why a cutoff cannot be honoured by these balancers (one line), None when every one can cut."""
    return cutoff_refusal([(b.name, b.kind, isinstance(b, EndsSessions)) for b in balancers])


@dataclass(frozen=True)
class CutResult:
    outcome: str  # done | partial | unreachable | refused | nothing
    message: str  # one line
    streams: int | None  # the number announced (None: the agent reports no streams)
    requests: int | None
    exit_code: int = OK


async def cut_open(ctl, node: str, cutoff: float, say: Callable[[str], None]) -> CutResult:
    """End what is still open on `node` (a drain that began `cutoff` seconds ago): `say` gets the announcement
    before anything is sent. Refused when the node is no longer drained on every balancer (a cut would end
    the traffic of a node in rotation). `ctl` is the Controller (its balancers, source, audit)."""
    snap = await ctl.source.snapshot()
    try:
        view = snap.node(node)
    except KeyError:
        return CutResult("refused", f"not cut: {node} is no longer in the fleet", None, None, REFUSED_GUARDRAIL)
    if not view.servers or any(s.admin.value == "ready" for s in view.servers.values()):
        return CutResult("refused", f"not cut: {node} is not drained on every balancer (now "
                                    f"{view.admin_state})", None, None, REFUSED_GUARDRAIL)
    streams, requests = cut_split(view)
    if streams == 0 and not requests:
        return CutResult("nothing", f"nothing to cut: {node} is empty", 0, requests)
    say(cutting_line(node, cutoff, streams, requests))
    targets = [(b, view.servers.get(b.name)) for b in ctl.balancers]
    try:
        async with action_lock(lock_path(ctl.audit.path), on_wait=say):
            sent = await asyncio.gather(*(_cut(b, s.name if s is not None else None) for b, s in targets))
    except LockTimeout as e:
        return CutResult("refused", f"not cut: {e}", streams, requests, REFUSED_GUARDRAIL)
    good = [b.name for (b, _), err in zip(targets, sent) if err is None]
    bad = [(b.name, err) for (b, _), err in zip(targets, sent) if err is not None]
    what = f"{plural(streams, 'stream')} on {node}" if streams is not None else f"the sessions on {node}"
    if not bad:
        outcome, code = "done", OK
        message = f"cut {what} after {cutoff:g} s: done on {', '.join(good)}"
    else:
        why = "; ".join(f"{n}: {e}" for n, e in bad)
        outcome, code = ("partial", PARTIAL) if good else ("unreachable", UNREACHABLE)
        message = (f"partial: cut {what} on {', '.join(good)}; NOT on {', '.join(n for n, _ in bad)} ({why})"
                   if good else f"not cut: {what} ({why})")
    record = {"time": now_text(), "user": who(), "action": CUT, "node": node, "value": cutoff, "force": False,
              "forced": False, "dry_run": False, "outcome": outcome, "message": message, "streams": streams,
              "requests": requests,
              "balancers": [{"name": b.name, "ok": err is None, "error": err, "before": state_record(s),
                             "after": None} for (b, s), err in zip(targets, sent)]}
    try:
        ctl.audit.append(record)
    except AuditError as e:
        message += f" (WARNING: {e})"
    return CutResult(outcome, message, streams, requests, code)


async def _cut(b: Balancer, server: str | None) -> str | None:
    """None when the balancer ended the server's sessions, else one line why not."""
    if server is None:
        return "has no server for the node"
    if not isinstance(b, EndsSessions):
        return "cannot end one server's sessions"
    try:
        await asyncio.to_thread(b.shutdown_sessions, server)
    except BalancerError as e:  # unreachable, refused
        return one_line(e, b.name)
    except Exception as e:  # an adapter bug: reported by balancer, never a traceback
        return f"{type(e).__name__}: {one_line(e, b.name)}"
    return None
