"""Every operator action goes through here: to ALL configured balancers, read back, audited.

API shared by the CLI (asrtop/commands.py) and the TUI. Implementation: see the balancer issue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

from asrtop.balancers.base import Balancer, ServerState
from asrtop.config import ClusterConfig
from asrtop.fleet import FleetSnapshot

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


@dataclass(frozen=True)
class ActionResult:
    action: Action
    outcome: Outcome
    message: str  # one line for the operator
    balancers: tuple[BalancerOutcome, ...] = field(default_factory=tuple)
    exit_code: int = 0


ProgressCallback = Callable[[int | None, float], None]  # (in-flight now or None if unknown, seconds waited)
