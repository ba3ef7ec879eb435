"""PURE: how problems are worded, wherever they are shown: the console's panel, header count and node detail,
and `asrtop check`. Severity is always a word (CRIT / WARN), never a colour alone; the styles are the console's.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

from asrtop.problems.model import Problem, Severity, ordered
from asrtop.timewords import short_span

ACTION_MARK = "→"  # before the suggested action: "→ asrtop drain node-3"


def since_text(seconds: float | None) -> str:
    """How long a problem has held, short: '45s', '3m', '1h05m', '2d'; '—' when unknown (a one-shot check)."""
    return short_span(seconds)


def worst(problems: Iterable[Problem]) -> Severity | None:
    return max((p.severity for p in problems), default=None)


def count_line(problems: Sequence[Problem]) -> str:
    """'2 problems: 1 CRIT, 1 WARN', '1 problem: 1 WARN'; '' when there are none."""
    if not problems:
        return ""
    counts = [(sum(p.severity is s for p in problems), s.short) for s in sorted(Severity, reverse=True)]
    plural = "s" if len(problems) != 1 else ""
    return f"{len(problems)} problem{plural}: " + ", ".join(f"{n} {word}" for n, word in counts if n)


def count_badge(problems: Sequence[Problem]) -> str:
    """The short count, with the most severe kind only: '5 problems: 1 CRIT' ('' when there are none)."""
    top = worst(problems)
    if top is None:
        return ""
    plural = "s" if len(problems) != 1 else ""
    return f"{len(problems)} problem{plural}: {sum(p.severity is top for p in problems)} {top.short}"


def critical_nodes(problems: Iterable[Problem]) -> frozenset[str]:
    """The nodes with a critical problem (their table row is marked)."""
    return frozenset(p.node for p in problems if p.node is not None and p.severity is Severity.CRITICAL)


def of_node(problems: Iterable[Problem], node: str) -> tuple[Problem, ...]:
    """The node's own problems, most severe and newest first."""
    return ordered(p for p in problems if p.node == node)


def action_text(p: Problem) -> str:
    """'→ asrtop drain node-3', '' when no action would help."""
    return f"{ACTION_MARK} {p.action}" if p.action else ""


class ProblemWords(NamedTuple):
    """One problem as columns: 'CRIT', 'node-3', '3m', 'leaks GPU memory: …', '→ asrtop drain node-3'."""

    severity: str
    where: str
    age: str
    text: str
    action: str


def problem_words(p: Problem, now: float) -> ProblemWords:
    """The where column and the text read as one sentence ('node-3' 'leaks GPU memory …'); a fleet problem's
    where is 'fleet' and its text a sentence of its own."""
    age = since_text(None if p.since is None else now - p.since)
    return ProblemWords(p.severity.short, p.where, age, p.text, action_text(p))


def problem_line(p: Problem, now: float) -> str:
    """'CRIT node-3 (3m): leaks GPU memory …; → asrtop drain node-3': one problem on one line of text."""
    w = problem_words(p, now)
    since = "" if p.since is None else f" ({w.age})"
    return f"{w.severity} {w.where}{since}: {w.text}" + (f"; {w.action}" if w.action else "")
