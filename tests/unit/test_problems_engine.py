"""The tracker's hysteresis (asrtop.problems.engine): raise after holding raise_after, clear after being
gone clear_after, no flapping on a noisy condition, and the one-shot evaluation for `asrtop check`."""

from __future__ import annotations

from hypothesis import given, settings as hsettings, strategies as st

from asrtop.fleet import FleetSnapshot
from asrtop.problems.engine import ProblemTracker, Rule, evaluate_once
from asrtop.problems.model import Finding, Severity


class Switch:
    """A rule whose condition the test sets: `on` -> one finding about node-1."""

    def __init__(self, raise_after: float = 10.0, clear_after: float = 5.0, needs_history: bool = False):
        self.on = False
        self.severity = Severity.WARNING
        self.rule = Rule("switch", "switch", self.find, lambda s: raise_after, lambda s: clear_after, needs_history)

    def find(self, ctx):
        if self.on:
            yield Finding("switch", "node-1", self.severity, f"is on at {ctx.now:g}", "asrtop drain node-1")


def run(switch: Switch, pattern: list[bool], t0: float = 0.0):
    tracker = ProblemTracker([switch.rule], settings=None)
    out = []
    for k, on in enumerate(pattern):
        switch.on = on
        out.append(tracker.update(FleetSnapshot(t0 + k, ()), None))
    return out


def test_raised_only_after_holding_raise_after():
    out = run(Switch(raise_after=10), [True] * 12)
    assert [bool(p) for p in out] == [False] * 10 + [True] * 2
    p = out[10][0]
    assert (p.since, p.raised_at, p.text) == (0.0, 10.0, "is on at 10")


def test_a_break_before_raising_restarts_the_count():
    out = run(Switch(raise_after=5), [True] * 4 + [False] + [True] * 6)
    assert [bool(p) for p in out] == [False] * 10 + [True]
    assert out[-1][0].since == 5.0


def test_cleared_only_after_being_gone_clear_after():
    out = run(Switch(raise_after=0, clear_after=5), [True] * 3 + [False] * 7)
    assert [bool(p) for p in out] == [True] * 8 + [False] * 2  # gone at t=3, still shown until t=8


def test_coming_back_before_clearing_keeps_the_same_problem():
    out = run(Switch(raise_after=0, clear_after=5), [True] * 3 + [False] * 3 + [True] * 2)
    assert all(out) and out[-1][0].since == 0.0 and out[-1][0].raised_at == 0.0


def test_severity_and_text_follow_without_reraising():
    sw = Switch(raise_after=0)
    tracker = ProblemTracker([sw.rule], None)
    sw.on = True
    tracker.update(FleetSnapshot(0.0, ()), None)
    sw.severity = Severity.CRITICAL
    [p] = tracker.update(FleetSnapshot(1.0, ()), None)
    assert p.severity is Severity.CRITICAL and p.raised_at == 0.0 and p.text == "is on at 1"


@hsettings(max_examples=40, deadline=None)
@given(noise=st.lists(st.booleans(), min_size=0, max_size=4), high=st.integers(20, 40))
def test_noisy_crossing_raises_once_and_clears_once(noise, high):
    """A condition that flickers (up to 4 samples) around each crossing, shorter than both durations."""
    pattern = [False] * 10 + noise + [True] * high + [not b for b in noise] + [False] * 30
    out = run(Switch(raise_after=10, clear_after=5), pattern)
    shown = [bool(p) for p in out]
    assert sum(1 for a, b in zip(shown, shown[1:]) if a != b) == 2 and not shown[-1]


def test_evaluate_once_skips_history_rules_without_history():
    now, later = Switch(raise_after=60), Switch(needs_history=True)
    now.on = later.on = True
    one = evaluate_once([now.rule, later.rule], FleetSnapshot(5.0, ()), None, None)
    assert [p.text for p in one.problems] == ["is on at 5"] and one.problems[0].since is None
    assert one.not_evaluated == (later.rule,)
