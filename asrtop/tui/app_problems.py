"""The console's problems (AsrtopApp mixes this in): the tracker runs over each snapshot and the history in the
refresh's thread (asrtop.tui.refresh); the screens read `app.problems`."""

from __future__ import annotations

from asrtop.config import ProblemsConfig
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

    def take_problems(self, problems: tuple[Problem, ...], error: str | None) -> None:
        """A refresh's problems (asrtop.tui.refresh.prepare ran the tracker after history.record). A rule that
        raised kept the last problems on screen (`error`): said once, instead of taking the console down."""
        self.problems = problems
        if error is not None and error != self._rules_error:
            self.notify(f"problem rules failed: {error}", severity="error", timeout=10)
        self._rules_error = error
