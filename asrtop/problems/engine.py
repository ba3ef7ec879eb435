"""PURE: rules evaluated over a FleetSnapshot and its history, with hysteresis.

A Rule is a function of a RuleContext that yields the Findings holding now. The ProblemTracker (one per
console) raises a finding as a Problem only after it has held continuously for the rule's `raise_after`
seconds, and clears a raised problem only after it has been absent continuously for `clear_after` seconds:
a noisy series crossing a threshold back and forth raises once and clears once, never flaps.

`evaluate_once` is the one-shot form for `asrtop check`: no earlier evaluations exist, so instantaneous rules
report what holds now (the monitoring system's own retries play the part of the duration) and rules that
need history run only when a history is given (from Prometheus); otherwise they are listed as not evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from asrtop.fleet import FleetSnapshot
from asrtop.problems.model import Finding, Problem, ordered


class HistoryView(Protocol):
    """What rules read of the past: FleetHistory (the console) or a history built from Prometheus (`check`)."""

    def series(self, node: str, metric: str) -> list[float | None]: ...  # oldest first, None = unavailable

    def timestamps(self) -> list[float]: ...


@dataclass
class RuleContext:
    snapshot: FleetSnapshot
    history: HistoryView | None  # None: one-shot without history (rules with needs_history are not run)
    settings: Any  # the cluster's [problems] settings (config.ProblemsConfig)
    now: float
    memory: dict = field(default_factory=dict)  # the rule's own state across evaluations (e.g. last pid per node)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str  # "GPU memory leak": the rule's name in help, `check --json` and the alert rules
    find: Callable[[RuleContext], Iterable[Finding]]
    raise_after: Callable[[Any], float] = lambda settings: 0.0  # seconds the condition must hold (from settings)
    clear_after: Callable[[Any], float] = lambda settings: 0.0  # seconds it must be false before it clears
    needs_history: bool = False  # a trend over time: needs the console's history or Prometheus


@dataclass
class _Track:
    finding: Finding
    true_since: float
    false_since: float | None = None
    raised_at: float | None = None


class ProblemTracker:
    """Hysteresis over successive evaluations. Owned by one task (the console's refresh); `update` mutates."""

    def __init__(self, rules: Sequence[Rule], settings: Any):
        self.rules = tuple(rules)
        self.settings = settings
        self._tracks: dict[tuple, _Track] = {}
        self._memory: dict[str, dict] = {r.id: {} for r in self.rules}
        self.problems: tuple[Problem, ...] = ()

    def update(self, snapshot: FleetSnapshot, history: HistoryView | None, now: float | None = None
               ) -> tuple[Problem, ...]:
        now = snapshot.taken_at if now is None else now
        seen: set[tuple] = set()
        for rule in self.rules:
            ctx = RuleContext(snapshot, history, self.settings, now, self._memory[rule.id])
            raise_after = rule.raise_after(self.settings)
            for f in rule.find(ctx):
                seen.add(f.key)
                t = self._tracks.get(f.key)
                if t is None:
                    t = self._tracks[f.key] = _Track(f, now)
                t.finding, t.false_since = f, None
                if t.raised_at is None and now - t.true_since >= raise_after:
                    t.raised_at = now
        by_id = {r.id: r for r in self.rules}
        for key, t in list(self._tracks.items()):
            if key in seen:
                continue
            if t.raised_at is None:
                del self._tracks[key]  # never raised: it must hold continuously to count
                continue
            if t.false_since is None:
                t.false_since = now
            rule = by_id.get(key[0])
            if rule is None or now - t.false_since >= rule.clear_after(self.settings):
                del self._tracks[key]
        self.problems = ordered(_problem(t.finding, t.true_since, t.raised_at)
                                for t in self._tracks.values() if t.raised_at is not None)
        return self.problems


@dataclass(frozen=True)
class OneShot:
    problems: tuple[Problem, ...]
    not_evaluated: tuple[Rule, ...]  # rules that need history when none was given


def evaluate_once(rules: Sequence[Rule], snapshot: FleetSnapshot, history: HistoryView | None, settings: Any,
                  now: float | None = None) -> OneShot:
    now = snapshot.taken_at if now is None else now
    found: list[Problem] = []
    skipped: list[Rule] = []
    for rule in rules:
        if rule.needs_history and history is None:
            skipped.append(rule)
            continue
        ctx = RuleContext(snapshot, history, settings, now, {})
        found.extend(_problem(f, None, None) for f in rule.find(ctx))
    return OneShot(ordered(found), tuple(skipped))


def _problem(f: Finding, since: float | None, raised_at: float | None) -> Problem:
    return Problem(f.rule, f.node, f.severity, f.text, f.action, f.subject, since, raised_at)
