"""Placeholder for H1b's instantaneous rules (gpu, model, balancers, capacity, agents)."""

from __future__ import annotations

from asrtop.problems.engine import Rule

STATE_RULES: tuple[Rule, ...] = ()
