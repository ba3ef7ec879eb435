"""`asrtop check`: the fleet's problems once, as a Nagios plugin says them (text or --json) and exits with them.

Exit codes (Nagios): 0 OK, 1 WARNING, 2 CRITICAL (the worst problem's Severity, whose values are these codes),
3 UNKNOWN when the check cannot judge the fleet: a bad flag or cluster file (cli/commands), node facts from
Prometheus that cannot be queried, nothing readable at all (no balancer readable and no agent answering), or
no node. The first line names the worst problem and its node, "(+N more)", then perfdata after `|`
('label'=value[UOM];[warn];[crit];[min];[max]); one line per problem follows, then the rules not evaluated.

The snapshot comes the way `status` reads it (commands.fleet_snapshot, injected); rules that need history get
it from Prometheus ([cluster] prometheus or --prometheus) through sources.prometheus_history.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence, TextIO

from asrtop.control.rules import one_line
from asrtop.exitcodes import NAGIOS_OK, NAGIOS_UNKNOWN
from asrtop.fleet import FleetSnapshot, primaries_staying_ready
from asrtop.fleet_wording import state_counts
from asrtop.problems.engine import HistoryView, OneShot, Rule, evaluate_once
from asrtop.problems.model import Problem, Severity
from asrtop.problems.words import worst

OK_WORD, UNKNOWN_WORD = "OK", "UNKNOWN"
NO_HISTORY = "need history: the console or [cluster] prometheus"


@dataclass(frozen=True)
class Perf:
    """One Nagios perfdata item; thresholds are Nagios ranges ("0": alert above 0, "2:": alert below 2)."""

    label: str
    value: int
    warn: str = ""
    crit: str = ""
    min: int | None = 0
    max: int | None = None

    def text(self) -> str:
        tail = ";".join((self.warn, self.crit, "" if self.min is None else str(self.min),
                         "" if self.max is None else str(self.max))).rstrip(";")
        return f"{self.label}={self.value}" + (f";{tail}" if tail else "")


def perfdata(snap: FleetSnapshot, shot: OneShot, min_ready: int) -> list[Perf]:
    n = len(snap.nodes)
    crit = sum(p.severity is Severity.CRITICAL for p in shot.problems)
    warn = sum(p.severity is Severity.WARNING for p in shot.problems)
    return [Perf("problems", len(shot.problems)), Perf("critical", crit, crit="0"), Perf("warning", warn, warn="0"),
            Perf("nodes", n), Perf("ready", primaries_staying_ready(snap, ()), crit=f"{min_ready}:", max=n),
            Perf("stale", sum(v.stale for v in snap.nodes), max=n),
            Perf("down", state_counts(snap.nodes)["DOWN"], max=n)]


def unreadable(snap: FleetSnapshot) -> str | None:
    """Why the check cannot judge this fleet (UNKNOWN), else None. A fleet partly read is judged: an unreachable
    balancer or a stale agent is a problem the rules report."""
    if snap.facts_error:
        return f"node facts unavailable: {one_line(snap.facts_error)}"
    balancer_read = any(b.reachable for b in snap.balancers)
    agent_answered = any(v.agent is not None and v.agent.error is None for v in snap.nodes)
    if not balancer_read and not agent_answered:
        why = "; ".join(f"{b.name}: {one_line(b.problem or '')}" for b in snap.balancers) or "none configured"
        return f"cannot read the fleet: no balancer could be read ({why}) and no agent answered"
    if not snap.nodes:
        return "no nodes: the cluster file names none and the balancers list none to discover"
    return None


def status_of(shot: OneShot) -> tuple[str, int]:
    top = worst(shot.problems)
    return (OK_WORD, NAGIOS_OK) if top is None else (top.word, int(top))


def problem_line(p: Problem) -> str:
    return f"{p.severity.word} {p.one_line()}" + (f"; action: {p.action}" if p.action else "")


def not_evaluated_line(shot: OneShot, reason: str) -> str | None:
    if not shot.not_evaluated:
        return None
    return f"not evaluated ({reason}): " + ", ".join(r.id for r in shot.not_evaluated)


def summary(snap: FleetSnapshot, shot: OneShot) -> str:
    word, _ = status_of(shot)
    if not shot.problems:
        return f"{word}: {len(snap.nodes)} nodes, no problems"
    more = len(shot.problems) - 1
    return f"{word}: {shot.problems[0].one_line()}" + (f" (+{more} more)" if more else "")


def render_text(snap: FleetSnapshot, shot: OneShot, min_ready: int, reason: str = NO_HISTORY) -> str:
    perf = " ".join(p.text() for p in perfdata(snap, shot, min_ready))
    lines = [f"{summary(snap, shot)} | {perf}", *(problem_line(p) for p in shot.problems)]
    skipped = not_evaluated_line(shot, reason)
    return "\n".join(lines + ([skipped] if skipped else []))


def render_json(snap: FleetSnapshot, shot: OneShot, min_ready: int, reason: str = NO_HISTORY) -> dict[str, Any]:
    word, code = status_of(shot)
    return {
        "status": word, "exit": code, "summary": summary(snap, shot),
        "problems": [{"rule": p.rule, "severity": p.severity.word, "node": p.node, "subject": p.subject,
                      "where": p.where, "text": p.text, "line": p.one_line(), "action": p.action}
                     for p in shot.problems],
        "not_evaluated": [r.id for r in shot.not_evaluated],
        "not_evaluated_reason": reason if shot.not_evaluated else None,
        "perfdata": {p.label: p.value for p in perfdata(snap, shot, min_ready)},
    }


def print_unknown(line: str, as_json: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if as_json:
        print(json.dumps({"status": UNKNOWN_WORD, "exit": NAGIOS_UNKNOWN, "summary": f"{UNKNOWN_WORD}: {line}",
                          "problems": [], "not_evaluated": [], "not_evaluated_reason": None, "perfdata": {}},
                         indent=1), file=out, flush=True)
    else:
        print(f"{UNKNOWN_WORD}: {line}", file=out, flush=True)
    return NAGIOS_UNKNOWN


Evaluate = Callable[[FleetSnapshot, "HistoryView | None"], OneShot]


def _engine(config, rules: Sequence[Rule] | None) -> tuple[Sequence[Rule], Evaluate]:
    """The rules and how to run them once: the engine's own (rules.check) unless a test gives its rules."""
    if rules is not None:
        return rules, lambda snap, history: evaluate_once(rules, snap, history, config.problems)
    from asrtop.problems import rules as engine

    return engine.RULES, lambda snap, history: engine.check(snap, history, config.problems, config.min_ready)


async def _history(url: str | None, snap: FleetSnapshot, config, rules: Sequence[Rule]
                   ) -> tuple[HistoryView | None, str]:
    """Prometheus' history for the rules that need one, or None and why they are not evaluated."""
    if not any(r.needs_history for r in rules):
        return None, NO_HISTORY
    if not url:
        return None, NO_HISTORY
    from asrtop.sources.prometheus import PrometheusError
    from asrtop.sources.prometheus_history import fetch_history

    try:
        return await fetch_history(url, snap, config.problems, config.refresh), NO_HISTORY
    except PrometheusError as e:
        return None, f"no history: {one_line(e)}"


async def run_check(config, source, snapshot_once: Callable[[Any], Awaitable[FleetSnapshot]], *,
                    prometheus: str | None = None, as_json: bool = False, rules: Sequence[Rule] | None = None,
                    out: TextIO | None = None) -> int:
    """Read the fleet once (snapshot_once closes the source), evaluate, print, return the Nagios exit code."""
    out = out or sys.stdout
    snap = await snapshot_once(source)
    why = unreadable(snap)
    if why:
        return print_unknown(why, as_json, out)
    rule_set, evaluate = _engine(config, rules)
    history, reason = await _history(prometheus or config.prometheus, snap, config, rule_set)
    shot = evaluate(snap, history)
    if as_json:
        print(json.dumps(render_json(snap, shot, config.min_ready, reason), indent=1), file=out, flush=True)
    else:
        print(render_text(snap, shot, config.min_ready, reason), file=out, flush=True)
    return status_of(shot)[1]
