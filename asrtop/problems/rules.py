"""PLACEHOLDER (H1's engine replaces this file at merge): the rule set and its two entry points."""

from __future__ import annotations

from asrtop.problems.engine import OneShot, ProblemTracker, Rule, evaluate_once

RULES: tuple[Rule, ...] = ()


def tracker(settings, min_ready: int = 1) -> ProblemTracker:
    return ProblemTracker(RULES, settings)


def check(snapshot, history, settings, min_ready: int = 1, now: float | None = None) -> OneShot:
    return evaluate_once(RULES, snapshot, history, settings, now)
