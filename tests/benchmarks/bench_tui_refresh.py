"""Budget: one refresh of a 1,000-node fleet into the table <= 50 ms of CPU (time.process_time).

A synthetic snapshot whose numbers move every tick is fed to the real App/FleetScreen/FleetTable (the
same handler a live poll reaches). Baseline in the same process: clear-and-refill of the same table.

    .venv/bin/python tests/benchmarks/bench_tui_refresh.py [--nodes 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))

from fakes import big_fleet  # noqa: E402

from asrtop.tui.app import AsrtopApp, FleetUpdated  # noqa: E402
from asrtop.tui.format import COLUMN_KEYS, row_cells, table_context  # noqa: E402
from asrtop.tui.widgets.fleet_table import _text  # noqa: E402


class Idle:
    """A source that never answers: the benchmark feeds snapshots itself."""

    async def snapshot(self):
        await asyncio.Event().wait()

    async def close(self):
        pass


def cpu_ms(fn) -> float:
    t = time.process_time()
    fn()
    return (time.process_time() - t) * 1000


async def main(nodes: int, rounds: int) -> None:
    snaps = [big_fleet(nodes, tick) for tick in range(rounds + 1)]
    app = AsrtopApp(Idle(), None, cluster="bench")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.1)
        table = app.fleet_screen.table
        first = cpu_ms(lambda: app.on_fleet_updated(FleetUpdated(snaps[0], 1)))
        await pilot.pause(0.05)
        moving, same, frames = [], [], []
        for i, snap in enumerate(snaps[1:], 2):
            moving.append(cpu_ms(lambda: app.on_fleet_updated(FleetUpdated(snap, i))))
            t = time.process_time()
            await pilot.pause(0)  # let the compositor paint the visible rows once
            frames.append((time.process_time() - t) * 1000)
            same.append(cpu_ms(lambda: app.on_fleet_updated(FleetUpdated(snap, i))))
        assert table.row_count == nodes

        def refill(snap):
            ctx = table_context(snap)
            shown = {str(k.value) for k in table.columns}  # a fleet without streams has no streams column
            table.clear()
            for n in snap.nodes:
                table.add_row(*(_text(c, k) for c, k in zip(row_cells(n, ctx), COLUMN_KEYS) if k in shown),
                              key=n.name)
            table._cells.clear()  # the diffing path must not be confused afterwards

        baseline = [cpu_ms(lambda: refill(s)) for s in snaps[1:6]]
    med = statistics.median
    print(f"nodes={nodes} rounds={rounds}")
    print(f"first fill (add {nodes} rows):          {first:7.1f} ms CPU")
    print(f"refresh, numbers moving (median/max):  {med(moving):7.1f} / {max(moving):.1f} ms CPU   budget 50 ms")
    print(f"refresh, nothing changed (median):     {med(same):7.1f} ms CPU")
    print(f"next frame paint (median):             {med(frames):7.1f} ms CPU")
    print(f"baseline clear-and-refill (median):    {med(baseline):7.1f} ms CPU  "
          f"(diffing refresh = {med(moving) / med(baseline):.2f}x of it)")
    print("PASS" if max(moving) <= 50 else "OVER BUDGET")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()
    asyncio.run(main(a.nodes, a.rounds))
