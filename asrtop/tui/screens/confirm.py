"""Confirmation modal: states the consequence and the guardrail outcome; dismisses with True/False.

It opens at once with what the console already knows; the controller's plan (a fresh read of every
balancer) fills it in when it arrives. Until then nothing can be confirmed, only cancelled.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

CHECKING = "checking with the balancers…"
FORCE_KEY = "press f"  # the console's way to override a refusal (the CLI's is --force: control.model.CLI_FORCE)


class ConfirmScreen(ModalScreen[bool]):
    """`y` confirms (or `f` when the plan was refused and confirming means forcing), `n`/Esc cancels."""

    BINDINGS = [
        Binding("y", "confirm", "Confirm", show=False),
        Binding("f", "force", "Force", show=False),
        Binding("n,escape", "cancel", "Cancel", show=False),
    ]

    def __init__(self, title: str, lines: list[str], *, confirm_label: str = "Yes (y)",
                 refusal: str | None = None, warning: bool = False, pending: bool = False):
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.refusal = refusal  # the control layer's own line(s), word for word what the CLI prints
        self.hint: str | None = None  # how to override it here: "press f to override"
        self.confirm_label = confirm_label
        self.warning = warning
        self.pending = pending
        self.forceable = True  # a guardrail refusal can be forced; bad input or an unreachable balancer not

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="warning" if self.warning else ""):
            yield Static(self.title_text, id="dialog-title")
            yield Static(self._body(), id="dialog-body")
            yield Static(self.refusal or "", id="dialog-refusal")
            with Horizontal(id="dialog-buttons"):
                yield Button("Force anyway (f)", id="force", variant="error")
                yield Button(self.confirm_label, id="confirm", variant="warning" if self.warning else "primary")
                yield Button("Cancel (n)", id="cancel")

    def _body(self) -> str:
        return "\n".join(self.lines + ([CHECKING] if self.pending else []))

    def _sync(self) -> None:
        self.query_one("#dialog-body", Static).update(self._body())
        refusal = self.query_one("#dialog-refusal", Static)
        refusal.update("\n".join(x for x in (self.refusal, self.hint) if x))
        refusal.display = bool(self.refusal)
        self.query_one("#force", Button).display = bool(self.refusal) and self.forceable and not self.pending
        confirm = self.query_one("#confirm", Button)
        confirm.display = not self.refusal
        confirm.disabled = self.pending

    def on_mount(self) -> None:
        self._sync()
        self.query_one("#cancel", Button).focus()  # Enter on a fresh dialog must not change anything

    def set_plan(self, lines: list[str], refusal: str | None, forceable: bool = True, hint: str | None = None
                 ) -> None:
        """The controller's plan arrived: show it and allow confirming (or forcing a refusal)."""
        self.lines, self.refusal, self.pending, self.forceable = lines, refusal, False, forceable
        self.hint = hint if refusal and forceable else None
        if self.is_mounted:
            self._sync()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(False)
        elif event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_force()

    def action_confirm(self) -> None:
        if not self.refusal and not self.pending:
            self.dismiss(True)

    def action_force(self) -> None:
        if self.refusal and self.forceable and not self.pending:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
