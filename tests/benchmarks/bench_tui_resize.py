"""After the window shrinks and grows again: the fleet table's paint per refresh, against a table that never
shrank (baseline, same run).

Textual's LRUCache marks itself full the first time it passes its size and from then on evicts an entry for
each one added, whatever its size becomes. The fleet table sizes its render caches to the window
(asrtop.tui.textual_internals.bound_render_caches): a shrink used to leave the cell cache at the small size
for good, so every later paint rendered every visible cell again. Per refresh (1,000 nodes, 160x45, the
fleet's figures moving as in tests/tui/fakes.FakeFleet): cells rendered anew and the CPU of the screen
updates, median of 6 refreshes.

    .venv/bin/python tests/benchmarks/bench_tui_resize.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))

from fakes import FakeFleet  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.screen import Screen  # noqa: E402

import asrtop.tui.textual_internals as internals  # noqa: E402
from asrtop.tui.format import table_context  # noqa: E402
from asrtop.tui.widgets.fleet_table import FleetTable  # noqa: E402

COUNT = {"cells": 0, "paint": 0.0}
_render_text_cell = internals.VisibleCellCache._render_text_cell
_screen_update = Screen._on_timer_update


def _counted_cell(self, *args):
    COUNT["cells"] += 1
    return _render_text_cell(self, *args)


def _timed_update(self) -> None:
    t = time.thread_time()
    _screen_update(self)
    COUNT["paint"] += time.thread_time() - t


internals.VisibleCellCache._render_text_cell = _counted_cell
Screen._on_timer_update = _timed_update


class TableApp(App):
    CSS = "FleetTable { height: 1fr; }"  # its size from the first layout, as in the console (no rows yet)

    def compose(self) -> ComposeResult:
        yield FleetTable()


async def refreshes(shrink: bool, n: int = 1000, rounds: int = 8) -> tuple[float, float]:
    """(cells rendered, paint ms) per refresh, medians, after an optional shrink to 8 lines and back."""
    fleet = FakeFleet(n)
    app = TableApp()
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause(0.2)
        snap = fleet.build(0)
        table.update_fleet(snap, table_context(snap))
        await pilot.pause(0.5)
        if shrink:
            await pilot.resize_terminal(160, 8)
            await pilot.pause(0.5)
            snap = fleet.build(100)  # a refresh while it is small, as the console's go on every second
            table.update_fleet(snap, table_context(snap))
            await pilot.pause(0.5)
            await pilot.resize_terminal(160, 45)
            await pilot.pause(0.5)
        cells, paint = [], []
        for tick in range(1, rounds + 1):
            COUNT["cells"], COUNT["paint"] = 0, 0.0
            snap = fleet.build(tick)
            table.update_fleet(snap, table_context(snap))
            await pilot.pause(0.3)  # every band painted
            cells.append(COUNT["cells"])
            paint.append(COUNT["paint"] * 1000)
    return statistics.median(cells[2:]), statistics.median(paint[2:])


async def main() -> None:
    base_cells, base_paint = await refreshes(False)
    cells, paint = await refreshes(True)
    print("fleet table, 1,000 nodes, 160x45, per refresh (median of 6)")
    print(f"  never resized:              {base_cells:5.0f} cells rendered, paint {base_paint:5.1f} ms CPU")
    print(f"  after 8 lines and back:     {cells:5.0f} cells rendered, paint {paint:5.1f} ms CPU "
          f"({cells / base_cells:.2f}x the cells, {paint / base_paint:.2f}x the paint)")


if __name__ == "__main__":
    asyncio.run(main())
