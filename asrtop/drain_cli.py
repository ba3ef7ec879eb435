"""`asrtop drain`'s own lines: the progress of --wait (streams-aware) and the --cutoff confirmation.

Light on import (the CLI's fast paths load it): the control layer's words are imported where used.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """The drain progress line: rewritten in place on a TTY, one line per change otherwise (logs, pipes).
    The same figures and words as a rollout's wait (progress_words), with the estimate to empty; for a node
    whose agent reports streams, the stream words of asrtop.control.drain_words (live streams, the oldest
    one's age, the estimate and what it rests on)."""

    def __init__(self, node: str, out: TextIO, cutoff: float | None = None):
        from asrtop.control.drain_words import DrainWatch
        from asrtop.control.eta import DrainEstimate

        self.node, self.out = node, out
        self.tty = out.isatty()
        self.last: tuple[int | None, ...] | None = None
        self.estimate = DrainEstimate()
        self.watch = DrainWatch(node, cutoff)
        self.offset = 0.0  # seconds waited before this wait began (the wait after a cutoff goes on counting)

    def node_seen(self, view: Any, waited: float) -> None:
        self.watch.add(self.offset + waited, view)

    def __call__(self, n: int | None, waited: float) -> None:
        from asrtop.control.rollout_model import progress_words

        waited += self.offset
        seen = self.watch.last
        if seen is not None and seen.streams is not None:
            text, key = f"{self.node}: {seen.line()}", (n, seen.streams)
        else:
            text, key = f"{self.node}: {progress_words(n, waited, self.estimate.add(waited, n))}", (n,)
        if self.tty:
            self.out.write(f"\r\x1b[K{text}")
            self.out.flush()
        elif self.last != key:
            self.out.write(text + "\n")
            self.out.flush()
        self.last = key

    def left(self) -> str:
        """What the node still carried at the last look: "2 request(s) in flight", "3 live streams (...)"."""
        seen = self.watch.last
        if seen is not None and seen.streams:
            return seen.line().split(", waited")[0]
        n = self.last[0] if self.last else None
        return f"{'an unknown number of' if n is None else n} request(s) in flight"

    def end(self) -> None:
        if self.tty and self.last is not None:
            self.out.write("\n")
            self.out.flush()
            self.last = None


def interrupted_wait_line(node: str, in_flight: int | None) -> str:
    left = "an unknown number of" if in_flight is None else str(in_flight)
    return (f"interrupted while waiting: {node} stays drained ({left} request(s) were still in flight); "
            f"bring it back with `asrtop ready {node}`")


async def cutoff_clause_now(ctl, node: str, cutoff: float) -> str:
    from asrtop.control.drain_words import cutoff_clause, open_streams

    return cutoff_clause(cutoff, open_streams(await ctl.source.snapshot(), (node,)))


async def confirm_cutoff(ctl, action, cutoff: float, force: bool, yes: bool) -> str | None:
    """A drain that will cut streams is confirmed first: the plan, its stream line and the cutoff, then y/N on
    a terminal; --yes for scripts; without a terminal and without --yes it is refused, nothing sent.
    Returns the refusal (one line) or None when confirmed."""
    plan = await ctl.plan(action, force)
    if plan.refusals:  # apply() refuses it with its own line and exit code; nothing to confirm
        return None
    lines = [plan.consequence, *plan.warnings, await cutoff_clause_now(ctl, action.node, cutoff)]
    for line in lines:
        print(line, flush=True)
    if yes:
        return None
    if not sys.stdin.isatty():
        return "--cutoff ends live streams: run it on a terminal to confirm, or add --yes; nothing changed"
    try:
        answer = input(f"drain {action.node} and cut what is still open after {cutoff:g} s? [y/N] ")
    except EOFError:
        answer = ""
    return None if answer.strip().lower() in ("y", "yes") else "not confirmed: nothing changed"
