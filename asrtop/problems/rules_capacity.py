"""PURE: serving rules: an ASR service down while a balancer still sends it requests, only backups serving,
fewer ready primaries than cluster.min_ready (the same count the min_ready guard uses)."""

from __future__ import annotations

from typing import Iterator

from asrtop.balancers.base import AdminState, Health
from asrtop.fleet import FleetSnapshot, NodeView, primaries_staying_ready
from asrtop.problems.engine import Rule, RuleContext
from asrtop.problems.model import Finding, Severity
from asrtop.problems.state_facts import (clear_after, down_for, live_troubled, names, per_snapshot,
                                         sending_traffic, sends)


def find_down_with_traffic(ctx: RuleContext) -> Iterator[Finding]:
    for n, st in live_troubled(ctx.snapshot):
        if n.changing or st.asr.up is not False:
            continue
        balancers = sending_traffic(n)
        if balancers:
            why = f" ({st.asr.error})" if st.asr.error else ""
            yield Finding("asr-down-with-traffic", n.name, Severity.CRITICAL,
                          f"has its ASR service down{why} while {sends(balancers)} it requests",
                          f"asrtop drain {n.name}")


@per_snapshot
def _capacity(snap: FleetSnapshot) -> tuple[int, list[NodeView], list[str]] | None:
    """(ready primaries as the min_ready guard counts them, the primary nodes, the backups serving); None when
    the balancers cannot tell: none read, or a node's server is being re-created right now (its few seconds
    out are that change)."""
    if not any(b.reachable for b in snap.balancers):
        return None
    primaries, backups = [], []
    for n in snap.nodes:
        if n.changing:
            return None
        backup = n.backup  # None: no server, or a backup on some balancers only
        if backup is False:
            primaries.append(n)
        elif backup and any(s.admin is AdminState.READY and s.health is not Health.DOWN
                            for s in n.servers.values()):
            backups.append(n.name)
    return primaries_staying_ready(snap, ()), primaries, backups


def _ready_hint(primaries: list[NodeView]) -> str | None:
    """`asrtop ready NODE` for a primary taken out (drain or maint) whose health check does not fail."""
    for n in primaries:
        if n.admin_state in ("drain", "maint") and n.health != "down":
            return f"asrtop ready {n.name}"
    return None


def find_backups_only(ctx: RuleContext) -> Iterator[Finding]:
    cap = _capacity(ctx.snapshot)
    if cap is None:
        return
    ready, primaries, backups = cap
    if ready == 0 and primaries and backups:
        yield Finding("backups-only", None, Severity.CRITICAL,
                      f"only backups serve: 0 of {len(primaries)} primaries ready; {names(backups)} "
                      f"carr{'ies' if len(backups) == 1 else 'y'} the traffic", _ready_hint(primaries))


def find_below_min_ready(ctx: RuleContext) -> Iterator[Finding]:
    cap = _capacity(ctx.snapshot)
    if cap is None:
        return
    ready, primaries, backups = cap
    min_ready = int(ctx.settings.min_ready)
    if ready >= min_ready or (ready == 0 and primaries and backups):  # backups-only says that one
        return
    yield Finding("below-min-ready", None, Severity.CRITICAL,
                  f"{ready} of {len(primaries)} primaries ready, fewer than min_ready {min_ready}",
                  _ready_hint(primaries))


CAPACITY_RULES = (
    Rule("asr-down-with-traffic", "ASR down while a balancer sends it requests", find_down_with_traffic,
         down_for, clear_after),
    Rule("backups-only", "only backups serve", find_backups_only, down_for, clear_after),
    Rule("below-min-ready", "fewer ready primaries than min_ready", find_below_min_ready, down_for, clear_after),
)
