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

from asrtop.problems.model import Problem, Severity, ordered
from asrtop.problems.words import ProblemWords, count_line, problem_words
from asrtop.tui.format import without_colour
from asrtop.tui.textual_internals import OneLineOptionList, acyclic_caches, replace_prompts

SEVERITY_STYLE = {Severity.CRITICAL: "bold reverse red", Severity.WARNING: "bold yellow"}  # the word says it too
WHERE_MAX = 16  # a longer node or balancer name is cut with '…'
LISTED_MAX = 50  # lines in the list at most: a fleet-wide outage (1,000 stale agents) must not slow each refresh
KEYS_HINT = "p: to the list · enter: open the node · esc: back to the table"


def list_rows(height: int, rollout: bool) -> int:
    """How many problem lines the panel shows at once in a window `height` rows high: the table keeps most of
    the screen (at 80x24 four lines, three while the rollout panel shows too)."""
    return max(2, min(8, height // 6)) - (1 if rollout else 0)


def severity_style(severity: Severity, colour: bool = True) -> str:
    """Without colour (NO_COLOR) the attributes only: reverse red would turn grey on grey (format.without_colour)."""
    style = SEVERITY_STYLE[severity]
    return style if colour else without_colour(style)


def _cell(text: str, width: int, style: str = "", right: bool = False) -> Text:
    """`text` in exactly `width` cells: cut with '…' when longer, padded when shorter (right: on the left)."""
    cell = Text(text, style, no_wrap=True, end="")
    cell.truncate(max(0, width), overflow="ellipsis")
    pad = " " * (max(0, width) - cell.cell_len)
    return Text.assemble(pad, cell) if right else Text.assemble(cell, pad)


def line_of(p: Problem, now: float, where_width: int, action_width: int, width: int, colour: bool = True,
            words: ProblemWords | None = None) -> Text:
    """One problem as one line of `width` cells: severity (4), where, since (5, right), what (the rest, cut with
    '…') and what would help (as wide as the panel's widest action, so the actions align; a line without one
    gives its room to what). A Text built to the width, not a grid: the list measures every line it holds on
    each layout, and 30 grids rendered through Rich three times cost ~0.3 s the refresh the panel opened.
    `words`: problem_words(p, now) when the caller has them."""
    w = words if words is not None else problem_words(p, now)
    rest = width - 4 - where_width - 5 - 3 - (action_width + 1 if w.action else 0)
    parts = [_cell(w.severity, 4, severity_style(p.severity, colour)), " ", _cell(w.where, where_width, "bold"),
             " ", _cell(w.age, 5, "dim", right=True), " ", _cell(w.text, rest)]
    if w.action:
        parts += [" ", _cell(w.action, action_width, "bold")]
    return Text.assemble(*parts, no_wrap=True, end="")


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
        self._built: dict = {}  # problem key -> (what its line was made of, the line): the lines on screen

    def compose(self) -> ComposeResult:
        yield Static("", id="problems-title")
        yield acyclic_caches(OneLineOptionList(id="problems-list"))  # its cache is cleared whenever problems change

    @property
    def list(self) -> OptionList:
        return self.query_one(OptionList)

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

    def show(self, problems: Sequence[Problem], now: float, rows: int) -> None:
        self._shown = (problems, now, rows)
        problems = ordered(problems)
        self.set_class(not problems, "hidden")
        listing = self.list
        listed = problems[:LISTED_MAX]
        # Its height set, not `auto`: a line is one line, so the list is as high as its lines up to `rows`. With
        # `auto`, the layout measured every option it holds (visualized through Rich) to learn that, each time
        # the panel opened or resized: ~11 of the ~28 ms of the screen update that opened it at 1,000 nodes.
        listing.styles.height = max(1, min(rows, len(listed)))
        width = self.line_width(listing, len(listed) > rows)
        said = [problem_words(p, now) for p in listed]
        words = (width, tuple(zip((p.key for p in listed), said)))
        if words != self._lines:
            self._lines = words
            self._fill(listing, listed, said, now, width)
        self._count = count_line(problems)
        self._title(rows, len(problems))

    def line_width(self, listing: OptionList, scrolls: bool) -> int:
        """The cells a line has: the screen's width less the panel's padding, and the list's scrollbar when the
        lines do not all fit (the panel spans the screen; hidden, it has no size of its own to ask)."""
        width = self.app.size.width - self.styles.padding.width - listing.styles.gutter.width
        return max(20, width - (listing.styles.scrollbar_size_vertical if scrolls else 0))

    def on_resize(self) -> None:
        if self._shown is not None and self._shown[0]:
            self.show(*self._shown)

    def _fill(self, listing: OptionList, problems: tuple[Problem, ...], said: list[ProblemWords], now: float,
              width: int) -> None:
        keep = self.problem_at(listing.highlighted)
        same = [p.key for p in problems] == [p.key for p in self.problems]
        self.problems = problems
        where_width = min(WHERE_MAX, max((len(p.where) for p in problems), default=4))
        action_width = max((len(w.action) for w in said), default=0)
        colour = not self.app.no_color
        built, prompts = {}, []
        for p, w in zip(problems, said):  # a line whose words and widths stay is the same Text: not repainted
            made = (w, p.severity, where_width, action_width, width, colour)
            last_made, prompt = self._built.get(p.key, (None, None))
            if last_made != made:
                prompt = line_of(p, now, where_width, action_width, width, colour, w)
            built[p.key] = (made, prompt)
            prompts.append(prompt)
        self._built = built
        if same and listing.option_count == len(prompts):
            replace_prompts(listing, prompts)  # the same problems with new figures: highlight and scroll stay
            return
        listing.clear_options()
        listing.add_options(Option(prompt) for prompt in prompts)
        keys = [p.key for p in problems]
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
