"""PURE: the problems panel's lines (no textual here): one problem as one line of Rich Text, and a refresh's lines.

The console's refresh thread makes them (asrtop.tui.refresh.prepare) at the panel's width, as it makes the table's
cells: the lines change with every refresh that ages a problem ('12s' -> '13s'), and made on the UI thread they
were about half of a refresh's apply at 1,000 nodes (bench_tui_end_to_end, 30 problems). The panel makes them
itself when the width changed since (a resize) or a refresh did not bring them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from rich.text import Text

from asrtop.problems.model import Problem, Severity, ordered
from asrtop.problems.words import ProblemWords, problem_words
from asrtop.tui.format import without_colour

SEVERITY_STYLE = {Severity.CRITICAL: "bold reverse red", Severity.WARNING: "bold yellow"}  # the word says it too
WHERE_MAX = 16  # a longer node or balancer name is cut with '…'
LISTED_MAX = 50  # lines in the list at most: a fleet-wide outage (1,000 stale agents) must not slow each refresh

# problem key -> (what its line was made of, the line): a line whose words and widths stay is the same Text
Built = Mapping[object, tuple[tuple, Text]]


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


@dataclass(frozen=True)
class ProblemLines:
    """The panel's lines for some problems at one moment, width and colour."""

    of: Sequence[Problem]  # the problems they were made for (the refresh's own tuple: told by identity)
    now: float
    width: int
    colour: bool
    listed: tuple[Problem, ...]  # ordered, at most LISTED_MAX
    said: tuple[ProblemWords, ...]  # each listed problem's words
    lines: tuple[Text, ...]  # each listed problem's line
    built: Built  # by problem key: what its line was made of, the line (for the next refresh's to reuse)

    def fit(self, problems: Sequence[Problem], now: float, widths: tuple[int, int], rows: int, colour: bool) -> bool:
        """Whether these are problem_lines(problems, now, widths, rows, colour, ...)."""
        return (self.of is problems and self.now == now and self.colour == colour
                and self.width == line_width(widths, len(self.listed), rows))


def line_width(widths: tuple[int, int], listed: int, rows: int) -> int:
    """widths[1] when the list scrolls (more lines than `rows`: its scrollbar takes room), else widths[0]."""
    return widths[1] if listed > rows else widths[0]


def problem_lines(problems: Sequence[Problem], now: float, widths: tuple[int, int], rows: int, colour: bool,
                  last: Built) -> ProblemLines:
    """Each listed problem's line, `line_width` wide; a line made of the same words at the same widths is `last`'s
    own Text (the list repaints only the lines that changed: textual_internals.replace_prompts)."""
    listed = tuple(ordered(problems)[:LISTED_MAX])
    said = tuple(problem_words(p, now) for p in listed)
    width = line_width(widths, len(listed), rows)
    where_width = min(WHERE_MAX, max((len(p.where) for p in listed), default=4))
    action_width = max((len(w.action) for w in said), default=0)
    built, lines = {}, []
    for p, w in zip(listed, said):
        made = (w, p.severity, where_width, action_width, width, colour)
        last_made, line = last.get(p.key, (None, None))
        if last_made != made:
            line = line_of(p, now, where_width, action_width, width, colour, w)
        built[p.key] = (made, line)
        lines.append(line)
    return ProblemLines(problems, now, width, colour, listed, said, tuple(lines), built)
