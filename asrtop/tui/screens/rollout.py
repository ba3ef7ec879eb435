"""The rollout's plan and its confirmation: RolloutPlan.lines() (the CLI's --dry-run, word for word) in a
scrolling body, the refusal as the control layer words it. A rollout refusal cannot be forced: `y` starts
it, `n`/Esc cancel. It opens at once and is filled in when the engine's plan (fresh reads) arrives."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from asrtop.tui.screens.confirm import ConfirmScreen


FRAME_LINES = 8  # border 2, title 1 + its margin 1, buttons 3 + their margin 1


def rollout_title(nodes: tuple[str, ...]) -> str:
    if not nodes:
        return "Rolling upgrade of every node?"
    return f"Rolling upgrade of {', '.join(nodes) if len(nodes) <= 4 else f'{len(nodes)} selected nodes'}?"


class RolloutScreen(ConfirmScreen):
    BINDINGS = [Binding("up", "scroll_plan(-1)", show=False), Binding("down", "scroll_plan(1)", show=False),
                Binding("pageup", "scroll_plan(-10)", show=False), Binding("pagedown", "scroll_plan(10)", show=False)]

    def __init__(self, nodes: tuple[str, ...]):
        super().__init__(rollout_title(nodes), [], confirm_label="Start rollout (y)", warning=True, pending=True)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="warning"):
            yield Static(self.title_text, id="dialog-title")
            with VerticalScroll(id="rollout-plan"):  # a long plan scrolls; the buttons stay in view
                yield Static(self._body(), id="dialog-body")
            yield Static(self.refusal or "", id="dialog-refusal")
            with Horizontal(id="dialog-buttons"):
                yield Button("Force anyway (f)", id="force", variant="error")
                yield Button(self.confirm_label, id="confirm", variant="warning")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        super().on_mount()
        self.fit_plan()

    def on_resize(self) -> None:
        self.fit_plan()

    def fit_plan(self) -> None:
        """The plan scrolls in what 90% of the window leaves after the border, the title, the refusal and the
        buttons, so the buttons always show (CSS has no calc())."""
        refusal = (1 + len((self.refusal or "").splitlines()) + bool(self.hint)) if self.refusal else 0
        room = int(self.app.size.height * 0.9) - FRAME_LINES - refusal
        self.query_one("#rollout-plan", VerticalScroll).styles.max_height = max(3, room)

    def action_scroll_plan(self, lines: int) -> None:
        """The plan scrolls from the keyboard while the focus stays on Cancel (Enter must not start it)."""
        plan = self.query_one("#rollout-plan", VerticalScroll)
        plan.scroll_to(y=plan.scroll_y + lines, animate=False)

    def set_plan(self, lines: list[str], refusal: str | None, forceable: bool = False, hint: str | None = None
                 ) -> None:
        super().set_plan(lines, refusal, False)  # the rollout's refusals are not guardrails to override
        if self.is_mounted:
            self.fit_plan()
