"""The fleet's problems under the table: one line each, most severe and newest first; hidden when there are none.

Each line reads severity word, where, since, what, and what would help (asrtop.problems.words: the same words as
`asrtop check`), the text cut with '…' so that the action always shows whole. The list takes a few lines at most
(list_rows) and scrolls; the line above it says how many did not fit. It takes the focus only when asked
(`p`, Tab or the mouse), so the table's keys stay the table's; the screen handles Enter (open the node).
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from asrtop.problems.model import Problem
from asrtop.problems.words import count_line
from asrtop.tui.problem_lines import LISTED_MAX, Built, ProblemLines, problem_lines
from asrtop.tui.textual_internals import OneLineOptionList, acyclic_caches, replace_prompts

KEYS_HINT = "p: to the list · enter: open the node · esc: back to the table"


def list_rows(height: int, rollout: bool) -> int:
    """How many problem lines the panel shows at once in a window `height` rows high: the table keeps most of
    the screen (at 80x24 four lines, three while the rollout panel shows too)."""
    return max(2, min(8, height // 6)) - (1 if rollout else 0)


class ProblemsPanel(Vertical):
    DEFAULT_CSS = """
    ProblemsPanel {
        height: auto;
        padding: 0 1;
        background: $boost;
    }
    ProblemsPanel > #problems-title {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ProblemsPanel > OptionList {
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        border: none;
        padding: 0;
        background: $boost;
    }
    ProblemsPanel > OptionList:focus {
        border: none;
    }
    """

    def __init__(self, **kw):
        super().__init__(classes="hidden", **kw)
        self.problems: tuple[Problem, ...] = ()
        self._count = ""
        self._lines: tuple = ()  # the width and the words shown now: repaint only on a change
        self._shown: tuple | None = None  # show()'s arguments, to lay the lines out again on a resize
        self._built: Built = {}  # problem key -> (what its line was made of, the line): the lines on screen

    def compose(self) -> ComposeResult:
        yield Static("", id="problems-title")
        yield acyclic_caches(OneLineOptionList(id="problems-list"))  # its cache is cleared whenever problems change

    @property
    def list(self) -> OptionList:
        return self.query_one(OptionList)

    @property
    def built(self) -> Built:
        """The lines on screen by problem key (what each was made of, the line); replaced, never changed."""
        return self._built

    def problem_at(self, index: int | None) -> Problem | None:
        return self.problems[index] if index is not None and 0 <= index < len(self.problems) else None

    @staticmethod
    def lines_for(count: int, rows: int) -> int:
        """Lines the panel takes with `count` problems and a list `rows` high: the title and the list, or none."""
        return 1 + min(rows, count, LISTED_MAX) if count else 0

    def resizes_for(self, problems: Sequence[Problem], rows: int) -> bool:
        """Whether showing `problems` would change the panel's height (and so the table's above it)."""
        shown = self._shown
        now_lines = self.lines_for(len(shown[0]), shown[2]) if shown is not None else 0
        return self.lines_for(len(problems), rows) != now_lines

    def show(self, problems: Sequence[Problem], now: float, rows: int, prepared: ProblemLines | None = None) -> None:
        """`problems` in the list, aged against `now`, `rows` lines of it at once. `prepared`: the lines the refresh
        thread made (asrtop.tui.problem_lines), used when they are the ones for these problems at this width; else
        they are made here."""
        self._shown = (problems, now, rows)
        self.set_class(not problems, "hidden")
        listing = self.list
        widths, colour = self.line_widths(), not self.app.no_color
        if prepared is None or not prepared.fit(problems, now, widths, rows, colour):
            prepared = problem_lines(problems, now, widths, rows, colour, self._built)
        # Its height set, not `auto`: a line is one line, so the list is as high as its lines up to `rows`. With
        # `auto`, the layout measured every option it holds (visualized through Rich) to learn that, each time
        # the panel opened or resized: ~11 of the ~28 ms of the screen update that opened it at 1,000 nodes.
        listing.styles.height = max(1, min(rows, len(prepared.listed)))
        words = (prepared.width, tuple(zip((p.key for p in prepared.listed), prepared.said)))
        if words != self._lines:
            self._lines = words
            self._fill(listing, prepared)
        self._count = count_line(problems)
        self._title(rows, len(problems))

    def line_widths(self) -> tuple[int, int]:
        """The cells a line has: the screen's width less the panel's padding; then less the list's scrollbar too,
        for when the lines do not all fit (the panel spans the screen; hidden, it has no size of its own to ask)."""
        listing = self.list
        width = self.app.size.width - self.styles.padding.width - listing.styles.gutter.width
        return max(20, width), max(20, width - listing.styles.scrollbar_size_vertical)

    def on_resize(self) -> None:
        if self._shown is not None and self._shown[0]:
            self.show(*self._shown)

    def _fill(self, listing: OptionList, made: ProblemLines) -> None:
        keep = self.problem_at(listing.highlighted)
        same = [p.key for p in made.listed] == [p.key for p in self.problems]
        self.problems = made.listed
        self._built = made.built
        if same and listing.option_count == len(made.lines):
            replace_prompts(listing, made.lines)  # the same problems with new figures: highlight and scroll stay
            return
        listing.clear_options()
        listing.add_options(Option(line) for line in made.lines)
        keys = [p.key for p in made.listed]
        if keep is not None and keep.key in keys:  # the highlight follows its problem
            listing.highlighted = keys.index(keep.key)

    def _title(self, rows: int, total: int) -> None:
        listed = len(self.problems)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(self._count, "bold")
        if total > listed:
            text.append(f" · the first {listed} listed: scroll the list", "bold")
        elif listed > rows:
            text.append(f" · {listed - rows} more: scroll the list", "bold")
        text.append(f"   {KEYS_HINT}", "dim")
        self.query_one("#problems-title", Static).update(text, layout=False)  # one line (CSS): no layout to redo
