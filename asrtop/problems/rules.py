"""The rule registry: every rule the console, `asrtop check` and the alert rules know, and how to run them.

Rules read their settings as `ctx.settings.<PROBLEM_SETTINGS key>` (e.g. `ctx.settings.leak_window`) and the
cluster's `ctx.settings.min_ready`: RuleSettings carries both.
"""

from __future__ import annotations

from dataclasses import dataclass

from asrtop.config import ProblemsConfig
from asrtop.fleet import FleetSnapshot
from asrtop.problems.engine import HistoryView, OneShot, ProblemTracker, Rule, evaluate_once
from asrtop.problems.rules_state import STATE_RULES
from asrtop.problems.rules_trend import TREND_RULES

RULES: tuple[Rule, ...] = TREND_RULES + STATE_RULES


@dataclass(frozen=True)
class RuleSettings:
    """What a rule's `ctx.settings` is: the [problems] settings (any key, by attribute) plus cluster.min_ready."""

    problems: ProblemsConfig
    min_ready: int = 1

    def __getattr__(self, name: str) -> float:  # only called for names that are not fields
        value = getattr(object.__getattribute__(self, "problems"), name)
        object.__setattr__(self, name, value)  # both immutable: later reads skip this lookup (rules ask often)
        return value


def tracker(settings: ProblemsConfig, min_ready: int = 1) -> ProblemTracker:
    """The console's tracker over RULES: feed it `update(snapshot, history)` after each FleetHistory.record."""
    return ProblemTracker(RULES, RuleSettings(settings, min_ready))


def check(snapshot: FleetSnapshot, history: HistoryView | None, settings: ProblemsConfig, min_ready: int = 1,
          now: float | None = None) -> OneShot:
    """One evaluation of RULES (`asrtop check`): history from Prometheus, or None (history rules not run)."""
    return evaluate_once(RULES, snapshot, history, RuleSettings(settings, min_ready), now)
