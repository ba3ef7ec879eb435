"""Every operator action goes through here: to ALL configured balancers, read back, audited.

API shared by the CLI (asrtop/commands.py) and the TUI:

    ctl = Controller(config, balancers, source=fleet_source)   # audit defaults to config.audit_log
    plan = await ctl.plan(Action("drain", "node-3"))            # for a confirmation: consequence + changes
    result = await ctl.apply(Action("drain", "node-3"))         # outcome, one-line message, exit_code
    await ctl.wait_drained("node-3", timeout=600, on_progress=cb)

The rules (validation, read-back checks, wording) live in asrtop/control_rules.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Literal, Sequence

from asrtop import control_rules as rules
from asrtop.balancers.base import Balancer, BalancerUnreachable, ServerState
from asrtop.config import ClusterConfig
from asrtop.exitcodes import (
    BAD_INPUT,
    ERROR,
    OK,
    PARTIAL,
    REFUSED_BY_BALANCER,
    REFUSED_GUARDRAIL,
    UNREACHABLE,
)
from asrtop.fleet import FleetSnapshot, guardrail_refusal, primaries_staying_ready
from asrtop.oplock import LockTimeout, action_lock, lock_path

if TYPE_CHECKING:
    from asrtop.audit import AuditLog
    from asrtop.sources import FleetSource

ActionKind = Literal["drain", "ready", "maint", "weight", "backup"]
Outcome = Literal["done", "dry-run", "refused", "partial", "unreachable", "rejected", "bad-input"]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    node: str
    value: int | bool | None = None  # weight for "weight", on/off for "backup"


@dataclass(frozen=True)
class BalancerOutcome:
    balancer: str
    ok: bool
    error: str | None = None
    before: ServerState | None = None
    after: ServerState | None = None  # read back after the change


@dataclass(frozen=True)
class Plan:
    """What an action would do, for confirmations and --dry-run: no change made."""

    action: Action
    consequence: str  # e.g. "node-3 carries 7 in-flight requests; 2 of 3 primaries stay ready"
    refusal: str | None  # guardrail / read-only / bad input refusal, one line; None = allowed
    changes: tuple[str, ...] = ()  # per balancer: "haproxy-a: weight 3 -> 5"
    refusal_outcome: Outcome | None = None  # "refused" | "bad-input" | "unreachable" | "rejected" with refusal


@dataclass(frozen=True)
class ActionResult:
    action: Action
    outcome: Outcome
    message: str  # one line for the operator
    balancers: tuple[BalancerOutcome, ...] = field(default_factory=tuple)
    exit_code: int = 0
    plan: Plan | None = None  # the plan it was made from (dry-run prints its change lines)


ProgressCallback = Callable[[int | None, float], None]  # (in-flight now or None if unknown, seconds waited)


# ---- implementation -------------------------------------------------------------------------------

_EXIT = {"done": OK, "dry-run": OK, "refused": REFUSED_GUARDRAIL, "partial": PARTIAL,
         "unreachable": UNREACHABLE, "rejected": REFUSED_BY_BALANCER, "bad-input": BAD_INPUT}
DRAIN_POLL_SECONDS = 0.5
node_in_flight = rules.node_in_flight  # re-exported: the TUI shows the same count drain --wait follows


def exit_code_for(outcome: str) -> int:
    return _EXIT.get(outcome, ERROR)


@dataclass(frozen=True)
class _Target:
    """One balancer's part in an action: which server to change, or why it cannot be changed."""

    balancer: Balancer
    server: str | None = None  # ServerState.name on that balancer
    before: ServerState | None = None
    problem: str | None = None  # cannot change it: unreachable, refused the read, no such server
    problem_kind: str | None = None  # "unreachable" | "rejected" | "missing"
    noop: bool = False  # already in the wanted state


@dataclass(frozen=True)
class _Prepared:
    plan: Plan
    targets: tuple[_Target, ...] = ()


class Controller:
    """Actions across ALL configured balancers: plan, apply (concurrently), read back, audit, wait drained.

    `source` gives the snapshots plans are made from (default: the balancers alone, no agents); pass the
    agent-backed LiveFleetSource so `wait_drained` also follows the agent's in-flight count.
    `audit` defaults to an AuditLog at config.audit_log. `read_only` (or config.read_only) refuses every
    action here, whatever the UI shows.
    """

    def __init__(self, config: ClusterConfig, balancers: Sequence[Balancer], source: "FleetSource | None" = None,
                 audit: "AuditLog | None" = None, read_only: bool = False):
        from asrtop.audit import AuditLog
        from asrtop.sources.live import LiveFleetSource

        self.config = config
        self.balancers = list(balancers)
        self.source = source if source is not None else LiveFleetSource(config, None, self.balancers)
        self.audit = audit if audit is not None else AuditLog(config.audit_log)
        self.read_only = read_only or config.read_only

    # -- plan -----------------------------------------------------------------------------------------

    async def plan(self, action: Action, force: bool = False) -> Plan:
        """What `apply` would do now; `refusal` set when it would refuse. Changes nothing, audits nothing."""
        return (await self._prepare(action, force)).plan

    async def _prepare(self, action: Action, force: bool) -> _Prepared:
        def refuse(outcome: str, why: str, targets: Sequence[_Target] = ()) -> _Prepared:
            return _Prepared(Plan(action, "", why, (), outcome), tuple(targets))  # type: ignore[arg-type]

        if self.read_only:
            return refuse("refused", f"refused: read-only mode, {rules.describe(action)} not sent "
                                     "(started with --read-only or cluster.read_only = true)")
        bad = rules.validate(action, self.balancers)
        if bad:
            return refuse("bad-input", bad)
        snap = await self.source.snapshot()
        failed = {r.name for r in snap.balancers if not r.reachable}
        # The snapshot keeps a failed read as text only: read those once more, typed, to classify them.
        retry = [b for b in self.balancers if b.name in failed]
        retried = dict(zip((b.name for b in retry), await asyncio.gather(*(rules.read_servers(b) for b in retry))))
        try:
            view = snap.node(action.node)
        except KeyError:
            view = None
        if view is None and retry and len(retry) == len(self.balancers) and \
                all(isinstance(r, Exception) for r in retried.values()):
            probs = [(n, _kind_of(e), rules.one_line(e, n)) for n, e in retried.items()]
            return refuse(*rules.unreadable(probs))
        if view is None:
            known = ", ".join(n.name for n in snap.nodes) or "none"
            return refuse("bad-input", f"unknown node {action.node!r} (known: {known})")
        targets: list[_Target] = []
        for b in self.balancers:
            res = retried.get(b.name)
            if isinstance(res, Exception):
                targets.append(_Target(b, problem=rules.one_line(res, b.name), problem_kind=_kind_of(res)))
                continue
            server = view.servers.get(b.name)
            if server is None and isinstance(res, list):  # failed in the snapshot, read on the retry
                server = next((s for s in res if view.config.matches(s)), None)
            if server is None:
                targets.append(_Target(b, problem=f"has no server for {action.node}", problem_kind="missing"))
                continue
            targets.append(_Target(b, server.name, server, noop=rules.took(action, server, b.kind)))
        if all(t.problem_kind == "missing" for t in targets):
            where = ", ".join(b.name for b in self.balancers)
            return refuse("bad-input", f"{action.node} is not a server on any balancer ({where})", targets)
        if all(t.problem is not None for t in targets):
            return refuse(*rules.unreadable([(t.balancer.name, t.problem_kind or "rejected", t.problem or "")
                                             for t in targets]), targets)
        changes = tuple(rules.change_line(action, t.balancer.name, t.balancer.kind, t.before, t.problem, t.noop)
                        for t in targets)
        consequence = rules.consequence(snap, action)
        refusal = None
        if not force and rules.takes_out(action):
            # Only a node that counts now can bring the count down (re-draining a drained node is fine).
            if primaries_staying_ready(snap, (action.node,)) < primaries_staying_ready(snap, ()):
                refusal = guardrail_refusal(snap, (action.node,), self.config.min_ready)
        return _Prepared(Plan(action, consequence, refusal, changes, "refused" if refusal else None),
                         tuple(targets))

    # -- apply ----------------------------------------------------------------------------------------

    async def apply(self, action: Action, force: bool = False, dry_run: bool = False) -> ActionResult:
        """Send to every balancer at once, read each back, audit; never raises for operator errors.

        Serialised with every other asrtop process sharing the audit log (asrtop.oplock), so two operators'
        conflicting actions cannot interleave per balancer and leave an HA pair disagreeing."""
        audit_path = getattr(self.audit, "path", None)
        if dry_run or self.read_only or audit_path is None:
            return await self._apply(action, force, dry_run)
        try:
            async with action_lock(lock_path(audit_path)):
                return await self._apply(action, force, dry_run)
        except LockTimeout as e:
            res = ActionResult(action, "refused", f"refused: {e}", (), exit_code_for("refused"))
            return self._audited(res, force, dry_run)

    async def _apply(self, action: Action, force: bool, dry_run: bool) -> ActionResult:
        prep = await self._prepare(action, force)
        plan = prep.plan
        if plan.refusal is not None:
            outcome = plan.refusal_outcome or "refused"
            res = ActionResult(action, outcome, plan.refusal, _untouched(prep.targets, "not sent"),
                               exit_code_for(outcome), plan)
        elif dry_run:
            msg = f"dry run, nothing changed: {rules.describe(action)}: {plan.consequence}"
            res = ActionResult(action, "dry-run", msg, _untouched(prep.targets, None), OK, plan)
        else:
            res = await self._execute(action, prep)
        return self._audited(res, force, dry_run)

    async def _execute(self, action: Action, prep: _Prepared) -> ActionResult:
        todo = [t for t in prep.targets if t.problem is None and not t.noop]
        sent = await asyncio.gather(*(rules.send(t.balancer, t.server or "", action) for t in todo))
        accepted = [t for t, err in zip(todo, sent) if err is None]
        back = dict(zip((t.balancer.name for t in accepted),
                        await asyncio.gather(*(rules.read_servers(t.balancer) for t in accepted))))
        outcomes: dict[str, BalancerOutcome] = {}
        kinds: dict[str, str] = {}  # changed | already | unreachable | rejected | missing | disagrees
        for t, err in zip(todo, sent):
            name = t.balancer.name
            if err is not None:
                kinds[name], outcomes[name] = err[0], BalancerOutcome(name, False, err[1], t.before)
                continue
            res = back[name]
            after = None if isinstance(res, Exception) else next((s for s in res if s.name == t.server), None)
            if isinstance(res, Exception):
                error = f"sent, but the read-back failed: {rules.one_line(res, name)}"
            elif after is None:
                error = f"sent, but the read-back has no server {t.server}"
            elif not rules.took(action, after, t.balancer.kind):
                error = f"sent, but the read-back shows {rules.field_of(action, after)}, not {rules.wanted(action)}"
            else:
                error = None
            kinds[name] = "changed" if error is None else "disagrees"
            outcomes[name] = BalancerOutcome(name, error is None, error, t.before, after)
        for t in prep.targets:
            name = t.balancer.name
            if name in outcomes:
                continue
            if t.noop:
                kinds[name], outcomes[name] = "already", BalancerOutcome(name, True, None, t.before, t.before)
            else:
                kinds[name] = t.problem_kind or "rejected"
                outcomes[name] = BalancerOutcome(name, False, t.problem, t.before)
        ordered = tuple(outcomes[b.name] for b in self.balancers)
        outcome, message = rules.summarize(action, ordered, kinds)
        return ActionResult(action, outcome, message, ordered, exit_code_for(outcome), prep.plan)  # type: ignore[arg-type]

    def _audited(self, res: ActionResult, force: bool, dry_run: bool) -> ActionResult:
        from asrtop.audit import AuditError, record_for

        try:
            self.audit.append(record_for(res, force=force, dry_run=dry_run))
        except AuditError as e:  # the balancers may have changed already: say so, never hide the result
            return replace(res, message=f"{res.message} (WARNING: {e})")
        return res

    # -- wait until drained ---------------------------------------------------------------------------

    async def in_flight(self, node: str) -> int | None:
        return rules.node_in_flight(await self.source.snapshot(), node)

    async def wait_drained(self, node: str, timeout: float, on_progress: ProgressCallback | None = None,
                           interval: float = DRAIN_POLL_SECONDS) -> bool:
        """True once `node` has nothing in flight; False at `timeout` seconds. Polls every `interval`.

        In flight = max(sessions + queue summed over all balancers, the agent's in-flight when the node
        has an agent): a request counts in both. Unknown (None) never counts as empty.
        """
        start = time.monotonic()
        while True:
            n = await self.in_flight(node)
            waited = time.monotonic() - start
            if on_progress is not None:
                on_progress(n, waited)
            if n == 0:
                return True
            if waited >= timeout:
                return False
            await asyncio.sleep(max(0.0, min(interval, timeout - waited)))


def _kind_of(e: BaseException) -> str:
    return "unreachable" if isinstance(e, BalancerUnreachable) else "rejected"


def _untouched(targets: Sequence[_Target], why: str | None) -> tuple[BalancerOutcome, ...]:
    """Per-balancer lines of an action that sent nothing: refused (why given), or a dry run (ok = could go)."""
    return tuple(BalancerOutcome(t.balancer.name, why is None and t.problem is None, t.problem or why, t.before)
                 for t in targets)
