"""The fleet table filled with every row: the first refresh, and a resize that shows other columns (the table is
rebuilt). The longest block of the UI loop (loop_probe.LoopProbe: how late a 1 ms sleeper wakes; before it
shared the Prometheus benchmark's probe, the gap between wake-ups, 1 ms more) and the loop's CPU from the snapshot
handed over (or the resize) until the table is painted and idle, against Textual's own path in the same run
(baseline): rows added one by one with ``DataTable.add_row``, a Text per cell, and every new row's cells measured
on idle (``_update_dimensions``).

    .venv/bin/python tests/benchmarks/bench_tui_fill.py [NODES ...]   (default 1000 5000)

The first fill here is `FleetTable.update_fleet`, which makes the rows' cells and their diff on the UI thread
(the console makes them in its refresh thread: bench_tui_end_to_end's "first refresh" is that path); a rebuild
makes no cells, only the table's rows from those it has, then Textual repaints the whole screen at the new
column widths (every visible cell rendered again: most of a rebuild's block now).

Each figure is the median of ROUNDS alternated runs (ours, Textual's, ...), one app each, 160x45, the fleet from
tests/tui/fakes.FakeFleet (its figures vary node by node: ~3 distinct cells in 4 at 1,000 nodes).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))

from fakes import FakeFleet  # noqa: E402
from loop_probe import LoopProbe  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

import asrtop.tui.textual_internals as internals  # noqa: E402
import asrtop.tui.widgets.fleet_table as fleet_table  # noqa: E402
from asrtop.tui.format import table_context  # noqa: E402
from asrtop.tui.widgets.fleet_table import FleetTable  # noqa: E402

ROUNDS = 5
WIDE, NARROW = 160, 100  # the rebuild: 100 columns show fewer of the table's columns than 160


class TableApp(App):
    CSS = "FleetTable { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield FleetTable()


@contextmanager
def textuals_path():
    """Rows added one by one through add_row, a Text made per cell, every new row measured on idle."""
    saved = (fleet_table.add_rows_at_once, fleet_table._row_texts, internals.VisibleCellCache._update_dimensions)

    def texts_per_cell(cells, names, shown, colour):
        for name in names:
            yield name, [fleet_table._text(cells[name][i], key.value, colour) for i, key in shown]

    fleet_table.add_rows_at_once, fleet_table._row_texts = internals.add_rows_one_by_one, texts_per_cell
    internals.VisibleCellCache._update_dimensions = DataTable._update_dimensions
    try:
        yield
    finally:
        fleet_table.add_rows_at_once, fleet_table._row_texts, internals.VisibleCellCache._update_dimensions = saved


async def settled(pilot, table: FleetTable) -> None:
    """Until the table's rows are sized and its bands painted, and the loop had a quiet frame after."""
    for _ in range(500):
        await pilot.pause(0.02)
        if not table.repaint_pending and not table._require_update_dimensions:
            break
    await pilot.pause(0.1)


async def fill(n: int) -> dict[str, float]:
    """One app: the first fill of `n` rows, then a rebuild (narrow, wide again); block and CPU (ms) of each."""
    fleet = FakeFleet(n)
    app = TableApp()
    out = {}
    async with app.run_test(size=(WIDE, 45)) as pilot:
        table = app.query_one(FleetTable)
        probe = LoopProbe(0.001)
        await pilot.pause(0.2)
        snap = fleet.build(0)
        ctx = table_context(snap)
        for what, act in (("first fill", lambda: table.update_fleet(snap, ctx)),
                          ("rebuild (narrower)", lambda: pilot.resize_terminal(NARROW, 45)),
                          ("rebuild (wider)", lambda: pilot.resize_terminal(WIDE, 45))):
            rebuilds = table.rebuilds
            probe.take()
            c0 = time.thread_time()
            done = act()
            if asyncio.iscoroutine(done):
                await done
            await settled(pilot, table)
            out[what + " CPU"] = (time.thread_time() - c0) * 1000
            out[what + " block"] = probe.take() * 1000
            assert table.rebuilds == rebuilds + 1 and table.row_count == n, (what, table.rebuilds, table.row_count)
        probe.stop()
    return out


async def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 5000]
    for n in sizes:
        ours, textual = [], []
        for _ in range(ROUNDS):
            ours.append(await fill(n))
            with textuals_path():
                textual.append(await fill(n))
        print(f"fleet table, {n:,} nodes, {WIDE}x45, median of {ROUNDS} alternated runs "
              f"(UI thread CPU until painted and idle, probe's longest block), ms")
        for key in ours[0]:
            mine, theirs = (statistics.median(r[key] for r in runs) for runs in (ours, textual))
            print(f"  {key:28} {mine:7.1f}   Textual's path {theirs:7.1f}   -> {mine / theirs:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
