"""The fleet table as an operator meets it (issue 12): fitted to 80 columns with many rows, the node name
frozen, Home/End by row, the sort shown in its header, palette names as the headers read, an empty filter
result that says so, NO_COLOR keeping the hot and drift cells visible, agent-counted figures marked."""

from fakes import DIGEST_B, FakeAudit, FakeController, FakeFleet, fleet_of_12
from screen import screen_lines, screen_text, wait_for

from asrtop.balancers.base import AdminState
from asrtop.tui.app import AsrtopApp
from asrtop.tui.commands import FleetCommands
from asrtop.fleet import AGENT_COUNTED_MARK


def make(fleet):
    return AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600)


async def started(pilot, app):
    await wait_for(pilot, lambda: app.fleet_screen.table.row_count > 0, what="first refresh")
    await pilot.pause(0.05)


def column_header(app) -> str:
    return next(line for line in screen_lines(app) if line.startswith("    node"))


async def test_many_rows_at_80x24_keep_every_shown_column_whole():
    app = make(FakeFleet(40, odd_model=(4,), backups=(12,)))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        table = app.fleet_screen.table
        assert table.max_scroll_y > 0  # the rows overflow: the vertical scrollbar is there
        assert table.max_scroll_x == 0  # ... and took no column's room: nothing scrolls sideways
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert all(len(line) <= 80 for line in screen_lines(app))


async def test_home_and_end_go_to_the_first_and_last_node():
    app = make(FakeFleet(40))
    async with app.run_test(size=(100, 24)) as pilot:
        await started(pilot, app)
        table = app.fleet_screen.table
        await pilot.press("end")
        assert table.cursor_node == "node-40" and table.scroll_x == 0
        assert any(line.lstrip().startswith("node-40 ") for line in screen_lines(app))
        await pilot.press("home")
        assert table.cursor_node == "node-1" and table.scroll_y == 0


async def test_at_any_width_the_node_name_leads_and_nothing_scrolls_sideways():
    app = make(fleet_of_12())
    async with app.run_test(size=(30, 24)) as pilot:
        await started(pilot, app)
        table = app.fleet_screen.table
        for width in (30, 55, 80, 100, 119):
            await pilot.resize_terminal(width, 24)
            await pilot.pause(0.05)
            assert table.max_scroll_x == 0, width
            row = next(line for line in screen_lines(app) if "node-2" in line)
            assert row.split()[:2] == ["node-2", "ready"], (width, row)
            assert len(column_header(app)) <= width


async def test_sort_shows_in_the_header_and_palette_names_are_the_headers():
    app = make(fleet_of_12())
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot, app)
        assert "▲" not in column_header(app) and "▼" not in column_header(app)
        rebuilds = app.fleet_screen.table.rebuilds
        await pilot.press("s")  # node name, A to Z
        assert column_header(app).split()[0] == "node▲"
        await pilot.press("s", "s")  # state, then in-flight: biggest first
        assert "infl▼" in column_header(app).split() and "node▲" not in column_header(app)
        await pilot.press("S")
        assert "infl▲" in column_header(app).split()
        assert app.fleet_screen.table.rebuilds == rebuilds  # a sort mark relabels; the rows stay (1,000 nodes)
        hits = [str(h.text) async for h in FleetCommands(app.screen).search("sort by")]
        for label in ("req/s", "resp", "gmem", "infl", "5xx", "agent"):
            assert f"Sort by {label}" in hits, hits
        assert not {"Sort by rps", "Sort by rt", "Sort by mem", "Sort by inflight"} & set(hits)


async def test_sorting_by_a_column_the_width_hides_shows_it():
    app = make(fleet_of_12())
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        assert "temp" not in column_header(app)
        app.fleet_screen.table.set_sort("temp")
        await pilot.pause(0.05)
        assert "temp▼" in column_header(app).split()
        assert all(len(line) <= 80 for line in screen_lines(app))


async def test_an_empty_filter_result_says_so_and_esc_clears_it():
    app = make(fleet_of_12())
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("slash", *"xyz")
        await wait_for(pilot, lambda: "no node matches 'xyz' — esc clears" in screen_text(app), what="empty line")
        lines = screen_lines(app)
        header = next(i for i, line in enumerate(lines) if line.startswith("    node"))
        assert "no node matches 'xyz'" in lines[header + 1]  # where the rows would be, not at the bottom
        await pilot.press("escape")
        await wait_for(pilot, lambda: "node-12" in screen_text(app), what="rows back")
        assert "no node matches" not in screen_text(app)


async def test_no_color_hot_and_drift_cells_carry_an_attribute_not_only_a_colour(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make(fleet_of_12())  # node-5 at 92 % GPU, node-4 on another model
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot, app)
        assert app.no_color
        table = app.fleet_screen.table

        def segment(node: str, text: str):
            y = table.get_row_index(node) + 1  # below the column header
            for seg in table.render_line(y):
                if text in seg.text:
                    return seg
            raise AssertionError(f"{text!r} not in the {node} row")

        hot = segment("node-5", "92%")
        assert hot.style.reverse and hot.style.bold
        assert hot.style.color is None or hot.style.color.name != "red"  # the terminal's own foreground
        assert segment("node-5", "████").style.bold  # the bar itself stands out too
        drift = segment("node-4", DIGEST_B[:7] + "!")
        assert drift.style.reverse and drift.style.bold
        assert not segment("node-1", "24%").style.reverse  # a normal reading stays plain


async def test_agent_counted_figures_are_marked_and_the_label_says_what_the_mark_means():
    fleet = fleet_of_12()
    fleet.agent_counted = set(range(1, 13))  # nginx: the balancer counts nothing, the agents do
    app = make(fleet)
    async with app.run_test(size=(200, 30)) as pilot:
        await started(pilot, app)
        assert f"{AGENT_COUNTED_MARK}=agent req/s" in column_header(app)
        node2 = next(line for line in screen_lines(app) if " node-2 " in line).split()
        assert f"{AGENT_COUNTED_MARK}5" in node2 and f"{AGENT_COUNTED_MARK}1.7s" in node2
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.1)
        assert "req/s*" in column_header(app)
        assert screen_lines(app)[-2].startswith(" * counted by the node's agent")


async def test_keys_typed_at_once_after_slash_go_to_the_filter_not_to_the_actions():
    """`/node-1` pasted or typed fast: the keys after `/` arrive before a deferred focus would move to the
    filter box, and 'd' in "node" would open a drain on the node under the cursor."""
    from textual import events

    app = make(FakeFleet(12))
    async with app.run_test(size=(120, 35)) as pilot:
        await started(pilot, app)
        for ch in "/node-1":
            app.post_message(events.Key("slash" if ch == "/" else "minus" if ch == "-" else ch, ch))
        await pilot.pause(0.2)
        assert app.screen is app.fleet_screen  # no confirmation opened
        assert app.fleet_screen.query_one("#filter").value == "node-1"
        assert app.fleet_screen.table.filter_text == "node-1"


def test_rows_added_at_once_share_a_text_per_equal_cell_in_a_column():
    """The first fill and every rebuild make each distinct cell's Text once per column (a 1,000-row rebuild made
    16,000 Texts, most of them a state, a weight or a "-" again): the Texts are cell_text's, equal cells in one
    column are one object, and the same string in another column (another justification) is not."""
    from textual.widgets.data_table import ColumnKey

    from asrtop.tui.refresh import cell_text
    from asrtop.tui.widgets.fleet_table import _row_texts

    ok, hot = "green", "bold red"
    cells = {"a": (("a", ""), ("ready", ok), ("3", "")), "b": (("b", ""), ("ready", ok), ("3", "")),
             "c": (("c", ""), ("down", hot), ("3", ""))}
    shown = ((0, ColumnKey("name")), (1, ColumnKey("state")), (2, ColumnKey("weight")))
    for colour in (True, False):
        rows = dict(_row_texts(cells, ["c", "a", "b"], shown, colour))
        assert list(rows) == ["c", "a", "b"]
        for name, texts in rows.items():
            assert texts == [cell_text(cells[name][i], key.value, colour) for i, key in shown]
        assert rows["a"][1] is rows["b"][1] and rows["a"][1] is not rows["c"][1]
        assert rows["a"][2] is rows["b"][2] is rows["c"][2]
        assert rows["a"][2].justify == "right" and rows["a"][1].justify == "left"


async def test_a_shared_text_changes_one_row_only():
    """A refresh sets a changed cell's new Text in its row: a Text the first fill shared with other rows is
    replaced there, never changed in place, so the other rows keep showing theirs."""
    fleet = FakeFleet(6)
    app = make(fleet)
    async with app.run_test(size=(120, 24)) as pilot:
        await started(pilot, app)
        table = app.fleet_screen.table
        names = table.shown_nodes
        state = [key for key in table.columns if key.value == "state"][0]
        first, second = (table.get_cell(names[i], state) for i in (0, 1))
        assert first is second and first.plain.strip() == "ready"  # one Text in both rows
        fleet.admin[names[0]] = AdminState.MAINT
        n = app.refreshes
        app.refresh_now()
        await wait_for(pilot, lambda: app.refreshes > n and "ready" not in table.get_cell(names[0], state).plain,
                       what="the refresh that puts the first node in maintenance")
        assert table.get_cell(names[1], state) is second and second.plain.strip() == "ready"
        assert all("ready" in table.get_cell(name, state).plain for name in names[1:])


def rename(fleet: FakeFleet, index: int, name: str) -> None:
    """The fake fleet's node `index` (0-based) goes by `name` from its next snapshot on."""
    old = fleet.names[index]
    fleet.names[index] = name
    for by_name in (fleet.admin, fleet.weight, fleet.backup):
        by_name[name] = by_name.pop(old)


async def test_the_name_column_is_as_wide_as_the_longest_name_up_to_its_cap():
    """The width comes with the refresh (TableContext.names_width, worked out in the refresh thread): a longer
    name that joins widens the column at the next refresh, a name past NAME_WIDTH_MAX is cut at it."""
    from textual.widgets.data_table import ColumnKey

    from asrtop.tui.format import NAME_WIDTH_MAX

    fleet = FakeFleet(6)
    app = make(fleet)
    async with app.run_test(size=(160, 30)) as pilot:
        await started(pilot, app)
        table = app.fleet_screen.table

        def name_column() -> int:
            return table.columns[ColumnKey("name")].width

        assert name_column() == len("node-1")
        rename(fleet, 2, "gpu-node-3-rack-b")
        app.refresh_now()
        await wait_for(pilot, lambda: name_column() == len("gpu-node-3-rack-b"), what="the wider name column")
        rename(fleet, 4, "x" * (NAME_WIDTH_MAX + 9))
        app.refresh_now()
        await wait_for(pilot, lambda: name_column() == NAME_WIDTH_MAX, what="the name column at its cap")
        assert "gpu-node-3-rack-b" in screen_text(app)
