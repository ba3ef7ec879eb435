"""The drain confirmation: the plan (with the streams the drain waits for), and an optional cutoff.

`c` asks for S seconds: streams still open S seconds after the drain are then cut through every balancer
(asrtop.control.cutoff). The dialog announces it in the control layer's words before it can be confirmed
("streams still open after 120 s will be cut (4 open now)"); `c` is only offered when every balancer can cut
(HAProxy), else the control layer's one line says why (nginx).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Number
from textual.widgets import Input, Static

from asrtop.control.drain_words import cutoff_clause
from asrtop.tui.screens.confirm import ConfirmScreen


class DrainConfirmScreen(ConfirmScreen):
    """ConfirmScreen for drains; `cutoff` (seconds, or None) is what the operator confirmed with it."""

    BINDINGS = ConfirmScreen.BINDINGS + [Binding("c", "cutoff", "Cut after…", show=False)]

    def __init__(self, title: str, lines: list[str], *, cut_refusal: str | None, open_now: int | None,
                 **kw):
        super().__init__(title, lines, **kw)
        self.cut_refusal = cut_refusal  # None: every balancer can cut
        self.open_now = open_now  # live streams the selected node(s) carry (None: unknown)
        self.cutoff: float | None = None

    def _body(self) -> str:
        extra = ([cutoff_clause(self.cutoff, self.open_now)] if self.cutoff is not None
                 else [f"cutoff: {self.cut_refusal}"] if self.cut_refusal and self.open_now
                 else ["c: cut streams still open after S seconds"] if self.open_now else [])
        return super()._body() + ("\n" + "\n".join(extra) if extra else "")

    def action_cutoff(self) -> None:
        if self.cut_refusal is not None or self.pending:
            return

        def chosen(seconds: float | None) -> None:
            if seconds is not None:
                self.cutoff = seconds
                self.confirm_label = "Drain+cut (y)"  # the body says after how long
                if self.is_mounted:
                    self.query_one("#confirm").label = self.confirm_label  # type: ignore[attr-defined]
                    self._sync()

        self.app.push_screen(CutoffScreen(), chosen)


class CutoffScreen(ModalScreen[float | None]):
    """Seconds until a drain's cutoff; dismisses with a number > 0, or None (Esc)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Cut streams still open after how many seconds?", id="dialog-title")
            yield Input(placeholder="seconds, e.g. 120", type="number", id="cutoff-input",
                        validators=[Number(minimum=1, failure_description="seconds, at least 1")])
            yield Static("", id="cutoff-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        result = event.validation_result
        if not event.value.strip() or (result is not None and not result.is_valid):
            self.query_one("#cutoff-error", Static).update("seconds, at least 1; Esc cancels")
            return
        self.dismiss(float(event.value))

    def action_cancel(self) -> None:
        self.dismiss(None)
