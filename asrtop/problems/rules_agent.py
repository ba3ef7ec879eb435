"""PURE: agent rules: an agent that stopped answering, a collector of a live agent that fails."""

from __future__ import annotations

from typing import Iterator

from asrtop.problems.engine import Rule, RuleContext
from asrtop.problems.model import Finding, Severity
from asrtop.problems.state_facts import clear_after, down_for, live_troubled
from asrtop.timewords import span


def find_stale(ctx: RuleContext) -> Iterator[Finding]:
    for n in ctx.snapshot.nodes:
        if not n.stale:
            continue
        error = n.agent.error if n.agent is not None else None
        age = n.agent_age(ctx.now)
        when = "has never answered" if age is None else f"has not answered for {span(age)}"
        yield Finding("agent-stale", n.name, Severity.WARNING,
                      f"has an agent that {when}{f': {error}' if error else ''}; its figures are not current")


def find_collector_failing(ctx: RuleContext) -> Iterator[Finding]:
    """One finding per failing collector (subject: its name) of an agent that answers. A model in state
    "error" is model-hash-failed's; a down ASR service (up False) is what its probe is for, not a failure."""
    for n, st in live_troubled(ctx.snapshot):
        if not (st.gpu_error or st.host.error or st.model.error or st.asr.error):
            continue
        failing = (
            ("gpu", st.gpu_error),
            ("host", st.host.error),
            ("model", st.model.error if st.model.state not in ("ok", "error") else None),
            ("asr", st.asr.error if st.asr.up is not False else None),
        )
        for collector, error in failing:
            if error:
                yield Finding("collector-failing", n.name, Severity.WARNING,
                              f"has its agent's {collector} collector failing: {error}", subject=collector)


AGENT_RULES = (
    Rule("agent-stale", "agent stale", find_stale, down_for, clear_after),
    Rule("collector-failing", "agent collector failing", find_collector_failing, down_for, clear_after),
)
