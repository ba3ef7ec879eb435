"""PURE: what a problem is. A rule finds a condition holding now (a Finding); the tracker turns findings into
problems once they have held for the rule's duration and drops them once they have been false for its own
clear duration (hysteresis, engine.py). No I/O, no textual: the console, `asrtop check` and the tests share it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.IntEnum):
    """Ordered; the values are Nagios plugin exit codes (1 WARNING, 2 CRITICAL) so `asrtop check` exits with them."""

    WARNING = 1
    CRITICAL = 2

    @property
    def word(self) -> str:
        return self.name  # "WARNING" / "CRITICAL": the same word in the console, `check` and --json

    @property
    def short(self) -> str:
        return "CRIT" if self is Severity.CRITICAL else "WARN"


@dataclass(frozen=True)
class Finding:
    """A rule's condition, holding at this evaluation. `(rule, node, subject)` identifies it across refreshes;
    severity, text and action may change from one evaluation to the next without re-raising it."""

    rule: str  # the rule's id, e.g. "gpu-memory-leak"
    node: str | None  # the node it is about; None: the fleet or a balancer (see subject)
    severity: Severity
    # one line with the figures that reads after the node's (or subject's) name: "leaks GPU memory: +48 MB/s for
    # 2 min while its load is flat, full in 11 min", "runs model 8f1a191, the fleet 366146d"; a fleet problem's
    # text is a sentence of its own: "only backups serve: 0 of 3 primaries ready"
    text: str
    action: str | None = None  # what would help, as a command an operator can type: "drain node-3"
    subject: str | None = None  # a non-node subject (a balancer's name) or a detail that makes the key unique

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.rule, self.node, self.subject)


@dataclass(frozen=True)
class Problem:
    """A finding the tracker has raised: held for its rule's duration, not yet cleared."""

    rule: str
    node: str | None
    severity: Severity
    text: str
    action: str | None
    subject: str | None
    since: float | None  # when the condition began to hold (unix time); None: unknown (one-shot, no history)
    raised_at: float | None = None  # when it became a problem (since + the rule's duration)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.rule, self.node, self.subject)

    @property
    def where(self) -> str:
        """Whom it is about, as the console and `check` name it: the node, else the subject, else "fleet"."""
        return self.node or self.subject or "fleet"

    def one_line(self) -> str:
        """`node-2 runs model 8f1a191, the fleet 366146d` (the `check` summary's and the panel's wording)."""
        return self.text if self.node is None and self.subject is None else f"{self.where} {self.text}"


def ordered(problems) -> tuple[Problem, ...]:
    """Most severe first, then newest first (by since; unknown since last), then by where (stable output)."""
    return tuple(sorted(problems, key=lambda p: (-int(p.severity), -(p.since if p.since is not None else -1e18),
                                                 p.where, p.rule)))
