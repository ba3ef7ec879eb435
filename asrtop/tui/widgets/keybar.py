"""One line of key hints at the bottom of a screen, built once from the screen's BINDINGS.

Textual's Footer recomposes itself whenever the active bindings change (every modal that opens or
closes); on this console that was about half of the CPU between a key press and its confirmation
modal. The keys here do not change while a screen lives (read-only is fixed at start), so a Static does.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def on_mount(self) -> None:
        screen = self.screen
        text = Text(no_wrap=True, overflow="ellipsis")
        for b in screen.BINDINGS:
            if not isinstance(b, Binding) or not b.show:
                continue
            action = b.action.split("(", 1)[0]
            if action.startswith("app."):
                allowed = True
            else:
                allowed = screen.check_action(action, ())
            if not allowed:
                continue
            key = b.key_display or {"escape": "esc"}.get(b.key.split(",")[0], b.key.split(",")[0])
            text.append(f" {key}", "bold")
            text.append(f" {b.description} ")
        text.append(" ^p", "bold")
        text.append(" palette")
        self.update(text)
