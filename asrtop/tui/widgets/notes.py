"""One line under the header while the source has notes (FleetSnapshot.notes): config warnings such as
an HAProxy admin socket on a non-loopback address, runtime changes lost to a balancer restart.

'⚠ 1 note: <the note>' (cut to the width with '…'), or '⚠ 3 notes, ? lists all: <the first>'. The text
carries the meaning without colour; `?` shows every note in full, and each new note is also notified once.
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import Static

NOTE_MARK = "⚠"


def notes_mark(notes: Sequence[str]) -> str:
    """'⚠ 1 note' / '⚠ 3 notes'; '' without notes."""
    if not notes:
        return ""
    return f"{NOTE_MARK} {len(notes)} note{'s' if len(notes) != 1 else ''}"


def notes_text(notes: Sequence[str]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if not notes:
        return text
    text.append(notes_mark(notes) + (", ? lists all: " if len(notes) > 1 else ": "), "bold yellow")
    text.append(notes[0], "yellow")
    return text


class NotesLine(Static):
    """Hidden without notes; repaints only when the notes change."""

    def __init__(self, **kw):
        super().__init__("", classes="hidden", **kw)
        self.notes: tuple[str, ...] = ()

    def show(self, notes: Sequence[str]) -> None:
        notes = tuple(notes)
        if notes == self.notes:
            return
        self.notes = notes
        self.set_class(not notes, "hidden")
        self.update(notes_text(notes))
