"""`?`: the source's current notes in full, then every key of the console, generated from the fleet screen's
BINDINGS (so it cannot drift)."""

from __future__ import annotations

from typing import Sequence

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from asrtop.tui.format import CRITICAL_MARK
from asrtop.tui.widgets.notes import NOTE_MARK, notes_mark

# Longer words than the key bar has room for, by action name.
DESCRIBE = {
    "drain": "drain: no new requests; in-flight ones finish (progress in the row)",
    "ready": "ready: back into rotation (asks twice if its model differs)",
    "maint": "maint: out of rotation at once",
    "weight": "weight: set the balancing weight (validated)",
    "backup": "backup: toggle backup / primary",
    "toggle_select": "select / unselect the node (actions apply to all selected)",
    "filter": "filter by name, state or model digest prefix",
    "sort": "sort by the next column (or click a header)",
    "reverse_sort": "reverse the sort",
    "models": "model view: nodes grouped by model digest, files that differ",
    "rollout": "rolling upgrade of the selected nodes (else all): plan, confirm, progress under the table",
    "clear": "clear the filter, then the selection",
    "problems": "to the problems list under the table and back (enter opens a problem's node)",
}
EXTRA = [("enter", "node detail (GPUs, sparklines, model, audit, problems)"),
         ("↑ ↓ pgup pgdn", "move"), ("home end", "first / last node"),
         (CRITICAL_MARK, "in the first column: the node has a critical problem (the list under the table)"),
         ("ctrl+p", "command palette (every action, sort, filter)"),
         ("q", "quit")]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", show=False)]

    def __init__(self, bindings: list[Binding], read_only: bool, notes: Sequence[str] = ()):
        super().__init__()
        self.bindings = bindings
        self.read_only = read_only
        self.notes = tuple(notes)

    def compose(self) -> ComposeResult:
        rows = [({"escape": "esc"}.get(b.key, b.key_display or b.key), DESCRIBE.get(b.action, b.description))
                for b in self.bindings] + EXTRA
        # A grid, so a description that wraps continues under itself, not at column 0.
        text = Table.grid(padding=(0, 2))
        text.add_column(no_wrap=True)
        text.add_column()
        for k, d in rows:
            text.add_row(k, d)
        if self.read_only:
            text.add_row("", "")
            text.add_row("READ-ONLY", "drain/ready/maint/weight/backup/upgrade are hidden and refused "
                                      "(started with --read-only or cluster.read_only = true)")
        with VerticalScroll(id="dialog"):
            yield Static(self._notes_text(), id="help-notes", classes="" if self.notes else "hidden")
            yield Static("asrtop keys", id="dialog-title")
            yield Static(text, id="help-body")
            yield Static("Esc closes", classes="hint")

    def _notes_text(self) -> str:
        return "\n".join([notes_mark(self.notes)] + [f"{NOTE_MARK} {n}" for n in self.notes])

    def show_fleet(self, snap, error: str | None = None) -> None:
        """Notes change while the screen is open (a balancer restarts): keep the list current."""
        notes = tuple(snap.notes) if snap is not None else ()
        if notes == self.notes:
            return
        self.notes = notes
        box = self.query_one("#help-notes", Static)
        box.update(self._notes_text())
        box.set_class(not notes, "hidden")

    def action_close(self) -> None:
        self.dismiss(None)
