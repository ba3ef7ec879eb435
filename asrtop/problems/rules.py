"""PLACEHOLDER for H1's rules (dropped at merge): no rules, and the tracker the console builds from them."""

from __future__ import annotations

from asrtop.problems.engine import ProblemTracker

RULES: tuple = ()


def tracker(settings, min_ready: int = 1) -> ProblemTracker:
    return ProblemTracker(RULES, settings)
