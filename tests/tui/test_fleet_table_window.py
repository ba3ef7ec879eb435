"""A refresh works out the cells of the rows on screen (and a screen's worth each side) only; the other rows
are deferred with their node and worked out when they come into view, before they are painted (issue 17: the
diff of a 1,000-node fleet called row_cells for every row, ~110 ms of CPU a refresh)."""

from __future__ import annotations

from fakes import FakeFleet
from screen import screen_lines, wait_for
from textual.app import App, ComposeResult

import asrtop.tui.refresh as refresh
from asrtop.tui.format import table_context
from asrtop.tui.refresh import RowsView, diff_rows, restyle
from asrtop.tui.widgets.fleet_table import FleetTable

N = 300
SIZE = (160, 20)


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield FleetTable()


def shown_rows(table: FleetTable) -> list[str]:
    first = int(table.scroll_offset.y)
    return table.shown_nodes[first:first + table.size.height - 1]  # less the header line


async def bottom_screen(snap) -> list[str]:
    """What a table that was given `snap` alone shows scrolled to its last row."""
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(FleetTable)
        table.update_fleet(snap, table_context(snap))
        await pilot.pause()
        table.action_scroll_bottom()
        await pilot.pause()
        return screen_lines(app)


async def test_a_refresh_works_out_the_rows_near_the_screen_and_the_others_when_they_show(monkeypatch):
    fleet = FakeFleet(N)
    first, moved = fleet.build(0), fleet.build(1)  # every node's figures move between the two
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(FleetTable)
        table.update_fleet(first, table_context(first))
        await pilot.pause()
        worked = []
        real = refresh.row_cells
        monkeypatch.setattr(refresh, "row_cells", lambda node, ctx: worked.append(node.name) or real(node, ctx))
        ctx = table_context(moved)
        table.update_fleet(moved, ctx)
        await pilot.pause()
        height = table.size.height
        assert 0 < len(worked) <= 3 * height < N  # the rows on screen and a screen each side, not all 300
        assert table.deferred == {f"node-{i}" for i in range(1, N + 1)} - set(worked)
        nodes = {n.name: n for n in moved.nodes}
        for name in shown_rows(table):  # what shows is the new snapshot's
            assert table.cells[name] == real(nodes[name], ctx), name
        table.action_scroll_bottom()
        await pilot.pause()
        assert table.worked_out > 0 and table.shown_nodes[-1] not in table.deferred
        for name in shown_rows(table):
            assert table.cells[name] == real(nodes[name], ctx), name
            assert [str(t) for t in table.get_row(name)] == [table.cells[name][i][0] for i in table.shown_columns]
        screen = screen_lines(app)
    assert screen == await bottom_screen(moved)


def test_restyling_a_deferred_row_works_it_out():
    """A deferred row whose selection changed after the diff was made is redone, so no longer deferred."""
    fleet = FakeFleet(6)
    base = diff_rows(fleet.build(0), table_context(fleet.build(0)), RowsView(), {}).cells
    snap = fleet.build(1)
    diff = diff_rows(snap, table_context(snap), RowsView(), base, window=(0, 1))  # rows 0-1 near, 2-5 deferred
    assert set(diff.deferred) == {"node-3", "node-4", "node-5", "node-6"}
    assert diff.cells["node-5"] is base["node-5"]
    again = restyle(diff, table_context(snap, selected={"node-5"}))
    assert set(again.deferred) == {"node-3", "node-4", "node-6"}
    assert again.cells["node-5"][0][0] == "●"


async def test_a_refresh_repaints_the_table_a_band_of_lines_a_frame(monkeypatch):
    """Every row on screen changed: the repaint comes a band of lines a frame (no single paint of the whole
    table holds the UI loop), top first, and ends showing what a fresh table shows."""
    from asrtop.tui.widgets.fleet_table import band_rows

    fleet = FakeFleet(N)
    first, moved = fleet.build(0), fleet.build(1)
    app = TableApp()
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.query_one(FleetTable)
        table.update_fleet(first, table_context(first))
        await pilot.pause()
        paints: list[list[int]] = []  # the table lines rendered, by paint
        lines, line = FleetTable.render_lines, FleetTable.render_line
        monkeypatch.setattr(FleetTable, "render_lines", lambda self, crop: paints.append([]) or lines(self, crop))
        monkeypatch.setattr(FleetTable, "render_line", lambda self, y: paints[-1].append(y) or line(self, y))
        table.update_fleet(moved, table_context(moved))
        assert table.repaint_pending
        await wait_for(pilot, lambda: not table.repaint_pending, what="every band painted")  # a clock, not a
        await pilot.pause()  # count of pauses: a loaded machine's pause can come back before the first band
        painted = [p for p in paints if p]
        band = band_rows(table.size.width)
        assert len(painted) >= 3 and all(len(p) <= band for p in painted), painted
        assert [p[0] for p in painted[:3]] == [0, band, 2 * band]
        assert sorted(y for p in painted for y in p) == list(range(table.size.height))
        screen = screen_lines(app)
    app = TableApp()
    async with app.run_test(size=(160, 45)) as pilot:
        app.query_one(FleetTable).update_fleet(moved, table_context(moved))
        await pilot.pause()
        assert screen == screen_lines(app)


async def test_the_first_band_is_painted_a_frame_after_the_refresh_is_applied(monkeypatch):
    """The refresh's apply (and the header's paint that follows it) and the first band are not one stretch on
    the UI loop: together they held it ~16 ms at 1,000 nodes (bench_tui_end_to_end's longest blocks)."""
    import time

    from asrtop.tui.widgets.fleet_table import FRAME

    fleet = FakeFleet(N)
    first, moved = fleet.build(0), fleet.build(1)
    app = TableApp()
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.query_one(FleetTable)
        table.update_fleet(first, table_context(first))
        await pilot.pause()
        painted_at: list[float] = []  # when a table line was rendered (not taken from the line cache)
        line = FleetTable.render_line
        monkeypatch.setattr(FleetTable, "render_line", lambda self, y: painted_at.append(time.perf_counter()) or line(self, y))
        table.update_fleet(moved, table_context(moved))
        applied = time.perf_counter()
        assert table.repaint_pending  # from the apply on: the bench waits for the last band with it
        await wait_for(pilot, lambda: not table.repaint_pending, what="every band painted")
        assert painted_at and painted_at[0] - applied >= FRAME * 0.5, [t - applied for t in painted_at]
