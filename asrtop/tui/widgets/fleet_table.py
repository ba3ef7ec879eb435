"""The fleet table: one row per node keyed by node name, updated in place.

Each refresh diffs the new (text, style) cells against the last ones and sets only the cells that
changed, all of them in one batch with one refresh (asrtop.tui.textual_internals: the 1,000-node refresh
budget); rows come and go only when nodes (or the filter) do. The cursor stays on its node across
refreshes, sorts and filters. Column widths are fixed, so no refresh re-measures anything.
"""

from __future__ import annotations

import logging

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist

from asrtop.fleet import FleetSnapshot, NodeView
from asrtop.tui.format import (COLUMN_KEYS, COLUMNS, SIM_LABELS, Cell, TableContext, matches_filter, row_cells,
                               sort_value)
from asrtop.tui.textual_internals import QuietCells, fast_path_problem, invalidate_render_caches

logger = logging.getLogger(__name__)

_COLUMN_KEYS = tuple(ColumnKey(k) for k in COLUMN_KEYS)
_RIGHT = frozenset({"inflight", "rps", "weight", "5xx", "rt", "temp", "power", "cpu", "age"})


def _text(cell: Cell, key: str) -> Text:
    return Text(cell[0], style=cell[1], no_wrap=True, justify="right" if key in _RIGHT else "left")


class FleetTable(DataTable):
    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self.filter_text = ""
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []
        self._snap: FleetSnapshot | None = None
        self._ctx: TableContext | None = None
        self.updates = 0  # cells set (tests check that unchanged refreshes set none)
        self.slow_updates = 0  # of those, cells set through the public update_cell (the fast path was not taken)
        self._sim_labels = False

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col.label, width=col.width, key=col.key)
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

    # -- refresh ---------------------------------------------------------------------------------
    def update_fleet(self, snap: FleetSnapshot, ctx: TableContext) -> None:
        self._snap, self._ctx = snap, ctx
        if ctx.gpu_simulated != self._sim_labels:
            self._label_gpu_columns(ctx.gpu_simulated)
        keep_cursor = self.cursor_node
        wanted = [n for n in snap.nodes if matches_filter(n, self.filter_text)]
        names = {n.name for n in wanted}
        for name in [k for k in self._cells if k not in names]:
            self.remove_row(name)
            del self._cells[name]
        cells_by_key = self._cells
        batch = QuietCells(self)
        changed = 0
        for node in wanted:
            cells = row_cells(node, ctx)
            name = node.name
            old = cells_by_key.get(name)
            if old is None:
                self.add_row(*(_text(c, k) for c, k in zip(cells, COLUMN_KEYS)), key=name)
            elif old != cells:
                set_cell = batch.row(name)
                for i, cell in enumerate(cells):
                    if cell != old[i]:
                        set_cell(_COLUMN_KEYS[i], _text(cell, COLUMN_KEYS[i]))
                        changed += 1
            cells_by_key[name] = cells
        if changed:
            self.updates += changed
            self.slow_updates += batch.slow_cells
            batch.done()
        self._apply_order(wanted, snap.taken_at)
        if keep_cursor is not None:
            self._move_to(keep_cursor)

    def _label_gpu_columns(self, simulated: bool) -> None:
        """'gpu ~=sim' / 'gmem ~=sim' while some node's GPU readings are simulated (its cells read '~41%')."""
        self._sim_labels = simulated
        labels = {c.key: c.label for c in COLUMNS}
        for key, sim_label in SIM_LABELS.items():
            column = self.columns.get(ColumnKey(key))
            if column is not None:
                column.label = Text(sim_label if simulated else labels[key])
        invalidate_render_caches(self)  # the header row is cached like the others

    def _apply_order(self, wanted: list[NodeView], now: float) -> None:
        position = {n.name: i for i, n in enumerate(wanted)}
        if self.sort_column is None:
            order = [n.name for n in wanted]
        else:
            col = self.sort_column
            keyed = sorted(wanted, key=lambda n: (sort_value(n, col, now), position[n.name]),
                           reverse=self.sort_reverse)
            order = [n.name for n in keyed]
        if order == self._order:
            return
        self._order = order
        rank = {name: i for i, name in enumerate(order)}
        self.sort("name", key=lambda cell: rank[cell.plain])

    def _move_to(self, name: str) -> None:
        try:
            row = self.get_row_index(name)
        except RowDoesNotExist:
            return
        if row != self.cursor_row:
            self.move_cursor(row=row, animate=False, scroll=False)

    def resort(self) -> None:
        """Re-apply sort/filter to the last snapshot (after the user changed them)."""
        if self._snap is not None and self._ctx is not None:
            self._order = []
            self.update_fleet(self._snap, self._ctx)

    def set_sort(self, column: str | None, reverse: bool | None = None) -> None:
        if column is not None and column not in COLUMN_KEYS:
            raise ValueError(column)
        if reverse is None:  # same column again flips the direction
            reverse = not self.sort_reverse if column == self.sort_column else column not in ("name", "state", "model")
        self.sort_column, self.sort_reverse = column, reverse
        self.resort()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.set_sort(event.column_key.value)
