"""The action model, in one leaf module: kinds, outcomes and their exit codes, Action, Plan, results.

The CLI, the console, the audit log and the drift watch import these names from here; nobody else spells
out the kinds or the outcomes. Imports nothing of asrtop but the balancer state and the exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from asrtop.balancers.base import AdminState, ServerState
from asrtop.exitcodes import (
    BAD_INPUT,
    ERROR,
    INTERRUPTED,
    OK,
    PARTIAL,
    REFUSED_BY_BALANCER,
    REFUSED_GUARDRAIL,
    UNREACHABLE,
)

ActionKind = Literal["drain", "ready", "maint", "weight", "backup"]
ACTION_KINDS: tuple[str, ...] = get_args(ActionKind)
STATE_ACTIONS: dict[str, AdminState] = {"drain": AdminState.DRAIN, "ready": AdminState.READY,
                                        "maint": AdminState.MAINT}
# The server field each kind sets (the drift watch compares it with what a balancer shows now).
FIELD_OF_KIND: dict[str, str] = {"drain": "admin", "ready": "admin", "maint": "admin", "weight": "weight",
                                 "backup": "backup"}

# "interrupted": a signal (Ctrl+C, SIGTERM, SIGHUP) stopped the change between two steps, or asrtop was killed
# in the middle of one (the audit line `asrtop recover` writes for it).
Outcome = Literal["done", "dry-run", "refused", "partial", "unreachable", "rejected", "bad-input", "interrupted"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
FAILED_OUTCOMES = frozenset({"refused", "partial", "unreachable", "rejected", "bad-input", "interrupted"})
EXIT_CODES: dict[str, int] = {"done": OK, "dry-run": OK, "refused": REFUSED_GUARDRAIL, "partial": PARTIAL,
                              "unreachable": UNREACHABLE, "rejected": REFUSED_BY_BALANCER, "bad-input": BAD_INPUT,
                              "interrupted": INTERRUPTED}

# Guards that may refuse an action which `force` overrides (read-only refusals are "refused" too, but
# the controller refuses them before any guard and force never passes them).
GUARD_MIN_READY = "min_ready"
GUARD_MODEL = "model"
GUARD_READ_ONLY = "read_only"
GUARD_INTERRUPTED = "interrupted"  # the node has a change an interrupted asrtop left half-done: recover first


# How a refusal's override is named after its line: the CLI's flag here; the console names its key instead.
CLI_FORCE = "use --force"


def exit_code_for(outcome: str) -> int:
    return EXIT_CODES.get(outcome, ERROR)


@dataclass(frozen=True)
class Action:
    """One change asked for: a kind, a node and its value."""

    kind: ActionKind
    node: str
    value: int | bool | None = None  # weight for "weight", on/off for "backup"


@dataclass(frozen=True)
class Refusal:
    """Why an action would not be sent. `guard` names the guardrail (forceable) or is None (not forceable:
    bad input, unreachable or refusing balancers, read-only mode)."""

    outcome: Outcome
    line: str  # one line for the operator, the same in the CLI and the console
    guard: str | None = None
    override: str = ""  # what forcing does ("to override"): the hint after the line, in each front end's words

    @property
    def forceable(self) -> bool:
        return self.guard in (GUARD_MIN_READY, GUARD_MODEL, GUARD_INTERRUPTED)

    def hinted(self, how: str = CLI_FORCE) -> str:
        """The line and how to override it: "... (use --force to override)"."""
        return f"{self.line} ({how} {self.override})" if self.override else self.line


def force_hint(refusals: tuple[Refusal, ...], how: str) -> str | None:
    """One hint for several refusals ("press f to override / to act anyway"); None when none can be forced."""
    if not refusals or not all(r.forceable for r in refusals):
        return None
    overrides = [o for o in dict.fromkeys(r.override for r in refusals) if o]
    return f"{how} {' / '.join(overrides)}" if overrides else None


@dataclass(frozen=True)
class Plan:
    """What an action would do, for confirmations and --dry-run: no change made."""

    action: Action
    consequence: str  # e.g. "node-3 carries 7 in-flight requests; 2 of 3 primaries stay ready"
    refusals: tuple[Refusal, ...] = ()  # empty = allowed
    changes: tuple[str, ...] = ()  # per balancer: "haproxy-a: weight 3 -> 5"
    warnings: tuple[str, ...] = ()  # allowed, but worth reading first (e.g. the node's model is unknown)
    node_line: str = ""  # the consequence's part about this node alone (a batch shows it under the node)

    @property
    def refusal(self) -> str | None:
        """All refusals as one line with the CLI's hint (None = allowed)."""
        return "; ".join(r.hinted() for r in self.refusals) or None

    @property
    def refusal_outcome(self) -> Outcome | None:
        return self.refusals[0].outcome if self.refusals else None

    @property
    def forceable(self) -> bool:
        """Refused only by guardrails that --force may override."""
        return bool(self.refusals) and all(r.forceable for r in self.refusals)

    def guarded_by(self, guard: str) -> bool:
        return any(r.guard == guard for r in self.refusals)


@dataclass(frozen=True)
class BatchPlan:
    """Several actions planned together (the console's multi-select, rollouts): each one's plan, plus the
    guardrail over all of them at once (each node alone may keep min_ready, all together not)."""

    plans: tuple[Plan, ...]
    batch_refusals: tuple[Refusal, ...] = ()
    together: str = ""  # the guardrail's figure over all of them: "1 of 3 primaries stay ready"

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        return tuple(r for p in self.plans for r in p.refusals) + self.batch_refusals

    @property
    def refusal(self) -> str | None:
        """Each refusal once, with the CLI's hint."""
        return "\n".join(dict.fromkeys(r.hinted() for r in self.refusals)) or None

    @property
    def refusal_lines(self) -> str | None:
        """Each refusal's own line once, in order, without a hint (a front end adds its own: force_hint)."""
        return "\n".join(dict.fromkeys(r.line for r in self.refusals)) or None

    def force_hint(self, how: str = CLI_FORCE) -> str | None:
        return force_hint(self.refusals, how)

    @property
    def forceable(self) -> bool:
        return bool(self.refusals) and all(r.forceable for r in self.refusals)

    def guarded_by(self, guard: str) -> bool:
        return any(r.guard == guard for r in self.refusals)

    @property
    def lines(self) -> tuple[str, ...]:
        """The body of a confirmation. One action: its consequence, warnings, per-balancer changes. Several:
        each node's own line with its changes and warnings under it, then ONE line for the guardrail over
        all of them, then the warnings every node shares (said once)."""
        if len(self.plans) == 1:
            p = self.plans[0]
            return (((p.consequence,) if p.consequence else ()) + p.warnings
                    + tuple(f"  {c}" for c in p.changes))
        shared = [w for w in dict.fromkeys(w for p in self.plans for w in p.warnings)
                  if all(w in p.warnings for p in self.plans)]
        out: list[str] = []
        for p in self.plans:
            out.append(p.node_line or p.consequence or f"{p.action.node}:")
            out += [f"  {c}" for c in p.changes] + [f"  {w}" for w in p.warnings if w not in shared]
        if self.together:
            out.append(f"together: {self.together}")
        return tuple(out + shared)


@dataclass(frozen=True)
class BalancerOutcome:
    """What one balancer did with an action."""

    balancer: str
    ok: bool
    error: str | None = None
    before: ServerState | None = None
    after: ServerState | None = None  # read back after the change
    warning: str | None = None  # the change took, but something about it is worth saying (NotPersisted)


@dataclass(frozen=True)
class ActionResult:
    """What an action did, on every balancer, in one result."""

    action: Action
    outcome: Outcome
    message: str  # one line for the operator
    balancers: tuple[BalancerOutcome, ...] = field(default_factory=tuple)
    exit_code: int = 0
    plan: Plan | None = None  # the plan it was made from (dry-run prints its change lines)
    forced: bool = False  # --force overrode a guardrail that refused it
    signal: int | None = None  # SIGINT/SIGTERM/SIGHUP held while it was sent (delivered after the audit line)

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES


# -- recovery of interrupted multi-step changes (asrtop.control.recover) ------------------------------------

RECOVERY_RESULTS = ("completed", "undone", "failed")  # as asrtop.balancers.base.RecoveryReport.result


@dataclass(frozen=True)
class RecoveryItem:
    """One balancer's part of one interrupted action: what recovery did (or, dry run, would do)."""

    balancer: str
    what: str  # "`asrtop backup node-2 on`"
    stopped: str  # "after `del server` at 10:31:02 UTC"
    result: str  # completed | undone | failed
    commands: tuple[str, ...] = ()  # Runtime API commands sent (dry run: to send), in order
    error: str | None = None
    kind: str | None = None  # a failure's kind: unreachable | rejected | missing (balancer not configured)
    after: ServerState | None = None

    @property
    def ok(self) -> bool:
        return self.result != "failed"

    def line(self, dry_run: bool = False) -> str:
        sent = "; ".join(self.commands)
        if not self.ok:
            return f"{self.balancer}: cannot recover {self.what} (stopped {self.stopped}): {self.error}"
        if dry_run:
            verb = "would complete" if self.result == "completed" else "would undo"
            return f"{self.balancer}: {verb} {self.what} (stopped {self.stopped}): {sent or 'nothing to send'}"
        how = ("completed" if self.result == "completed"
               else "undone, left as before it (run it again to make the change)")
        return f"{self.balancer}: {self.what} {how} (stopped {self.stopped}): {sent or 'nothing left to send'}"


@dataclass(frozen=True)
class RecoveryResult:
    """What `asrtop recover` did."""

    items: tuple[RecoveryItem, ...]
    outcome: Outcome
    message: str  # one line
    exit_code: int = 0
    dry_run: bool = False
    signal: int | None = None  # a signal held while recovering (delivered after the audit lines)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(i.line(self.dry_run) for i in self.items)
