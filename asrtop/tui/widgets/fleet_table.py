"""The fleet table: one row per node keyed by node name, updated in place.

Each refresh diffs the new (text, style) cells against the last ones (asrtop.tui.refresh: in the console's
refresh thread) and sets only the cells that changed, all of them in one batch with one refresh (asrtop.tui.textual_internals: the 1,000-node refresh
budget); rows come and go only when nodes (or the filter) do. The cursor stays on its node across
refreshes, sorts and filters.

The changed rows are repainted a band of lines a frame, top first (`repaint_in_bands`): at 1,000 nodes every
row on screen changes each second and one paint of all of them held the UI loop ~40 ms; a band is a few ms,
and keys and mouse are handled between bands.

Only the rows on screen and a screen's worth on each side get their cells worked out by a refresh
(`row_window`); the others are deferred with their node (RowsDiff.deferred) and worked out here, on the UI
thread, just before they are painted (`render_lines`): a scroll works out at most a screen of rows.

The columns are fitted to the width (asrtop.tui.format.fit_columns): the node name stays at the left,
columns are left out by priority so that none is cut and nothing scrolls sideways, with room kept for the
vertical scrollbar when the rows need one. The table is rebuilt only when that fit changes (a resize, a
new sort column, a node count that needs the scrollbar): a refresh never re-measures anything.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Iterable, Iterator, Mapping

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist

from asrtop.fleet import FleetSnapshot, NodeView
from asrtop.tui.format import (COLUMN_KEYS, FIXED, NAME_WIDTH_MIN, Cell, Column, TableContext, TableLayout, fit_columns,
                               row_cells)
from asrtop.tui.refresh import RIGHT, RowsDiff, RowsView, cell_text, changed_cells, diff_rows, restyle
from asrtop.tui.textual_internals import (QuietCells, VisibleCellCache, add_rows_at_once, bound_render_caches,
                                         fast_path_problem, invalidate_render_caches)

logger = logging.getLogger(__name__)

FRAME = 1 / 60  # seconds: Textual's screen updates are this far apart at most
# Cells (lines x columns) of the table repainted a frame after a refresh. Each band is a screen update with its
# own overhead: measured at 1,000 nodes, 160x45 (bench_tui_end_to_end.py, 8 and 16 alternated, four runs
# each), 8 lines a band painted a refresh in 23-32 ms of CPU, its longest task 6-8 ms; 16 lines in 15-22 ms,
# its longest task 10-13 ms. A line's cost grows with the table's width: a wider terminal gets fewer lines.
BAND_CELLS = 16 * 160


def band_rows(width: int) -> int:
    """Lines of a band in a table `width` columns wide (at least 4)."""
    return max(4, BAND_CELLS // max(1, width))

_DESCENDING_FIRST = frozenset(COLUMN_KEYS) - {"name", "state", "model"}  # numbers: biggest first
_text = cell_text


def _row_texts(cells: Mapping[str, tuple[Cell, ...]], names: Iterable[str], shown: tuple[tuple[int, ColumnKey], ...],
               colour: bool) -> Iterator[tuple[str, list[Text]]]:
    """Each named row's cells of the `shown` columns as Texts, for rows added at once. Equal cells in one column
    share one Text (cell_text's are never changed once made): a state, a weight, a health or a "-" repeats down
    a fleet. Making a Text per cell was about half of a 1,000-row rebuild once add_rows_at_once added the rows."""
    made: dict[tuple[Cell, int], Text] = {}
    for name in names:
        row = cells[name]
        texts = []
        for i, key in shown:
            cell = row[i]
            text = made.get((cell, i))
            if text is None:
                text = made[cell, i] = _text(cell, key.value, colour)
            texts.append(text)
        yield name, texts


def _label(col: Column) -> Text:
    return Text(col.label, justify="right" if col.key in RIGHT else "left")


def _keys(layout: TableLayout) -> list[str]:
    return [c.key for c in layout.columns]


class FleetTable(VisibleCellCache):
    # Home/End go to the first/last node (DataTable's own go sideways, which this table never needs).
    BINDINGS = [Binding("home", "scroll_top", "First node", show=False),
                Binding("end", "scroll_bottom", "Last node", show=False)]

    class Fitted(Message):
        """The columns were fitted anew (the screen shows what the width hides)."""

        def __init__(self, layout: TableLayout, agent_counted: bool):
            super().__init__()
            self.fit = layout
            self.agent_counted = agent_counted

    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=False, fixed_columns=len(FIXED), **kw)
        self.filter_text = ""
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._cells: Mapping[str, tuple[Cell, ...]] = {}  # replaced by each refresh, never changed in place
        self._deferred: dict[str, NodeView] = {}  # rows whose cells are not worked out yet (RowsDiff.deferred)
        self._order: tuple[str, ...] = ()
        self._snap: FleetSnapshot | None = None
        self._ctx: TableContext | None = None
        self.fitted: TableLayout | None = None
        self._shown: tuple[tuple[int, ColumnKey], ...] = ()  # (index in COLUMNS, key) of the columns shown
        self.updates = 0  # cells set (tests check that unchanged refreshes set none)
        self.slow_updates = 0  # of those, cells set through the public update_cell (the fast path was not taken)
        self.rebuilds = 0  # times the table was rebuilt because the shown columns changed
        self.worked_out = 0  # deferred rows worked out when they came into view
        self.repaint_pending = False  # bands of the last refresh not painted yet
        self._band_next: int | None = None  # the first line of the band to repaint after the next paint
        self._band_queued = False  # a _next_band is on its way
        self._after_bands: list = []  # callbacks for once the last band is painted (after_bands)

    def on_mount(self) -> None:
        problem = fast_path_problem(self)
        if problem is not None:  # slower with many nodes, not wrong: said once, not silently
            logger.warning(problem)
            self.log.warning(problem)
            self.notify(problem, title="fleet table", severity="warning", timeout=10)

    # -- what the screen asks ------------------------------------------------------------------
    @property
    def cursor_node(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # an empty or just-cleared table has no cell under the cursor
            return None

    @property
    def shown_nodes(self) -> list[str]:
        return list(self._order)

    # -- columns ---------------------------------------------------------------------------------
    def _fit(self) -> TableLayout:
        ctx = self._ctx
        width = self.size.width
        # Rows that overflow the height bring the vertical scrollbar: its cells are not the columns'.
        if len(self._order) + (1 if self.show_header else 0) > self.size.height:
            width -= self.styles.scrollbar_size_vertical
        return fit_columns(width, names_width=ctx.names_width if ctx else NAME_WIDTH_MIN,
                           sort_column=self.sort_column, sort_reverse=self.sort_reverse,
                           simulated=bool(ctx and ctx.gpu_simulated), agent_counted=bool(ctx and ctx.agent_counted),
                           padding=self.cell_padding, streams=bool(ctx and ctx.streams))

    def _refit(self) -> None:
        """Fit the columns to the current size: relabel in place, or rebuild when other columns show."""
        if self._snap is None:
            return
        layout = self._fit()
        if layout == self.fitted:
            return
        same_columns = self.fitted is not None and _keys(layout) == _keys(self.fitted)
        self.fitted = layout
        if same_columns:  # a label or a width changed (a sort mark): no row needs rebuilding
            self._relabel(layout)
        else:
            self._rebuild(layout)
        self.post_message(self.Fitted(layout, bool(self._ctx and self._ctx.agent_counted)))

    def _relabel(self, layout: TableLayout) -> None:
        for col in layout.columns:
            column = self.columns[ColumnKey(col.key)]
            column.label = _label(col)
            column.width = col.width
        self.virtual_size = Size(sum(c.get_render_width(self) for c in self.columns.values()), self.virtual_size.height)
        invalidate_render_caches(self)  # the header row and the rows are cached like the cells

    def _rebuild(self, layout: TableLayout) -> None:
        keep_cursor = self.cursor_node
        index = {k: i for i, k in enumerate(COLUMN_KEYS)}
        self._shown = tuple((index[c.key], ColumnKey(c.key)) for c in layout.columns)
        self.clear(columns=True)
        for col in layout.columns:
            self.add_column(_label(col), width=col.width, key=col.key)
        colour = not self.app.no_color
        add_rows_at_once(self, _row_texts(self._cells, self._order, self._shown, colour))
        self.rebuilds += 1
        if keep_cursor is not None:
            self._move_to(keep_cursor, scroll=True)

    def on_resize(self, event: events.Resize) -> None:
        self._refit()
        bound_render_caches(self, self.size.height, len(COLUMN_KEYS))  # a few screens, not 1,000 rows of renders

    # -- refresh ---------------------------------------------------------------------------------
    @property
    def view(self) -> RowsView:
        return RowsView(self.filter_text, self.sort_column, self.sort_reverse)

    @property
    def shown_columns(self) -> tuple[int, ...]:
        """The columns shown, as indexes into COLUMNS."""
        return tuple(i for i, _ in self._shown)

    @property
    def row_window(self) -> tuple[int, int] | None:
        """(first row on screen, rows on screen) for a refresh's diff; None before the table has a size."""
        height = self.size.height
        if height <= 0:
            return None
        return int(self.scroll_offset.y), height

    @property
    def deferred(self) -> frozenset[str]:
        """Rows whose cells a refresh left to be worked out when they come into view."""
        return frozenset(self._deferred)

    @property
    def cells(self) -> Mapping[str, tuple[Cell, ...]]:
        """The cells shown (a refresh diffs against this mapping; it is replaced, never changed in place)."""
        return self._cells

    def update_fleet(self, snap: FleetSnapshot, ctx: TableContext) -> None:
        """Diff `snap` against what is shown, here (on the UI thread), and apply it."""
        self._apply_rows(diff_rows(snap, ctx, self.view, self._cells, self.shown_columns, not self.app.no_color,
                                   self.row_window), snap)

    def apply_rows(self, diff: RowsDiff, snap: FleetSnapshot, ctx: TableContext) -> None:
        """Apply a diff made off the UI thread (asrtop.tui.refresh), under `ctx` (this moment's selection and
        drains). If the table changed since the diff was made (a sort, a filter, a redraw), it no longer
        applies: the snapshot is diffed here instead."""
        if diff.base is not self._cells or diff.view != self.view:
            self.update_fleet(snap, ctx)
            return
        self._apply_rows(restyle(diff, ctx), snap)

    def _apply_rows(self, diff: RowsDiff, snap: FleetSnapshot) -> None:
        self._snap, self._ctx = snap, diff.ctx
        keep_cursor = self.cursor_node
        for name in diff.removed:
            self.remove_row(name)
        cells = diff.cells
        colour = not self.app.no_color
        shown = self._shown
        if self.fitted is not None:  # before the first fit there are no columns: _refit adds every row
            add_rows_at_once(self, _row_texts(cells, diff.added, shown, colour))
        if diff.changed:
            column_of = dict(shown)
            batch = QuietCells(self)
            changed = 0
            if diff.shown == self.shown_columns and diff.colour == colour:  # the Texts made with the diff fit
                for name, texts in diff.texts:
                    set_cell = batch.row(name)
                    for i, text in texts:
                        set_cell(column_of[i], text)
                    changed += len(texts)
            else:
                for name, which in diff.changed:
                    set_cell = batch.row(name)
                    row = cells[name]
                    for i in which:
                        key = column_of.get(i)
                        if key is not None:  # a hidden column's cell is kept for when it shows
                            set_cell(key, _text(row[i], key.value, colour))
                            changed += 1
            if changed:
                self.updates += changed
                self.slow_updates += batch.slow_cells
                batch.done(refresh=False)
                self.repaint_in_bands()
        self._cells = cells
        self._deferred = dict(diff.deferred)
        self._apply_order(diff.order)
        self._refit()  # labels follow the fleet (simulated GPUs, agent-counted requests), room the node count
        if keep_cursor is not None:
            self._move_to(keep_cursor)

    def render_lines(self, crop: Region) -> list[Strip]:
        if self._deferred:
            self._work_out_shown(crop)
        lines = super().render_lines(crop)
        if self._band_next is not None and not self._band_queued:  # this paint had a band: the next one after it
            self._band_queued = True
            self.call_later(self._next_band)
        return lines

    def repaint_in_bands(self) -> None:
        """Repaint the table's lines a band (band_rows) at a time, top first: each band is asked for once the last
        one was painted (render_lines), so no paint renders more than one band of changed rows. The first band
        comes a frame after the refresh's apply (which the header's paint follows at once): apply, header and a
        band in one go held the UI loop ~16 ms at 1,000 nodes; keys and mouse are handled in between."""
        self.repaint_pending = True
        self._band_next = None  # a band queued by an earlier refresh: this one starts over at the top
        self.set_timer(FRAME, partial(self._paint_band, 0), name="first band")

    def _paint_band(self, top: int) -> None:
        width, height = self.size
        rows = band_rows(width)
        self.refresh(Region(0, top, width, min(rows, height - top)))  # not past the table: the key bar is below
        self._band_next = top + rows if top + rows < height else None
        self.repaint_pending = self._band_next is not None
        if not self.repaint_pending and self._after_bands:
            waiting, self._after_bands = self._after_bands, []
            for callback in waiting:
                self.call_after_refresh(callback)

    def after_bands(self, callback) -> None:
        """`callback` once this refresh's bands are painted, once however often it is asked for; at once when
        no band is pending or the lines on screen fit in one band (the resize costs what that band would). For
        what would resize the table: a resize repaints every line on screen in one update, and with this
        refresh's new cells not rendered yet that held the UI loop ~30 ms at 1,000 nodes (bench_tui_end_to_end:
        the problems panel opening); after the bands the lines' cells are rendered already."""
        width, height = self.size
        lines = min(height, self.row_count + (self.header_height if self.show_header else 0))
        if not self.repaint_pending or lines <= band_rows(width):
            callback()
        elif callback not in self._after_bands:
            self._after_bands.append(callback)

    def _next_band(self) -> None:
        self._band_queued = False
        if self._band_next is not None:
            self._paint_band(self._band_next)

    def _work_out_shown(self, crop: Region) -> None:
        """The deferred rows in `crop` (lines of the table on screen) get their cells now, before they are
        painted. Rows are one line each; the header line, when shown, comes first."""
        top = int(self.scroll_offset.y) - (self.header_height if self.show_header else 0)
        rows = self.ordered_rows[max(0, top + crop.y):max(0, top + crop.bottom)]
        names = [row.key.value for row in rows if row.key.value in self._deferred]
        if not names or self._ctx is None:
            return
        cells = dict(self._cells)
        colour = not self.app.no_color
        shown = self._shown
        column_of = dict(shown)
        batch = QuietCells(self)
        for name in names:
            row = cells[name] = row_cells(self._deferred.pop(name), self._ctx)
            set_cell = batch.row(name)
            for i in changed_cells(row, self._cells[name]):
                key = column_of.get(i)
                if key is not None:
                    set_cell(key, _text(row[i], key.value, colour))
        self._cells = cells  # a refresh diffed against the old mapping no longer applies: it is diffed anew
        self.worked_out += len(names)
        batch.done(refresh=False)  # inside the paint of these rows: no other repaint needed

    def _apply_order(self, order: tuple[str, ...]) -> None:
        if order == self._order:
            return
        self._order = order
        if not self.columns:  # not fitted yet: _refit adds the rows in this order
            return
        rank = {name: i for i, name in enumerate(order)}
        self.sort("name", key=lambda cell: rank[cell.plain])

    def _move_to(self, name: str, scroll: bool = False) -> None:
        try:
            row = self.get_row_index(name)
        except RowDoesNotExist:
            return
        if row != self.cursor_row or scroll:
            self.move_cursor(row=row, animate=False, scroll=scroll)

    def show_node(self, name: str) -> None:
        """The cursor to `name`'s row, scrolled into view (nothing when the filter hides it)."""
        self._move_to(name, scroll=True)

    def resort(self) -> None:
        """Re-apply sort/filter to the last snapshot (after the user changed them)."""
        if self._snap is not None and self._ctx is not None:
            self._order = ()
            self.update_fleet(self._snap, self._ctx)

    def set_sort(self, column: str | None, reverse: bool | None = None) -> None:
        if column is not None and column not in COLUMN_KEYS:
            raise ValueError(column)
        if reverse is None:  # same column again flips the direction
            reverse = not self.sort_reverse if column == self.sort_column else column in _DESCENDING_FIRST
        self.sort_column, self.sort_reverse = column, reverse
        self.resort()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.set_sort(event.column_key.value)
