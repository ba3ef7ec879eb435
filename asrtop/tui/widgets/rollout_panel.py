"""The rollout's progress under the fleet table, read from the state file (asrtop.control.rollout_model).

Every word and figure comes from the model (summary_line, progress_rows, stop_lines): this widget only picks
the rows that fit and lays them out. It shows while a rollout runs or is stopped (so a reopened console
shows it too), collapses to its one summary line once a rollout this console watched has ended, and hides
otherwise. Meaning never rests on colour alone: the status is a word, a failure is bold as well as red.
"""

from __future__ import annotations

from typing import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from asrtop.control.rollout_model import ProgressRow, RolloutState, progress_rows, rollout_status, stop_lines, summary_line

ACTIVE = ("running", "failed", "interrupted")  # the row a reader looks for first
STATUS_STYLE = {"failed": "bold red", "interrupted": "bold yellow", "running": "bold", "done": "green",
                "pending": "dim"}
SHOWN = ("running", "stopped", "interrupted")  # the whole panel; otherwise one line at most


def panel_lines(height: int) -> int:
    """How many lines the panel may take in a window `height` rows high: the table keeps the most."""
    return max(4, min(12, height // 2 - 1))


def window(rows: Sequence[ProgressRow], room: int) -> tuple[list[ProgressRow], int, int]:
    """The rows that fit in `room` lines around the node in progress (or failed), and how many are left out
    before and after it (each side that leaves rows out takes one line to say so)."""
    if len(rows) <= room:
        return list(rows), 0, 0
    focus = next((i for i, r in enumerate(rows) if r.status in ACTIVE),
                 next((i for i, r in enumerate(rows) if r.status == "pending"), len(rows) - 1))
    room = max(1, room - 2)  # "… N before" and "… N after" lines
    start = min(max(0, focus - (room > 2)), len(rows) - room)  # the one before it too, where there is room
    return list(rows[start:start + room]), start, len(rows) - start - room


class RolloutPanel(Static):
    DEFAULT_CSS = """
    RolloutPanel {
        height: auto;
        padding: 0 1;
        background: $boost;
    }
    """

    def __init__(self, **kw):
        super().__init__("", classes="hidden", **kw)
        self.state: RolloutState | None = None
        self._text: tuple | None = None  # what is shown now: repaint only on a change

    def show(self, state: RolloutState | None, now: float, alive: bool | None, collapsed: bool, cli: str,
             error: str | None = None) -> None:
        """`collapsed`: the rollout ended while this console watched it (one line); a finished rollout found at
        start is not shown. `cli`: how the stop lines name asrtop (with --config FILE when needed)."""
        self.state = state
        if error is not None:
            self._paint((error,), [], [], style="bold red")
            return
        status = rollout_status(state, alive) if state is not None else None
        if state is None or (status not in SHOWN and not collapsed):
            self._paint((), [], [])
            return
        summary = summary_line(state, now, alive)
        if status not in SHOWN:
            self._paint((summary,), [], [])
            return
        stops = stop_lines(state, alive, cli)
        width = max(20, self.app.size.width - 2)
        room = panel_lines(self.app.size.height) - sum(-(-len(line) // width) for line in (summary, *stops))
        rows = progress_rows(state, now, alive)
        shown, before, after = window(rows, max(1, room))
        notes = [f"… {before} more before" if before else "", f"… {after} more after" if after else ""]
        self._paint((summary, *stops), shown, notes)

    def _paint(self, lines: tuple[str, ...], rows: list[ProgressRow], notes: list[str], style: str = "bold") -> None:
        key = (lines, tuple(rows), tuple(notes), style)
        if key == self._text:
            return
        self._text = key
        self.set_class(not lines, "hidden")
        if not lines:
            return
        summary, *stops = lines
        grid = Table.grid(padding=(0, 1), expand=True)
        for column in (dict(no_wrap=True), dict(no_wrap=True), dict(no_wrap=True), dict(no_wrap=True, justify="right"),
                       dict(no_wrap=True, overflow="ellipsis", ratio=1)):
            grid.add_column(**column)
        for r in rows:
            grid.add_row(r.node, r.stage or "—", Text(r.status, style=STATUS_STYLE.get(r.status, "")), r.elapsed,
                         Text(r.detail, style="red" if r.status == "failed" else ""))
        before, after = notes or ("", "")
        parts: list = [Text(summary, style=style)]
        parts += [Text(before, style="dim")] if before else []
        parts += [grid] if rows else []
        parts += [Text(after, style="dim")] if after else []
        parts += [Text(line, style="yellow") for line in stops]  # the reason and the commands: wrapped, never cut
        self.update(Group(*parts))
