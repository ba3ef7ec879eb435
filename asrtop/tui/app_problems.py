"""The console's problems (AsrtopApp mixes this in): the tracker runs over each snapshot and the history on the
UI loop (the rules are pure and cheap: a budget of 10 ms at 1,000 nodes); the screens read `app.problems`."""

from __future__ import annotations

from asrtop.config import ProblemsConfig
from asrtop.fleet import FleetSnapshot
from asrtop.problems.engine import ProblemTracker
from asrtop.problems.model import Problem
from asrtop.problems.rules import tracker


class ProblemWatch:
    """Needs the App's history (FleetHistory) and notify; AsrtopApp calls init_problems() in its __init__ (not
    named watch_*: Textual would take that for a reactive's watcher)."""

    def init_problems(self, problem_tracker: ProblemTracker | None) -> None:
        """`problem_tracker`: build_app's is the cluster's rules under its [problems] and min_ready; tests inject
        their own rules. None: the rules under the default settings."""
        self.problem_tracker = problem_tracker or tracker(ProblemsConfig())
        self.problems: tuple[Problem, ...] = ()
        self._rules_error: str | None = None

    def update_problems(self, snap: FleetSnapshot) -> None:
        """After history.record(snap). A rule that raises keeps the last problems on screen and says so once,
        instead of taking the console down."""
        try:
            self.problems = self.problem_tracker.update(snap, self.history)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            if error != self._rules_error:
                self.notify(f"problem rules failed: {error}", severity="error", timeout=10)
            self._rules_error = error
        else:
            self._rules_error = None
