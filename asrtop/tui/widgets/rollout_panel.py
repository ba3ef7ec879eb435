"""The rollout's progress under the fleet table, read from the state file.

Every word and figure comes from the control layer (asrtop.control.rollout_words: the summary line, a row
per node, how to go on): this widget only picks the rows that fit and lays them out. It shows while a
rollout runs or is stopped (so a reopened console shows it too), collapses to its summary once a rollout
this console watched has ended, and hides otherwise. Meaning never rests on colour: the status is a word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from asrtop.control.rollout_model import RolloutState
from asrtop.control.rollout_words import ProgressRow, go_on_lines, progress_rows, rollout_status, summary_line

ACTIVE = ("running", "failed", "interrupted")  # the row a reader looks for first
STATUS_STYLE = {"failed": "bold red", "interrupted": "bold yellow", "running": "bold", "done": "green",
                "pending": "dim"}
SHOWN = ("running", "stopped", "interrupted")  # the whole panel; otherwise its summary at most


def panel_lines(height: int) -> int:
    """How many lines the panel aims to take in a window `height` rows high (the table keeps the rest)."""
    return max(4, min(12, height // 2 - 1))


def window(rows: Sequence[ProgressRow], room: int) -> tuple[list[ProgressRow], int, int]:
    """The rows that fit in `room` lines, around the node in progress (or failed, or next), and how many are
    left out before and after them (one line says so). The node in progress is always among them."""
    if len(rows) <= room + 1:  # leaving one out would take a line to say so
        return list(rows), 0, 0
    focus = next((i for i, r in enumerate(rows) if r.status in ACTIVE),
                 next((i for i, r in enumerate(rows) if r.status == "pending"), len(rows) - 1))
    k = max(1, room - 1)
    start = min(max(0, focus - (k > 2)), len(rows) - k)  # the one before it too, where there is room
    return list(rows[start:start + k]), start, len(rows) - start - k


def left_out(before: int, after: int) -> str:
    parts = [f"{before} before" if before else "", f"{after} after" if after else ""]
    return "… more nodes: " + ", ".join(p for p in parts if p) if before or after else ""


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
        self._shown: tuple | None = None  # what is painted now: repaint only on a change
        self.reserved = 0  # lines the problems panel takes now: this panel aims lower by as many

    def show(self, state: RolloutState | None, now: float, alive: bool | None, collapsed: bool,
             config_path: Path | None, error: str | None = None) -> None:
        """`collapsed`: the rollout ended while this console watched it (its summary line stays); one that had
        ended before the console started is not shown. `config_path` goes into the commands it names."""
        if error is not None:
            self._paint((error,), [], "", "bold red")
            return
        status = rollout_status(state, alive) if state is not None else None
        if state is None or (status not in SHOWN and not collapsed):
            self._paint((), [], "")
            return
        summary = summary_line(state, now, alive)
        if status not in SHOWN:
            self._paint((summary,), [], "")
            return
        lines = (summary, *go_on_lines(state, alive, config_path))
        width = max(20, self.app.size.width - 2)
        room = panel_lines(self.app.size.height) - self.reserved - sum(-(-len(line) // width) for line in lines)
        shown, before, after = window(progress_rows(state, now, alive), max(1, room))
        self._paint(lines, shown, left_out(before, after))

    def _paint(self, lines: tuple[str, ...], rows: list[ProgressRow], note: str, style: str = "bold") -> None:
        key = (lines, tuple(rows), note, style)
        if key == self._shown:
            return
        self._shown = key
        self.set_class(not lines, "hidden")
        if not lines:
            return
        summary, *go_on = lines
        grid = Table.grid(padding=(0, 1), expand=True)
        for column in (dict(no_wrap=True), dict(no_wrap=True), dict(no_wrap=True), dict(no_wrap=True, justify="right"),
                       dict(no_wrap=True, overflow="ellipsis", ratio=1)):
            grid.add_column(**column)
        for r in rows:
            grid.add_row(r.node, r.stage or "—", Text(r.status, style=STATUS_STYLE.get(r.status, "")), r.elapsed,
                         Text(r.detail, style="red" if r.status == "failed" else ""))
        parts: list = [Text(summary, style=style)]
        parts += [grid] if rows else []
        parts += [Text(note, style="dim")] if note else []
        parts += [Text(line, style="yellow") for line in go_on]  # the commands: wrapped, never cut
        self.update(Group(*parts))
