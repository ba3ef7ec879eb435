"""PURE: a rollout's plan from one fleet snapshot and the settings (RolloutEngine.plan does the reading).

The order, the batches, the capacity left while a batch is out, the target digest and every refusal
(unknown node, min_ready over a batch, a node without an agent) are decided here, once, for the CLI's
--dry-run and the console's confirmation alike.
"""

from __future__ import annotations

import re
from typing import Sequence

from asrtop.config import ClusterConfig
from asrtop.control.model import Refusal
from asrtop.control.rollout_model import (
    TARGET_FROM_CONFIG,
    TARGET_FROM_FIRST,
    TARGET_FROM_FLAG,
    PlannedNode,
    RolloutPlan,
    RolloutSettings,
)
from asrtop.control.rules import min_ready_refusal, read_only_line, unknown_node
from asrtop.fleet import FleetSnapshot, NodeView, primaries_staying_ready

DIGEST = re.compile(r"[0-9a-f]{64}")


def check_digest(text: str) -> str:
    """A model digest as the agents report it (64 lower-case hex); ValueError: one line."""
    d = text.strip().lower()
    if not DIGEST.fullmatch(d):
        raise ValueError(f"--expect-model must be a SHA-256 digest (64 hex digits), got {text!r:.80}")
    return d


def check_settings(s: RolloutSettings) -> str | None:
    """One line saying which setting is unusable, or None."""
    if not s.hook:
        return ("no hook: give --hook \"CMD ARGS\" (an argv template: {node} {server} {address} {host} {agent}) "
                "or set hook in the cluster file's [rollout] table")
    if s.max_unavailable < 1:
        return f"--max-unavailable must be 1 or more, got {s.max_unavailable}"
    for name in ("drain_timeout", "hook_timeout", "health_timeout", "max_rtf"):
        if not getattr(s, name) > 0:
            return f"--{name.replace('_', '-')} must be > 0, got {getattr(s, name):g}"
    if s.ramp < 0:
        return f"--ramp must be 0 or more seconds, got {s.ramp:g}"
    if s.expect_model is not None:
        try:
            check_digest(s.expect_model)
        except ValueError as e:
            return str(e)
    return None


def order(views: Sequence[NodeView]) -> list[NodeView]:
    """Backups first (they carry nothing while the primaries are up), then the least loaded, ties by name."""
    return sorted(views, key=lambda v: (v.backup is not True, v.in_flight is None, v.in_flight or 0, v.name))


def batches(names: Sequence[str], size: int) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(names[i:i + size]) for i in range(0, len(names), max(1, size)))


def planned(v: NodeView) -> PlannedNode:
    return PlannedNode(v.name, v.backup, v.weight, v.in_flight, v.model_digest, v.config.address, v.config.agent)


def capacity_line(snap: FleetSnapshot, groups: Sequence[Sequence[str]], min_ready: int) -> str:
    """The worst batch: "while a batch is out, 2 of 3 primaries stay ready (min_ready 1)"."""
    primaries = sum(1 for v in snap.nodes if v.servers and not any(s.backup for s in v.servers.values()))
    staying = min((primaries_staying_ready(snap, g) for g in groups), default=primaries_staying_ready(snap, ()))
    what = "a batch is" if any(len(g) > 1 for g in groups) else "a node is"
    return f"while {what} out, {staying} of {primaries} primaries stay ready (min_ready {min_ready})"


def ramp_notes(settings: RolloutSettings, balancers: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """--ramp on a balancer that cannot step weights cheaply (nginx: a reload per step): said, not done."""
    if settings.ramp <= 0:
        return ()
    cannot = [name for name, kind in balancers if kind != "haproxy"]
    if not cannot:
        return ()
    return (f"{', '.join(cannot)} cannot ramp weights (a reload per step): no ramp, every node gets its weight "
            f"back at once",)


def can_ramp(settings: RolloutSettings, balancers: Sequence[tuple[str, str]]) -> bool:
    return settings.ramp > 0 and all(kind == "haproxy" for _, kind in balancers)


def build_plan(snap: FleetSnapshot, config: ClusterConfig, wanted: Sequence[str], settings: RolloutSettings,
               balancers: Sequence[tuple[str, str]], read_only: bool = False) -> RolloutPlan:
    """The plan over `wanted` (empty: every node of the snapshot). `balancers`: (name, kind) each."""
    known = [v.name for v in snap.nodes]
    refusals: list[Refusal] = []
    bad = check_settings(settings)
    if bad:
        refusals.append(Refusal("bad-input", bad))
    unknown = [n for n in dict.fromkeys(wanted) if n not in known]
    if unknown:
        refusals.append(Refusal("bad-input", "; ".join(unknown_node(n, known) for n in unknown)))
    if read_only:
        refusals.append(Refusal("refused", f"refused: {read_only_line('a rollout')}"))
    unread = [b for b in snap.balancers if not b.reachable]
    if unread:  # neither the capacity nor a node's state can be checked on it: the first drain would fail
        refusals.append(Refusal("unreachable", "unreachable: " + "; ".join(f"{b.name}: {b.problem}" for b in unread)
                                + "; nothing changed"))
    chosen = set(wanted) if wanted else set(known)
    views = order([v for v in snap.nodes if v.name in chosen])
    size = max(1, settings.max_unavailable)
    groups = batches([v.name for v in views], size)
    for g in groups:
        r = min_ready_refusal(snap, g, config.min_ready)
        if r is not None:
            refusals.append(Refusal("refused", f"{r.line} (a batch of --max-unavailable {size}; nothing changed)"))
            break
    blind = [v.name for v in views if not v.config.agent]
    if blind:
        refusals.append(Refusal("refused", f"refused: {', '.join(blind)} has no agent: its health and model cannot "
                                           f"be verified after the hook (add agent = \"http://HOST:PORT\" to its "
                                           f"[[nodes]] entry, or leave it out of the rollout)"))
    nowhere = [v.name for v in views if not v.config.address]
    if nowhere:
        refusals.append(Refusal("refused", f"refused: {', '.join(nowhere)} has no address: the canary cannot be "
                                           f"sent straight to it (add address = \"HOST:PORT\" to its [[nodes]] "
                                           f"entry)"))
    if settings.expect_model and not bad:
        target, source = check_digest(settings.expect_model), TARGET_FROM_FLAG
    elif config.model_sha256:
        target, source = config.model_sha256, TARGET_FROM_CONFIG
    else:
        target, source = None, TARGET_FROM_FIRST
    return RolloutPlan(tuple(planned(v) for v in views), groups, settings, target, source,
                       capacity_line(snap, groups, config.min_ready), ramp_notes(settings, balancers),
                       tuple(refusals))
