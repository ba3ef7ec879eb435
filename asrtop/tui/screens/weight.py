"""Weight input modal with validation (integer within the balancers' range); dismisses with int or None."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Integer
from textual.widgets import Input, Static


class WeightScreen(ModalScreen[int | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, nodes: list[str], current: int | None, low: int, high: int):
        super().__init__()
        self.nodes, self.current, self.low, self.high = nodes, current, low, high

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Weight for {', '.join(self.nodes)}", id="dialog-title")
            yield Static(f"now {self.current if self.current is not None else 'unknown/mixed'}; "
                         f"allowed {self.low}–{self.high}" + (" (0 stops new requests like a drain)" if self.low == 0 else ""), id="dialog-body")
            yield Input(placeholder=f"{self.low}-{self.high}", type="integer", id="weight-input",
                        validators=[Integer(self.low, self.high,
                                            failure_description=f"must be a whole number {self.low}–{self.high}")])
            yield Static("", id="weight-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(event.validation_result)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        result = event.validation_result
        if result is not None and not result.is_valid or not event.value.strip():
            self._show(result, submitted=True)
            return
        self.dismiss(int(event.value))

    def _show(self, result, submitted: bool = False) -> None:
        msg = ""
        if result is not None and not result.is_valid:
            msg = "; ".join(result.failure_descriptions)
        elif submitted:
            msg = "type a weight, Enter to apply, Esc to cancel"
        self.query_one("#weight-error", Static).update(msg)

    def action_cancel(self) -> None:
        self.dismiss(None)
