"""The console's refresh pipeline (asrtop.tui.refresh): merge, history, problem rules and the table's diff run
in a thread off the UI loop; the UI sets exactly the cells that changed, also when the operator changed the
selection while the refresh was in flight."""

import threading

from fakes import FakeFleet
from screen import wait_for

from asrtop.tui.app import AsrtopApp
from asrtop.tui.format import COLUMN_KEYS, table_context
from asrtop.tui.refresh import RowsView, diff_rows, restyle

WEIGHT = COLUMN_KEYS.index("weight")


async def test_the_snapshot_a_refresh_replaced_is_freed_in_a_thread_not_on_the_ui_loop():
    """Each refresh replaces the last snapshot (its nodes, readings and statuses: ~17 objects a node, 3-5 ms to
    free at 1,000 nodes). Its last reference used to go inside the UI's apply; the poll worker now frees it in
    a thread once the table is painted, before the next poll."""
    import weakref

    fleet = FakeFleet(6)
    app = AsrtopApp(fleet, None, cluster="lab", refresh=0.05)
    freed_on_ui: list[bool] = []
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 2, what="two refreshes")
        for _ in range(3):
            seen = app.refreshes
            weakref.finalize(app.snapshot, lambda: freed_on_ui.append(threading.current_thread() is
                                                                       threading.main_thread()))
            await wait_for(pilot, lambda: app.refreshes > seen and len(freed_on_ui) > _, what="the snapshot freed")
    assert freed_on_ui == [False, False, False]


async def test_refresh_merges_off_the_ui_thread_and_sets_only_the_changed_cells():
    fleet = FakeFleet(6)
    app = AsrtopApp(fleet, None, cluster="lab", refresh=0.05)
    rules = app.problem_tracker.update
    rules_threads = []

    def update(*args):
        rules_threads.append(threading.get_ident())
        return rules(*args)

    app.problem_tracker.update = update
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 2 and app.fleet_screen.table.row_count == 6,
                       what="two refreshes")
        ui = threading.get_ident()
        assert fleet.merge_threads and ui not in fleet.merge_threads
        assert rules_threads and ui not in rules_threads
        table = app.fleet_screen.table
        before, seen = table.updates, app.refreshes
        fleet.weight["node-3"] = 7  # one figure of one node changes; the fake's clock and numbers stand still
        await wait_for(pilot, lambda: app.refreshes >= seen + 2, what="a refresh polled after the change")
        assert table.updates - before == 1
        assert table.get_cell("node-3", "weight").plain == "7"
        assert ui not in fleet.merge_threads


class PollOnly:
    """A polling source with `poll` and `snapshot` and nothing else of FleetSource (no model files, no agent
    status): the console tells a polling source by `poll` alone."""

    def __init__(self, fleet: FakeFleet):
        self.fleet = fleet

    async def poll(self):
        return await self.fleet.poll()

    async def snapshot(self):
        return await self.fleet.snapshot()

    async def close(self) -> None:
        pass


async def test_a_source_with_poll_merges_off_the_ui_thread_whatever_else_it_offers():
    """isinstance on the runtime protocol checked every method FleetSource names: the benchmark's source, written
    before FleetSource gained agent_status, was taken as not polling, and merged on the UI loop."""
    fleet = FakeFleet(4)
    app = AsrtopApp(PollOnly(fleet), None, cluster="lab", refresh=0.05)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 2, what="two refreshes")
        assert fleet.merge_threads and threading.get_ident() not in fleet.merge_threads


def test_diff_names_the_changed_cells_and_a_later_selection_redoes_only_its_row():
    fleet = FakeFleet(4)
    old = fleet.build()
    base = diff_rows(old, table_context(old), RowsView(), {}).cells
    fleet.weight["node-2"] = 9
    snap = fleet.build()
    diff = diff_rows(snap, table_context(snap), RowsView(), base)
    assert diff.changed == (("node-2", (WEIGHT,)),) and not diff.added and not diff.removed
    assert diff.order == ("node-1", "node-2", "node-3", "node-4")
    made = diff_rows(snap, table_context(snap), RowsView(), base, shown=(0, WEIGHT))  # the columns shown
    assert [(name, [(i, t.plain) for i, t in texts]) for name, texts in made.texts] == [("node-2", [(WEIGHT, "9")])]
    chosen = restyle(made, table_context(snap, selected={"node-4"}))  # selected while the diff was made
    assert dict(chosen.changed) == {"node-2": (WEIGHT,), "node-4": (COLUMN_KEYS.index("sel"),)}
    assert chosen.cells["node-4"][0][0] == "●" and made.cells["node-4"][0][0] == " "  # the diff is not changed
    assert {name: [t.plain for _, t in texts] for name, texts in chosen.texts} == {"node-2": ["9"], "node-4": ["●"]}
    gone = diff_rows(snap, table_context(snap), RowsView(filter_text="node-1"), base)
    assert gone.removed == ("node-2", "node-3", "node-4") and gone.order == ("node-1",)
