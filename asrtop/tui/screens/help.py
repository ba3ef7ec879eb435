"""`?`: every key of the console, generated from the fleet screen's BINDINGS (so it cannot drift)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

EXTRA = [("enter", "node detail (GPUs, sparklines, model, audit)"), ("↑ ↓ pgup pgdn", "move"),
         ("click header", "sort by that column"), ("ctrl+p", "command palette (every action, sort, filter)"),
         ("q", "quit")]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", show=False)]

    def __init__(self, bindings: list[Binding], read_only: bool):
        super().__init__()
        self.bindings = bindings
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        rows = [(b.key_display or b.key, b.description) for b in self.bindings] + EXTRA
        width = max(len(k) for k, _ in rows)
        text = "\n".join(f"{k.ljust(width)}  {d}" for k, d in rows)
        if self.read_only:
            text += "\n\nREAD-ONLY: drain/ready/maint/weight/backup are disabled."
        with VerticalScroll(id="dialog"):
            yield Static("asrtop keys", id="dialog-title")
            yield Static(text, id="help-body")
            yield Static("Esc closes", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
