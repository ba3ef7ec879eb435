"""asrtop.tui.textual_internals: the fast path is taken with the installed Textual, the public route shows
the same cells, and no other console module touches Textual internals.

If test_fast_path_is_taken_with_the_installed_textual fails after a Textual upgrade, the DataTable
internals named in textual_internals' docstring changed: re-check them against the new release (and
bench_tui_refresh.py), then update CHECKED_AGAINST.
"""

from __future__ import annotations

import logging
from functools import partial
import re
from pathlib import Path

import pytest
import textual
from rich.text import Text
from fakes import FakeFleet
from screen import screen_lines, wait_for
from textual.app import App, ComposeResult

import asrtop.tui
import asrtop.tui.textual_internals as internals
from asrtop.tui.format import COLUMN_KEYS, table_context
from asrtop.tui.widgets.fleet_table import FleetTable

N = 8
# real GPUs, then simulated ones (the gpu/gmem column labels change), then numbers moving
SNAPSHOTS = (FakeFleet(N, real_gpus=tuple(range(1, N + 1))).build(0), FakeFleet(N).build(1),
             FakeFleet(N).build(2))


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield FleetTable()


async def shown(snaps) -> tuple[list[list[str]], list[list[object]], FleetTable]:
    """Feed `snaps` to one FleetTable in turn; the screen lines after each, its last rows, the table."""
    app = TableApp()
    screens = []
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(FleetTable)
        for snap in snaps:
            table.update_fleet(snap, table_context(snap))
            await pilot.pause()
            # the table repaints its lines in bands, the first a frame later: a screenshot before that shows
            # the lines as they were (the public route's update_cell refreshes at once: the two would differ)
            await wait_for(pilot, lambda: not table.repaint_pending, what="the table's bands painted")
            screens.append(screen_lines(app))
        rows = [table.get_row(name) for name in table.shown_nodes]
    return screens, rows, table


async def fresh(snap) -> tuple[list[str], list[list[object]]]:
    """What a new table shows for `snap` alone (every cell added, none updated)."""
    screens, rows, _ = await shown([snap])
    return screens[-1], rows


async def test_fast_path_is_taken_with_the_installed_textual():
    screens, rows, table = await shown(SNAPSHOTS)
    assert internals.fast_path_problem(table) is None, internals.fast_path_problem(table)
    assert internals.cell_store(table) is not None
    assert table.updates > 0  # the later snapshots changed cells in place...
    assert table.slow_updates == 0, f"{table.slow_updates} of {table.updates} cells went through update_cell"
    for before, after in zip(screens, screens[1:]):
        assert before != after  # ...and each change reached the screen
    for i, snap in enumerate(SNAPSHOTS):  # what is shown is what a new table shows for that snapshot
        assert screens[i] == (await fresh(snap))[0]
    assert "gpu ~=sim" in "\n".join(screens[-1])  # the header relabelled, not served from its cache
    assert rows == (await fresh(SNAPSHOTS[-1]))[1]  # same cells, styles included


async def test_public_route_shows_the_same_cells(monkeypatch, caplog):
    fast_screens, fast_rows, _ = await shown(SNAPSHOTS)
    monkeypatch.setattr(internals, "cell_store", lambda table: None)  # as with a Textual that has no _data
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        screens, rows, table = await shown(SNAPSHOTS)
    assert table.updates > 0 and table.slow_updates == table.updates
    assert screens == fast_screens
    assert rows == fast_rows
    said = [r.getMessage() for r in caplog.records if r.name == "asrtop.tui.widgets.fleet_table"]
    assert len(said) == 1 and "update_cell" in said[0] and textual.__version__ in said[0]


_DEFINES = re.compile(r"def _([a-z]\w*)|self\._([a-z]\w*)\s*(?::[^=\n]+)?=(?!=)")


def _defined(src: str) -> set[str]:
    """Underscored names a source defines: `def _x`, `self._x =`, `self._x: T =`."""
    return {a or b for a, b in _DEFINES.findall(src)}


def test_no_textual_internals_outside_their_module():
    """An underscored name that Textual defines and asrtop does not, used anywhere in asrtop/tui but
    textual_internals.py (or fetched by getattr with a string), is a Textual internal in the wrong place."""
    textual_src = "\n".join(p.read_text() for p in Path(textual.__file__).parent.rglob("*.py"))
    tui = Path(asrtop.tui.__file__).parent
    ours = {p: p.read_text() for p in tui.rglob("*.py") if p.name != "textual_internals.py"}
    textual_private = _defined(textual_src) - _defined("\n".join(ours.values()))
    found = []
    for path, src in ours.items():
        used = {a or b for a, b in re.findall(r"\._([a-z]\w*)|getattr\([^,]+,\s*['\"]_([a-z]\w*)", src)}
        found += [f"{path.relative_to(tui)}: _{name}" for name in sorted(used & textual_private)]
    assert not found, f"Textual internals outside asrtop/tui/textual_internals.py: {found}"


async def test_cached_cell_renders_are_textuals():
    """VisibleCellCache (a cell renders again only when its value changed; one render per distinct content)
    gives the segments Textual's own _render_cell gives, styles and mouse meta included, for every kind of
    cell the table shows (a hot GPU's accent, a stale row, the fixed columns) under the cursor and hover too,
    and a cell whose value changed is rendered anew, not served from the cache."""
    from textual.widgets import DataTable

    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(FleetTable)
        fixed = table.get_component_styles("datatable--fixed").rich_style
        for snap in (FakeFleet(N, dead_agents=(3,)).build(1), FakeFleet(N, dead_agents=(3,)).build(2)):
            table.update_fleet(snap, table_context(snap))
            await pilot.pause()
            for row in range(table.row_count):
                for col, column in enumerate(table.ordered_columns):
                    for style in (table.rich_style, fixed):
                        for cursor, hover in ((False, False), (True, False), (False, True)):
                            args = (row, col, style, column.get_render_width(table), cursor, hover)
                            ours = table._render_cell(*args)
                            assert ours == DataTable._render_cell(table, *args), (row, column.key, cursor, hover)
                            assert table._render_cell(*args) is ours  # the next ask is a hit
        assert len(table._content_renders) > 0  # the cells took the shared-content path


async def test_rows_put_together_in_a_paint_are_textuals(monkeypatch):
    """VisibleCellCache._render_line_in_row (a paint's constants worked out once, cached cells taken straight
    from the cache) gives what DataTable's own gives, segment for segment, styles and mouse meta included:
    the header and every row, the cursor's and the hover's rows and others, after cells changed, and with
    the fixed columns' styles. Both are asked with the row cache emptied, so neither answers from the other."""
    from textual.coordinate import Coordinate
    from textual.widgets import DataTable

    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(FleetTable)
        compared = 0
        table.__dict__["_asrtop_paint"] = {}  # no columns yet (fewer than the fixed ones): the header line alone
        try:
            ours = table._render_line_in_row(table._header_row_key, 0, table.rich_style, Coordinate(0, 0),
                                             Coordinate(0, 0))
        finally:
            table.__dict__["_asrtop_paint"] = None
        table._row_render_cache.clear()
        assert ours == DataTable._render_line_in_row(table, table._header_row_key, 0, table.rich_style,
                                                     Coordinate(0, 0), Coordinate(0, 0))
        for snap in (FakeFleet(N, dead_agents=(3,)).build(1), FakeFleet(N, dead_agents=(3,), odd_model=(5,)).build(2)):
            table.update_fleet(snap, table_context(snap))
            await pilot.pause()
            keys = [table._header_row_key, *(row.key for row in table.ordered_rows)]
            for cursor, hover, show_hover in ((Coordinate(0, 0), Coordinate(0, 0), False),
                                              (Coordinate(2, 0), Coordinate(4, 1), True)):
                table._show_hover_cursor = show_hover
                for key in keys:
                    for style in (table.rich_style, table.get_component_styles("datatable--even-row").rich_style):
                        table._row_render_cache.clear()
                        table.__dict__["_asrtop_paint"] = {}
                        try:
                            ours = table._render_line_in_row(key, 0, style, cursor, hover)
                        finally:
                            table.__dict__["_asrtop_paint"] = None
                        table._row_render_cache.clear()
                        theirs = DataTable._render_line_in_row(table, key, 0, style, cursor, hover)
                        assert ours == theirs, (key, cursor, hover, show_hover)
                        compared += 1
        assert compared == 2 * 2 * 2 * (N + 1)
        calls = []  # and a paint takes this path: Textual's own is not asked
        monkeypatch.setattr(DataTable, "_render_line_in_row", lambda *a, **k: calls.append(a))
        table._line_cache.clear()
        table._row_render_cache.clear()
        table.refresh()
        await pilot.pause()
        assert calls == [] and "node-1" in screen_lines(app)[1]


@pytest.mark.parametrize("width, columns", [(160, "fit"), (80, "fit"), (120, "exact"), (80, "wide")])
async def test_lines_joined_in_a_paint_are_textuals(monkeypatch, width, columns):
    """VisibleCellCache._render_line (a row's cells joined as Textual's crop and cut leave them, in one Strip)
    gives what DataTable's own gives for every line, segment for segment: header and rows, cursor and hover on
    some, at widths that leave room right of the columns and at one whose columns are wider than the table
    (scrolled sideways too: Textual's path). The fleet table fits its columns to the width; "exact" widens the
    last to fill it, "wide" past it. Both are asked with the line and row caches emptied. Where the columns
    fit, a paint takes this path: Textual's own is not asked."""
    from textual.coordinate import Coordinate
    from textual.widgets import DataTable

    app = TableApp()
    async with app.run_test(size=(width, 20)) as pilot:
        table = app.query_one(FleetTable)
        snap = FakeFleet(30, dead_agents=(3,), odd_model=(5,)).build(1)
        table.update_fleet(snap, table_context(snap))
        await pilot.pause()
        await wait_for(pilot, lambda: not table.repaint_pending, what="the table's bands painted")
        widths = [column.get_render_width(table) for column in table.ordered_columns]
        if columns != "fit":
            last = table.ordered_columns[-1]
            last.width += width - sum(widths) + (0 if columns == "exact" else 9)
            internals.invalidate_render_caches(table)  # as the table's own relabel does after a width changes
            widths = [column.get_render_width(table) for column in table.ordered_columns]
            assert (sum(widths) == width) is (columns == "exact")
        fits = sum(widths) <= width
        compared = 0
        for scroll_x in ((0,) if fits else (0, 7)):
            for cursor, hover, show_hover in ((Coordinate(0, 0), Coordinate(0, 0), False),
                                              (Coordinate(2, 0), Coordinate(4, 1), True)):
                table.cursor_coordinate, table.hover_coordinate = cursor, hover
                table._show_hover_cursor = show_hover
                for y in range(table.size.height):
                    lines = []
                    for render in (table._render_line, partial(DataTable._render_line, table)):
                        table._line_cache.clear()
                        table._row_render_cache.clear()
                        table.__dict__["_asrtop_paint"] = {"frame": table._paint_frame()}
                        try:
                            lines.append(render(y, scroll_x, scroll_x + width, table.rich_style))
                        finally:
                            table.__dict__["_asrtop_paint"] = None
                    ours, theirs = lines
                    assert list(ours) == list(theirs), (y, scroll_x, cursor, hover)
                    assert ours.cell_length == theirs.cell_length == width
                    compared += 1
        assert compared == (1 if fits else 2) * 2 * table.size.height
        calls = []
        real = DataTable._render_line
        monkeypatch.setattr(DataTable, "_render_line", lambda *a, **k: calls.append(a) or real(*a, **k))
        table._line_cache.clear()
        table._row_render_cache.clear()
        table.refresh()
        await pilot.pause()
        assert (calls == []) is fits and "node-1" in "\n".join(screen_lines(app))


@pytest.mark.parametrize("nodes, size", [(N, (160, 20)), (200, (160, 45))])
async def test_a_refresh_renders_only_the_cells_it_changed(monkeypatch, nodes, size):
    """The paint after a refresh is bounded by the cells that changed, not by the rows shown (nor the fleet):
    one node's weight changed -> one cell goes through Rich, the other visible cells come from the cache. With
    more rows than the cell cache's first size (16 rows, at the first layout), too: it grows with the window."""
    from rich.padding import Padding
    from textual.renderables.styled import Styled

    fleet = FakeFleet(nodes)
    app = TableApp()
    async with app.run_test(size=size) as pilot:
        table = app.query_one(FleetTable)
        snap = fleet.build(0)
        table.update_fleet(snap, table_context(snap))
        await pilot.pause()
        table.refresh()  # a paint at the window's size: the first came while the caches had their first size
        await pilot.pause()
        rendered = []
        real = app.console.render_lines

        def render_lines(renderable, *args, **kw):
            inner = renderable.renderable if isinstance(renderable, Styled) else renderable
            if isinstance(inner, Padding):  # a table cell (Textual's own path wraps it in Styled)
                rendered.append(inner.renderable)
            return real(renderable, *args, **kw)

        built = internals.padded_text_segments

        def padded(text, *args):  # a cell's content built without Rich (the common cells)
            rendered.append(text)
            return built(text, *args)

        monkeypatch.setattr(app.console, "render_lines", render_lines)
        monkeypatch.setattr(internals, "padded_text_segments", padded)
        fleet.weight["node-3"] = 7
        snap = fleet.build(0)
        table.update_fleet(snap, table_context(snap))
        assert table.updates == 1
        # the bands come a frame apart: wait for the last by the clock (a loaded machine's pause comes back
        # before the first band's timer)
        await wait_for(pilot, lambda: not table.repaint_pending, what="every band painted")
        assert [str(t).strip() for t in rendered] == ["7"], [str(t) for t in rendered]
        assert "7" in screen_lines(app)[3]


def painted(table) -> list[list[tuple[str, str]]]:
    """Every line the table paints at its size now: each segment's text and style."""
    from textual.geometry import Region

    return [[(seg.text, str(seg.style)) for seg in line]
            for line in table.render_lines(Region(0, 0, table.size.width, table.size.height))]


async def test_a_resize_that_keeps_the_width_puts_no_shown_line_together_again(monkeypatch):
    """The problems panel opening or closing changes the table's height, not its width: the lines already on
    screen stay as they were rendered (DataTable's own resize stepped the cache generation, so every line was
    put together again: ~390 lines in 12 resizes at 1,000 nodes). A wider table puts its lines together again.
    Either way it paints what a new table of that size paints, segment for segment (text and style, the room
    right of the columns included)."""
    fleet = FakeFleet(60)
    snap = fleet.build(0)
    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(FleetTable)
        table.update_fleet(snap, table_context(snap))
        await wait_for(pilot, lambda: table.size.height == 20 and not table.repaint_pending,
                       what="the table laid out and its bands painted")
        await pilot.pause()
        put_together = []
        real = internals.VisibleCellCache._render_line_in_row

        def counted(self, row_key, *args, **kw):
            put_together.append(row_key)
            return real(self, row_key, *args, **kw)

        monkeypatch.setattr(internals.VisibleCellCache, "_render_line_in_row", counted)
        shown_before = {key[0] for key in table._row_render_cache.keys()}  # the lines put together so far
        assert len(shown_before) >= 16
        generation = table._update_count
        await pilot.resize_terminal(160, 30)
        await wait_for(pilot, lambda: table.size.height == 30, what="the taller table")
        await pilot.pause()
        assert table._update_count == generation
        assert put_together and not shown_before & set(put_together), len(shown_before & set(put_together))
        taller = painted(table)
        put_together.clear()
        await pilot.resize_terminal(170, 30)
        await wait_for(pilot, lambda: table.size.width == 170, what="the wider table")
        await pilot.pause()
        assert shown_before <= set(put_together)
        wider = painted(table)
    for size, seen in (((160, 30), taller), ((170, 30), wider)):
        app = TableApp()
        async with app.run_test(size=size) as pilot:
            table = app.query_one(FleetTable)
            table.update_fleet(snap, table_context(snap))
            await wait_for(pilot, lambda: table.size.height == size[1] and not table.repaint_pending,
                           what="the table laid out and its bands painted")
            await pilot.pause()
            assert painted(table) == seen, size


class Listing(App):
    CSS = "OptionList { border: none; padding: 0; }"

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList
        yield internals.acyclic_caches(OptionList(*(Text(f"problem {i}", no_wrap=True) for i in range(6))))


async def test_replaced_prompts_repaint_only_the_options_that_changed(monkeypatch):
    """The problems panel gives its list new lines every refresh where the words moved (an age, a figure): only
    the options whose prompt is a new object render again, and the list's line layout stays (OptionList's own
    replace measured every option again and rendered every visible line, ~2 ms a refresh at 30 problems). A
    prompt of more than one line takes OptionList's own route. The list shows what it was given."""
    from textual.widgets import OptionList

    app = Listing()
    async with app.run_test(size=(40, 10)) as pilot:
        listing = app.query_one(OptionList)
        await pilot.pause()
        rendered = []
        real = OptionList._get_option_render

        def render(self, option, style):  # an option rendered, not taken from the list's render cache
            padding = self.get_component_styles("option-list--option").padding
            if self._option_render_cache.get((option, style, padding)) is None:
                rendered.append(option.prompt.plain)
            return real(self, option, style)

        monkeypatch.setattr(OptionList, "_get_option_render", render)
        listing.refresh()
        await pilot.pause()
        assert rendered == []
        prompts = [listing.get_option_at_index(i).prompt for i in range(6)]
        assert internals.replace_prompts(listing, prompts) == 0
        prompts[2] = Text("problem 2, worse", no_wrap=True)
        assert internals.replace_prompts(listing, prompts) == 1
        assert len(listing._line_cache.lines) == 6  # the layout kept: not measured again
        await pilot.pause()
        assert rendered == ["problem 2, worse"]
        assert [line.strip() for line in screen_lines(app)[:6]] == [
            "problem 0", "problem 1", "problem 2, worse", "problem 3", "problem 4", "problem 5"]
        prompts[4] = Text("problem 4\nover two lines", no_wrap=True)
        assert internals.replace_prompts(listing, prompts) == 1
        await pilot.pause()
        assert [line.strip() for line in screen_lines(app)[:7]] == [
            "problem 0", "problem 1", "problem 2, worse", "problem 3", "problem 4", "over two lines", "problem 5"]


class OneLineListing(App):
    CSS = "OptionList { border: none; padding: 0; height: auto; max-height: 8; }"

    def __init__(self, kind, prompts):
        super().__init__()
        self.kind, self.prompts = kind, prompts

    def compose(self) -> ComposeResult:
        yield self.kind(*self.prompts)


@pytest.mark.parametrize("second_line", [False, True])
async def test_one_line_options_are_not_measured_and_show_what_an_option_list_shows(monkeypatch, second_line):
    """OneLineOptionList (the problems list) knows one-line Texts are one line each: adding 30 of them measures
    none (OptionList visualized every one for its height, on every layout too), and the list shows, highlights
    and scrolls to what OptionList does. An option of two lines: OptionList's own measure, the same screen."""
    from textual.widgets import OptionList
    from textual.widgets._option_list import OptionList as Own

    prompts = [Text(f"problem {i}", no_wrap=True) for i in range(30)]
    if second_line:
        prompts[3] = Text("problem 3\nover two lines", no_wrap=True)
    seen = {}
    real = Own._get_visual
    for kind in (internals.OneLineOptionList, OptionList):
        measured = []
        monkeypatch.setattr(Own, "_get_visual", lambda self, option: measured.append(option) or real(self, option))
        app = OneLineListing(kind, prompts)
        async with app.run_test(size=(40, 12)) as pilot:
            listing = app.query_one(kind)
            await pilot.pause()
            shown = [screen_lines(app)[:9]]
            first_paint = len(set(measured))
            listing.highlighted = 20  # scrolled to it
            await pilot.pause()
            shown.append(screen_lines(app)[:9])
            seen[kind] = (shown, first_paint, listing.virtual_size)
    ours, theirs = seen[internals.OneLineOptionList], seen[OptionList]
    assert ours[0] == theirs[0] and ours[2] == theirs[2]
    assert "problem 20" in "\n".join(ours[0][1])
    assert theirs[1] == 30  # every option visualized to be measured before the first paint
    if second_line:
        assert ours[1] == 30
    else:
        assert ours[1] <= 8, ours[1]  # only those painted: a screen of them


def cells_sent(app) -> tuple:
    """The screen as the terminal gets it, cell by cell: (character, colours, attributes), and the option a click
    there picks (the `option` meta). Not the escape codes: Rich keeps a style's codes for the colour system it was
    first written with, and other tests' consoles differ."""
    def colour(c):
        return None if c is None else (c.type, c.number, c.triplet)

    cells = []
    for line in app.screen._compositor.render_update(full=True).strips:
        for strip in line:
            for text, style, _ in strip:
                key = (colour(style.color), colour(style.bgcolor), style.bold, style.dim, style.italic, style.underline,
                       style.reverse, style.strike, style.meta.get("option")) if style is not None else None
                cells += [(ch, key) for ch in text]
    return tuple(cells)


class ProblemListing(OneLineListing):
    # the problems panel's list: one line each, cut with '…'
    CSS = "OptionList { border: none; padding: 0; height: 6; text-wrap: nowrap; text-overflow: ellipsis; }"


@pytest.mark.parametrize("colour", [True, False])
async def test_one_line_options_render_without_textuals_content_and_show_what_an_option_list_shows(
        monkeypatch, colour):
    """OneLineOptionList renders a problem line (a one-line Text that fits) through Rich alone: the terminal gets
    what OptionList's render (Text -> Content -> strips) sends, plain, highlighted and hovered, in colour and not,
    and the Content pipeline is never taken but for a line wider than the list (it goes Textual's way)."""
    from textual.widgets import OptionList
    from textual.widgets._option_list import OptionList as Own

    from asrtop.problems.model import Problem, Severity
    from asrtop.tui.problem_lines import problem_lines

    problems = [
        Problem("leak", "node-0001", Severity.CRITICAL, "leaks GPU memory: +48 MB/s for 10 minutes, and on",
                "drain node-0001", None, 900.0),
        Problem("hot", "node-0002-with-a-long-name", Severity.WARNING, "GPU at 97% for 5 minutes", None, None, 950.0),
        Problem("backups", None, Severity.WARNING, "only backups serve: 0 of 3 primaries ready", "ready node-3", "hx-a",
                None),
        Problem("stale", "节点-3", Severity.CRITICAL, "agent stale for 2m", "asrtop check", None, 880.0)]
    prompts = list(problem_lines(problems, 1000.0, (50, 49), 6, colour, {}).lines)  # 10 cells short of the list
    prompts.append(Text("a line wider than the list " * 4, no_wrap=True))
    sent, visualized = {}, {}
    real = Own._get_visual
    for kind in (internals.OneLineOptionList, OptionList):
        asked = visualized[kind] = []
        monkeypatch.setattr(Own, "_get_visual", lambda self, option: asked.append(option) or real(self, option))
        app = ProblemListing(kind, prompts)
        async with app.run_test(size=(60, 8)) as pilot:
            listing = app.query_one(kind)
            screens = []
            for step in range(3):
                if step == 1:
                    listing.focus()
                    listing.highlighted = 2
                if step == 2:
                    await pilot.hover(kind, offset=(3, 0))
                await pilot.pause()
                screens.append(cells_sent(app))
            sent[kind] = screens
    ours, theirs = sent[internals.OneLineOptionList], sent[OptionList]
    assert ours == theirs
    assert len(set(theirs)) == 3  # the highlight and the hover showed
    assert {id(option.prompt) for option in visualized[OptionList]} >= set(map(id, prompts))
    assert {id(option.prompt) for option in visualized[internals.OneLineOptionList]} == {id(prompts[-1])}


def test_cell_contents_built_without_rich_are_what_rich_renders():
    """padded_text_segments gives Rich's segments for every shape of cell the fleet table makes (both
    justifications, every style, a bar's accent span, trailing blanks, widths with and without room to pad),
    and declines (None) what it does not build: a cell too wide, a wide character, a right-justified blank."""
    from rich.console import Console
    from rich.padding import Padding

    from asrtop.tui.refresh import cell_text

    console = Console(width=100)
    built = declined = 0
    for width in (3, 5, 7, 12, 16):
        for plain in ("1", "12", "—", "node-7", "██▌   72%", "█████100%", "~72%", "45°", "bk", "●", "✗", " ",
                      "↓3", "—".ljust(10), "ab  ", "漢字", "1234567890123456"):
            for style in ("", "bold", "grey50", "bold red", "bold reverse", "dim", "cyan"):
                for key in ("name", "rps"):  # left and right justified
                    for cell in ((plain, style), (plain, style or "green", "bold reverse")):
                        text = cell_text(cell, key)
                        ours = internals.padded_text_segments(text, width, 1, console.get_style)
                        if ours is None:
                            declined += 1
                            continue
                        built += 1
                        options = console.options.update_dimensions(width, 1).update(no_wrap=True)
                        assert ours == console.render_lines(Padding(text, (0, 1)), options)[0], (cell, key, width)
    assert built > 1000 and declined > 100


async def test_one_paint_works_out_each_component_style_once(monkeypatch):
    """DataTable asks for its component styles on every line it renders: within one paint they are worked out
    once (the same screen, styles included, as without it)."""
    from textual.widgets import DataTable

    asked = []
    real = DataTable.get_component_styles
    monkeypatch.setattr(DataTable, "get_component_styles", lambda self, *names: asked.append(names) or real(self, *names))
    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        table = app.query_one(FleetTable)
        snap = FakeFleet(30).build(1)
        table.update_fleet(snap, table_context(snap))
        await pilot.pause()
        memo_svg = app.export_screenshot()
        asked.clear()
        internals.invalidate_render_caches(table)
        await pilot.pause()
        lines_painted = table.size.height
        assert asked and len(asked) <= len(set(asked)) < lines_painted
        monkeypatch.setattr(internals.VisibleCellCache, "get_component_styles", real)
        monkeypatch.setattr(internals.VisibleCellCache, "ordered_columns", DataTable.ordered_columns)
        internals.invalidate_render_caches(table)
        await pilot.pause()
        assert app.export_screenshot() == memo_svg


async def test_render_caches_hold_a_screen_of_lines_not_every_row_of_every_refresh():
    """Textual's row and line caches are keyed on the generation each refresh steps: sized for 1,000 rows, they
    kept ~40 dead rows per refresh until 1,000, which every full garbage collection walked (issue 17). Bounded to
    one screen of the table's height and a margin, whatever the refreshes: the generations before the last are
    never asked for again. The cells keep RENDER_CACHE_SCREENS screens."""
    fleet = FakeFleet(300)
    app = TableApp()
    async with app.run_test(size=(160, 30)) as pilot:
        table = app.query_one(FleetTable)
        for tick in range(8):
            snap = fleet.build(tick)
            table.update_fleet(snap, table_context(snap))
            await pilot.pause()
        bound = table.size.height + internals.GENERATION_CACHE_MARGIN
        assert table.size.height > 10 and table._update_count >= 8
        for name in ("_row_render_cache", "_line_cache", "_row_renderable_cache"):
            cache = getattr(table, name)
            assert cache.maxsize == bound and 0 < len(cache) <= bound, (name, len(cache), cache.maxsize)
        cells = table._cell_render_cache
        assert cells.maxsize == internals.RENDER_CACHE_SCREENS * table.size.height * len(COLUMN_KEYS)
        assert len(cells) <= cells.maxsize


@pytest.mark.parametrize("no_color", [False, True])
async def test_lines_filtered_in_render_line_are_what_textual_paints(monkeypatch, no_color):
    """VisibleCellCache.render_line applies the app's line filters itself (and the styles cache then none): the
    painted lines are Textual's own, segment for segment, scrolled or not, with and without NO_COLOR (a second
    filter); and a repaint of unchanged lines filters none of them again (the filtered line is cached with it)."""
    from textual.filter import ANSIToTruecolor
    from textual.geometry import Region
    from textual.widgets import DataTable

    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = TableApp()
    async with app.run_test(size=(120, 20)) as pilot:
        table = app.query_one(FleetTable)
        snap = FakeFleet(60, dead_agents=(3,), odd_model=(5,)).build(1)
        table.update_fleet(snap, table_context(snap))
        await pilot.pause()
        assert len(app.get_line_filters()) == (2 if no_color else 1)
        whole = Region(0, 0, *table.size)
        for scroll in (0, 17):
            table.scroll_to(y=scroll, animate=False, immediate=True)
            await pilot.pause()
            table._styles_cache.clear()
            ours = [list(strip) for strip in table.render_lines(whole)]
            with monkeypatch.context() as m:
                m.setattr(internals.VisibleCellCache, "render_line", DataTable.render_line)
                m.setattr(internals.VisibleCellCache, "get_line_filters", DataTable.get_line_filters)
                table._styles_cache.clear()
                theirs = [list(strip) for strip in table.render_lines(whole)]
            assert ours == theirs, scroll
            assert any(f"node-{scroll + 1}" in "".join(s.text for s in line) for line in ours)
        filtered = []
        real_apply = ANSIToTruecolor.apply
        monkeypatch.setattr(ANSIToTruecolor, "apply", lambda self, *a: filtered.append(1) or real_apply(self, *a))
        table.refresh()
        await pilot.pause()
        assert filtered == []


def _lru_link(o) -> bool:
    """An LRUCache entry: [prev, next, key, value], prev and next entries themselves."""
    return type(o) is list and len(o) == 4 and type(o[0]) is list and type(o[1]) is list


async def test_refreshes_leave_no_cyclic_garbage():
    """Thirty refreshes of the console, figures moving and the problems changing (the panel's list refilled,
    which clears its render cache), leave nothing that only a full collection frees (garbage still young is
    the young collections' and is freed first) among what the console paints: no Strip (Textual's divide
    cached ``[self]`` in the strip), no LRUCache entry (a cleared cache's ring), no object of asrtop's, Rich's
    or Textual's strips and caches. asrtop.tui.gc_schedule runs full collections minutes apart because of it."""
    import gc

    from test_tui_problems import HOT, LEAK, MODEL, make_app, put, refreshed
    from textual.strip import Strip

    from asrtop.tui.widgets.problems_panel import ProblemsPanel

    found: dict = {}
    app, fleet = make_app(found, FakeFleet(30, odd_model=(4,), backups=()))
    async with app.run_test(size=(120, 30)) as pilot:
        await refreshed(pilot, app)
        gc.collect()
        for tick in range(30):
            fleet.tick = tick
            put(found, *((MODEL, LEAK), (HOT,), (LEAK, HOT, MODEL))[tick % 3])
            await refreshed(pilot, app)
        assert app.fleet_screen.query_one(ProblemsPanel).list.option_count in (1, 2, 3)
        gc.collect(1)  # the young generations' garbage (a layout's closures...): the young collections free it
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()  # what is left is what only a full collection frees
            strips = sum(isinstance(o, Strip) for o in gc.garbage)
            links = sum(_lru_link(o) for o in gc.garbage)
            ours = sorted({type(o).__module__ for o in gc.garbage  # what a paint makes (a layout alive across a
                           if type(o).__module__.split(".")[0] in ("asrtop", "rich")  # young collection may leave
                           or type(o).__module__ in ("textual.strip", "textual.cache")})  # its closure's geometry)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert (strips, links, ours) == (0, 0, [])


class TwoTables(App):
    """Two DataTables with the same columns: one filled by add_row, one by add_rows_at_once."""

    def __init__(self):
        super().__init__()
        self.highlighted: dict[str, list[int]] = {"one_by_one": [], "at_once": []}

    def compose(self) -> ComposeResult:
        from textual.widgets import DataTable

        for name in self.highlighted:
            table = DataTable(id=name, cursor_type="row")
            for column in ("node", "state", "gpu"):
                table.add_column(column, key=column)  # the same keys in both (unnamed ones are random)
            yield table

    def on_data_table_row_highlighted(self, event) -> None:
        self.highlighted[event.data_table.id].append(event.cursor_row)


def _table_state(table) -> tuple:
    locations = table._row_locations  # a two-way dict: key -> index and index -> key
    return ({k: locations.get(k) for k in table.rows}, [locations.get_key(i) for i in range(table.row_count)],
            {k: dict(v) for k, v in table._data.items()},
            [(r.key, r.height, r.label, r.auto_height) for r in table.rows.values()], set(table._new_rows),
            table._update_count, table.cursor_coordinate, table.row_count)


async def test_rows_added_at_once_are_what_add_row_makes():
    """add_rows_at_once (the fleet table's first fill and rebuilds: a 1,000-row rebuild spent ~0.4 of its time in
    add_row's per-row bookkeeping) leaves the table as add_row one row at a time does: the same rows, keys,
    cells (a short row padded with None), generation and cursor, the same one highlight when the first rows
    arrive, the same lines painted, and the same errors for a duplicate key or too many cells."""
    from rich.text import Text
    from textual.widgets.data_table import DuplicateKey

    batches = ([(f"gpu-{i:02d}", [Text(f"gpu-{i:02d}"), Text("ready"), Text(f"{i}%")]) for i in range(12)],
               [("gpu-12", [Text("gpu-12"), Text("down")])])  # a second batch, into a table with rows
    app = TwoTables()
    async with app.run_test(size=(60, 24)) as pilot:
        one_by_one, at_once = app.query_one("#one_by_one"), app.query_one("#at_once")
        for batch in batches:
            for key, cells in batch:
                one_by_one.add_row(*cells, key=key)
            assert internals.add_rows_at_once(at_once, iter(batch)) == len(batch)
            assert _table_state(at_once) == _table_state(one_by_one)
            await pilot.pause()
        await pilot.pause()
        assert app.highlighted["at_once"] == app.highlighted["one_by_one"] == [0]
        painted = []
        for table in (one_by_one, at_once):  # each with the focus (the cursor's style follows it)
            table.focus()
            await pilot.pause()
            painted.append([[(s.text, s.style) for s in table.render_line(y)] for y in range(table.size.height)])
        assert painted[0] == painted[1]
        assert any("gpu-12" in "".join(text for text, _ in line) for line in painted[1])
        # a bad row stops the batch where add_row's loop stops: the rows before it are in, as with add_row
        bad_batches = ([("gpu-20", [Text("gpu-20")]), ("gpu-03", [Text("again")])],
                       [("gpu-21", [Text("gpu-21")]), ("gpu-99", [Text("a"), Text("b"), Text("c"), Text("d")])])
        for batch, error in zip(bad_batches, (DuplicateKey, ValueError)):
            with pytest.raises(error):
                for key, cells in batch:
                    one_by_one.add_row(*cells, key=key)
            with pytest.raises(error):
                internals.add_rows_at_once(at_once, batch)
            assert _table_state(at_once) == _table_state(one_by_one)


async def test_new_rows_are_measured_only_where_a_measure_counts(monkeypatch):
    """VisibleCellCache._update_dimensions: after a fill, Textual measured every cell of every new row through
    Rich, on the UI loop, for content widths that only auto-width columns read (150-270 ms after a 1,000-row
    fill). The fleet table's columns all have fixed widths: no cell is measured, and the table's size and
    painted lines are Textual's own. A table with auto-width columns is measured as Textual measures it."""
    from rich.text import Text
    from textual.widgets import DataTable
    from textual.widgets import _data_table

    measured = []
    textual_measure = _data_table.measure

    def counted(console, renderable, *args, **kw):
        measured.append(renderable)
        return textual_measure(console, renderable, *args, **kw)

    monkeypatch.setattr(_data_table, "measure", counted)
    snap = FakeFleet(40).build(1)

    async def fill(table_app, rows=None):
        async with table_app.run_test(size=(160, 20)) as pilot:
            table = table_app.query_one(DataTable)
            if rows is None:
                table.update_fleet(snap, table_context(snap))
            else:
                for key, cells in rows:
                    table.add_row(*cells, key=key)
            await pilot.pause()
            await wait_for(pilot, lambda: not getattr(table, "repaint_pending", False), what="bands painted")
            return (table.virtual_size, [c.get_render_width(table) for c in table.ordered_columns],
                    screen_lines(table_app))

    ours = await fill(TableApp())
    assert len(measured) < 40, f"{len(measured)} measures: the rows' cells were measured"
    monkeypatch.setattr(internals.VisibleCellCache, "_update_dimensions", DataTable._update_dimensions)
    measured.clear()
    assert await fill(TableApp()) == ours  # Textual's own: the same size, widths and lines
    assert len(measured) >= 40 * len(COLUMN_KEYS) // 2  # ...after measuring every cell

    class Other(App):
        def __init__(self, table_type, fixed: bool):
            super().__init__()
            self.table_type, self.fixed = table_type, fixed

        def compose(self) -> ComposeResult:
            table = self.table_type()
            for name in ("node", "state"):  # auto width: the widest cell sets it
                table.add_column(name, key=name, width=6 if self.fixed else None)
            yield table

    rows = [(f"n{i}", [Text(f"n{i}"), Text("x" * i)]) for i in range(12)]
    monkeypatch.undo()
    assert await fill(Other(internals.VisibleCellCache, False), rows) == await fill(Other(DataTable, False), rows)

    class Labelled(Other):  # fixed widths, but a labelled row (the label column's width) and a row of auto height
        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_row(Text("lab"), Text("elled"), key="labelled", label="a label")
            table.add_row(Text("two\nlines"), Text("x"), key="tall", height=None)

    assert await fill(Labelled(internals.VisibleCellCache, True), rows) == await fill(Labelled(DataTable, True), rows)


async def test_partial_updates_ask_only_their_lines_and_show_what_textuals_show(monkeypatch):
    """CroppedCompositor (the fleet screen's): every partial screen update while the console refreshes (the
    header, the table's bands), scrolls and shows another problem reaches the terminal as Textual's own would
    (each ChopsUpdate rendered to what is written, compared with Textual's update of the same dirty regions);
    each asks only the widgets on its lines, each for those lines alone, so a band of the table asks neither
    the header nor the key bar for anything."""
    from fakes import FakeAudit, FakeController
    from textual._compositor import Compositor
    from textual.geometry import Region
    from textual.widget import Widget

    from asrtop.tui.app import AsrtopApp
    from asrtop.tui.widgets.fleet_table import band_rows
    from asrtop.tui.widgets.header import FleetHeader
    from asrtop.tui.widgets.keybar import KeyBar

    fleet = FakeFleet(80, dead_agents=(3,))
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600)
    updates: list[tuple[str, str]] = []  # (ours, Textual's) as written to the terminal
    # per update of ours: its crop, and each widget asked for lines (the widget, its region then, lines asked)
    asked: list[tuple[Region, list[tuple[Widget, Region, int]]]] = []
    recording = False
    real_render_lines = Widget.render_lines

    def recorded_render_lines(self, crop):
        if recording:
            asked[-1][1].append((self, self.region, crop.height))
        return real_render_lines(self, crop)

    def both(compositor):
        nonlocal recording
        regions = set(compositor._dirty_regions)
        if regions:
            asked.append((Region.from_union(list(regions)).intersection(compositor.size.region), []))
        recording = bool(regions)
        try:
            ours = Compositor.render_partial_update(compositor)
        finally:
            recording = False
        compositor._dirty_regions.update(regions)
        compositor.__class__ = Compositor  # Textual's _get_renders, on the same widgets and caches
        try:
            theirs = Compositor.render_partial_update(compositor)
        finally:
            compositor.__class__ = internals.CroppedCompositor
        if ours is not None or theirs is not None:
            updates.append((ours.render_segments(app.console), theirs.render_segments(app.console)))
        return ours

    monkeypatch.setattr(Widget, "render_lines", recorded_render_lines)
    monkeypatch.setattr(internals.CroppedCompositor, "render_partial_update", both, raising=False)
    async with app.run_test(size=(160, 45)) as pilot:
        assert type(app.fleet_screen._compositor) is internals.CroppedCompositor
        await wait_for(pilot, lambda: app.refreshes >= 1, what="the first refresh")
        table = app.fleet_screen.table
        for tick in range(1, 5):
            if tick == 3:
                await pilot.press("pagedown")
                await pilot.pause(0.1)
            if tick == 4:
                fleet.dead.add(5)  # a second problem: the panel's list changes
            fleet.tick = tick
            app.refresh_now()
            await wait_for(pilot, lambda: app.refreshes >= tick + 1, what=f"refresh {tick + 1}")
            await wait_for(pilot, lambda: not table.repaint_pending, what="the table's bands painted")
            await pilot.pause(0.1)
        rows = band_rows(table.size.width)
    assert len(updates) >= 12, len(updates)
    for i, (ours, theirs) in enumerate(updates):
        assert ours == theirs, f"update {i}"
    for crop, widgets in asked:
        for widget, region, lines in widgets:
            assert region.overlaps(crop), (type(widget).__name__, region, crop)
            assert lines <= crop.height, (type(widget).__name__, lines, crop)
    bands = [widgets for crop, widgets in asked if crop.height <= rows and any(w is table for w, _, _ in widgets)]
    assert len(bands) >= 9, [(crop, [type(w).__name__ for w, _, _ in ws]) for crop, ws in asked]
    for band in bands:
        assert not any(isinstance(w, (FleetHeader, KeyBar)) for w, _, _ in band), band
