"""PURE: balancer rules: unreachable, disagreeing about a node, a ready node's health check DOWN, a change
asrtop made that a balancer lost (reload, agent check, someone else), a drain nobody ended.

A node whose server a running change re-creates (NodeView.changing) is that change, not a problem.
"""

from __future__ import annotations

from typing import Iterator

from asrtop.balancers.base import AdminState, Health
from asrtop.fleet import DRIFT_AGENT, DRIFT_RESTART, MIXED, Drift, FleetSnapshot, NodeView, not_down
from asrtop.problems.engine import Rule, RuleContext
from asrtop.problems.model import Finding, Severity
from asrtop.problems.state_facts import at_once, clear_after, down_for, names, per_snapshot
from asrtop.timewords import clock, since, span

SAFER = ("maint", "drain", "ready")  # a disagreement is settled on the state that sends the node the least


def find_unreachable(ctx: RuleContext) -> Iterator[Finding]:
    for b in ctx.snapshot.balancers:
        if b.error is not None:
            yield Finding("balancer-unreachable", None, Severity.CRITICAL, f"cannot be read: {b.problem}",
                          subject=b.name)


@per_snapshot
def _not_plain(snap: FleetSnapshot) -> tuple[NodeView, ...]:
    """The nodes some balancer has out of rotation (not ready) or failing its health check, in fleet order:
    the only ones disagree, health-down and forgotten-drain can fire on (one pass per snapshot; most of
    1,000 nodes are ready and up everywhere)."""
    out = []
    for n in snap.nodes:  # from the node's figures (worked out once per node, from all its servers)
        admin, health = n.admin_state, n.health
        if admin == "unknown":  # no server
            continue
        if admin != "ready" or health == "down" or (health == MIXED and not not_down(n)):
            out.append(n)
    return tuple(out)


def find_disagree(ctx: RuleContext) -> Iterator[Finding]:
    for n in _not_plain(ctx.snapshot):
        if len(n.servers) < 2 or n.changing or n.admin_state != MIXED:
            continue
        by_state: dict[str, list[str]] = {}
        for b, s in sorted(n.servers.items()):
            by_state.setdefault(s.admin.value, []).append(b)
        said = "; ".join(f"{state} on {names(by_state[state])}" for state in SAFER if state in by_state)
        safer = next(state for state in SAFER if state in by_state)
        yield Finding("balancer-disagree", n.name, Severity.WARNING, f"has balancers that disagree: {said}",
                      f"asrtop {safer} {n.name}")


def find_health_down(ctx: RuleContext) -> Iterator[Finding]:
    for n in _not_plain(ctx.snapshot):
        if n.changing:
            continue
        down = [b for b, s in n.servers.items() if s.health is Health.DOWN and s.admin is AdminState.READY]
        if down:
            down.sort()
            yield Finding("health-down", n.name, Severity.WARNING,
                          f"fails its health check on {names(down)}: ready there, but it gets no requests")


def _server_nodes(snap: FleetSnapshot) -> dict[tuple[str, str], str | None]:
    """(balancer, server name) -> node name; None for a node being re-created (its drift is that change)."""
    return {(b, s.name): (None if n.changing else n.name) for n in snap.nodes for b, s in n.servers.items()}


def _cause(d: Drift) -> str:
    if d.cause == DRIFT_RESTART and d.restarted_at is not None:
        return f"{d.balancer} restarted at {clock(d.restarted_at)} and started from its configuration"
    if d.cause == DRIFT_AGENT:
        return "its agent check (running) answered it"
    return "changed outside asrtop (another tool or an operator)"


def find_change_lost(ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.snapshot.drift:
        return
    nodes = _server_nodes(ctx.snapshot)
    for d in ctx.snapshot.drift:
        key = (d.balancer, d.server)
        if key in nodes and nodes[key] is None:
            continue
        node = nodes.get(key)
        back_in = d.field == "admin" and d.now == "ready"  # a drained node takes requests again
        who = f" ({d.user})" if d.user else ""
        text = f"lost its {d.what} on {d.balancer} (now {d.now}): {_cause(d)}; asrtop set it at {clock(d.at)}{who}"
        verb, _, arg = d.what.partition(" ")
        action = f"asrtop {verb} {node}" + (f" {arg}" if arg else "") if node else None
        subject = f"{d.balancer} {d.field}" if node else f"{d.server} on {d.balancer} ({d.field})"
        yield Finding("runtime-change-lost", node, Severity.CRITICAL if back_in else Severity.WARNING, text,
                      action, subject)


OUT_WORDS = {"drain": "drained", "maint": "in maintenance"}


def find_forgotten_drain(ctx: RuleContext) -> Iterator[Finding]:
    """Drained or in maint for longer than forgotten_drain_after, counted from when asrtop's audit log says the
    drain was made (FleetSnapshot.drains) or else from when this rule first saw it (ctx.memory). So a one-shot
    `asrtop check` calls a drain forgotten only on the audit log's word; the console also on its own watch.
    It times itself (raise_after 0): the tracker's since would start at the first look."""
    snap, seen, limit = ctx.snapshot, ctx.memory, ctx.settings.forgotten_drain_after
    records = {(r.balancer, r.server, r.state): r for r in snap.drains}
    out_now = set()
    for n in _not_plain(snap):
        if all(s.admin is AdminState.READY for s in n.servers.values()) or n.changing:
            continue
        state = n.admin_state
        if state not in OUT_WORDS:
            continue
        out_now.add(n.name)
        if seen.get(n.name, (None,))[0] != state:
            seen[n.name] = (state, ctx.now)
        made = [r for b, s in n.servers.items() if (r := records.get((b, s.name, state))) is not None]
        first = min(made, key=lambda r: r.at) if made else None
        began = first.at if first is not None else seen[n.name][1]
        if ctx.now - began < limit:
            continue
        by = f" by {first.user}" if first is not None and first.user else ""
        yield Finding("forgotten-drain", n.name, Severity.WARNING,
                      f"has been {OUT_WORDS[state]} for {span(ctx.now - began)} (since {since(began, ctx.now)}{by})",
                      f"asrtop ready {n.name}")
    for gone in seen.keys() - out_now:
        del seen[gone]


BALANCER_RULES = (
    Rule("balancer-unreachable", "balancer unreachable", find_unreachable, down_for, clear_after),
    Rule("balancer-disagree", "balancers disagree about a node", find_disagree, down_for, clear_after),
    Rule("health-down", "health check DOWN", find_health_down, down_for, clear_after),
    Rule("runtime-change-lost", "runtime change lost", find_change_lost, down_for, clear_after),
    Rule("forgotten-drain", "forgotten drain", find_forgotten_drain, at_once, clear_after),
)
