"""Read what the console shows: the exported SVG screenshot turned back into lines of text."""

from __future__ import annotations

import asyncio
import html
import re
import time

_TEXT = re.compile(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)" textLength="[\d.]+"[^>]*>([^<]*)</text>')


def screen_lines(app) -> list[str]:
    """Rows of the current screen as plain text (trailing spaces stripped)."""
    svg = app.export_screenshot()
    cells: dict[float, list[tuple[float, str]]] = {}
    for x, y, text in _TEXT.findall(svg):
        cells.setdefault(float(y), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    width = None
    m = re.search(r'textLength="([\d.]+)"[^>]*>([^<]+)</text>', svg)
    if m:  # the character width, from any run of text
        width = float(m.group(1)) / max(1, len(html.unescape(m.group(2))))
    lines = []
    for y in sorted(cells):
        row = ""
        for x, text in sorted(cells[y]):
            col = round(x / width) if width else len(row)
            row = row.ljust(col) + text
        lines.append(row.rstrip())
    return lines


def screen_text(app) -> str:
    return "\n".join(screen_lines(app))


async def wait_for(pilot, cond, timeout: float = 15.0, what: str = "condition") -> None:
    """Let the app run until cond() holds; fail (not hang) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
    await asyncio.sleep(0)


async def settled(pilot, app, timeout: float = 15.0) -> list[str]:
    """Wait for the first refresh and for the screen to stop changing; return its lines."""
    await wait_for(pilot, lambda: app.refreshes >= 1, timeout, "first refresh")
    deadline = time.monotonic() + timeout
    last = None
    while True:
        await pilot.pause(0.15)
        lines = screen_lines(app)
        if lines == last and lines[-1].strip():
            return lines
        if time.monotonic() > deadline:
            raise AssertionError("screen never settled")
        last = lines


def plan_shown(app) -> bool:
    """A confirmation modal is up, the controller's plan has filled it in (it can be confirmed), and it is laid
    out on the screen. A plan that comes at once (`recover` with nothing to do) is set before the modal is
    even mounted: until the compositor has placed its body, a screenshot of it is empty."""
    from asrtop.tui.screens.confirm import ConfirmScreen

    screen = app.screen
    return (isinstance(screen, ConfirmScreen) and not screen.pending and screen.is_mounted
            and bool(screen.query_one("#dialog-body").region))


async def run_from_palette(pilot, command: str) -> None:
    """Open the command palette (ctrl+p), type `command` and run the first match, as an operator would: each
    step once the palette shows it (the search runs in a worker; fixed pauses ran the wrong thing, or
    nothing, on a loaded machine)."""
    from textual.command import CommandInput, CommandList, CommandPalette
    from textual.worker import WorkerState

    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the command palette")
    palette = app.screen
    await pilot.press(*command)

    def searched() -> bool:
        hits = palette.query_one(CommandList)
        return (palette.query_one(CommandInput).value == command and hits.option_count > 0
                and hits.highlighted is not None
                and not any(w.node is palette and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                            for w in app.workers))  # the app's workers: the palette's search is one of them

    await wait_for(pilot, searched, what=f"the palette's matches for {command!r}")
    hits = palette.query_one(CommandList)
    top = [getattr(getattr(hits.get_option_at_index(i), "hit", None), "score", None)
           for i in range(min(2, hits.option_count))]
    # a tie runs whichever the list happens to show first: the query must name one command
    assert len(top) < 2 or None in top or top[0] > top[1], \
        f"{command!r} matches two commands equally: {hits.get_option_at_index(0).prompt} / " \
        f"{hits.get_option_at_index(1).prompt}"
    await pilot.press("enter")
    await wait_for(pilot, lambda: palette not in app.screen_stack, what="the palette closing")
    await pilot.pause()  # the command itself runs a moment after (call_later)
