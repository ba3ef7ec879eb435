"""asrtop.problems.words: the words the console (panel, header, detail) and `asrtop check` use for problems."""

from __future__ import annotations

from asrtop.problems.model import Problem, Severity
from asrtop.problems.words import (action_text, count_badge, count_line, critical_nodes, of_node, problem_line,
                                   problem_words, since_text, worst)

T = 1_700_000_000.0
CRIT, WARN = Severity.CRITICAL, Severity.WARNING


def problem(rule="r", node="node-1", severity=WARN, text="is slow", action=None, subject=None, since=T - 180):
    return Problem(rule, node, severity, text, action, subject, since, since)


def test_since_text_is_short_and_unknown_is_a_dash():
    assert [since_text(s) for s in (0, 45.9, 60, 185, 3600, 3600 + 5 * 60, 86400 * 2 + 5)] == \
        ["0s", "45s", "1m", "3m", "1h00m", "1h05m", "2d"]
    assert since_text(None) == "—" and since_text(-3) == "0s"  # a clock a little behind is not negative


def test_counts_name_each_severity_as_a_word():
    ps = [problem(severity=CRIT), problem(node="node-2"), problem(node="node-3")]
    assert count_line(ps) == "3 problems: 1 CRIT, 2 WARN"
    assert count_badge(ps) == "3 problems: 1 CRIT"  # the header's: the most severe kind only
    assert count_line(ps[1:2]) == "1 problem: 1 WARN" and count_badge(ps[1:]) == "2 problems: 2 WARN"
    assert count_line([]) == count_badge([]) == "" and worst([]) is None and worst(ps) is CRIT


def test_critical_nodes_and_a_nodes_own_problems():
    ps = [problem(node="node-1", severity=CRIT, since=T - 10), problem(node="node-2", severity=CRIT),
          problem(node="node-1", since=T - 5), problem(node=None, severity=CRIT, subject="haproxy-a")]
    assert critical_nodes(ps) == {"node-1", "node-2"}  # a balancer's problem marks no node
    assert [(p.severity, p.since) for p in of_node(ps, "node-1")] == [(CRIT, T - 10), (WARN, T - 5)]
    assert of_node(ps, "node-9") == ()


def test_problem_words_read_as_a_sentence_with_the_action():
    p = problem(node="node-3", severity=CRIT, text="leaks GPU memory: +48 MB/s", action="asrtop drain node-3")
    assert problem_words(p, T) == ("CRIT", "node-3", "3m", "leaks GPU memory: +48 MB/s", "→ asrtop drain node-3")
    assert problem_line(p, T) == "CRIT node-3 (3m): leaks GPU memory: +48 MB/s; → asrtop drain node-3"
    fleet = problem(node=None, text="only backups serve: 0 of 3 primaries ready", since=None)
    assert problem_words(fleet, T) == ("WARN", "fleet", "—", "only backups serve: 0 of 3 primaries ready", "")
    assert problem_line(fleet, T) == "WARN fleet: only backups serve: 0 of 3 primaries ready"  # one-shot: no age
    assert action_text(fleet) == ""
    lb = problem(node=None, subject="haproxy-a", text="is unreachable: connection refused")
    assert problem_words(lb, T).where == "haproxy-a"
