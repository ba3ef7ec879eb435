"""Confirmation modal: states the consequence and the guardrail outcome; dismisses with True/False."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """`y` confirms (or `f` when the plan was refused and confirming means forcing), `n`/Esc cancels."""

    BINDINGS = [
        Binding("y", "confirm", "Confirm", show=False),
        Binding("f", "force", "Force", show=False),
        Binding("n,escape", "cancel", "Cancel", show=False),
    ]

    def __init__(self, title: str, lines: list[str], *, confirm_label: str = "Yes (y)",
                 refusal: str | None = None, warning: bool = False):
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.refusal = refusal
        self.confirm_label = confirm_label
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="warning" if self.warning or self.refusal else ""):
            yield Static(self.title_text, id="dialog-title")
            yield Static("\n".join(self.lines), id="dialog-body")
            if self.refusal:
                yield Static(self.refusal, id="dialog-refusal")
            with Horizontal(id="dialog-buttons"):
                if self.refusal:
                    yield Button("Force anyway (f)", id="force", variant="error")
                else:
                    yield Button(self.confirm_label, id="confirm", variant="warning" if self.warning else "primary")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # Enter on a fresh dialog must not change anything

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id in ("confirm", "force"))

    def action_confirm(self) -> None:
        if not self.refusal:
            self.dismiss(True)

    def action_force(self) -> None:
        if self.refusal:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
