"""The fleet table: one row per node keyed by node name, updated in place.

Each refresh diffs the new (text, style) cells against the last ones and calls update_cell only for
cells that changed; rows come and go only when nodes (or the filter) do. The cursor stays on its node
across refreshes, sorts and filters. Column widths are fixed, so no refresh re-measures anything.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

from asrtop.fleet import FleetSnapshot, NodeView
from asrtop.tui.format import (COLUMN_KEYS, COLUMNS, SIM_LABELS, Cell, TableContext, matches_filter, row_cells,
                               sort_value)

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
        self.updates = 0  # update_cell calls made (tests check that unchanged refreshes make none)
        self._sim_labels = False

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col.label, width=col.width, key=col.key)

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
        data = self._table_data()
        changed = 0
        for node in wanted:
            cells = row_cells(node, ctx)
            name = node.name
            old = cells_by_key.get(name)
            if old is None:
                self.add_row(*(_text(c, k) for c, k in zip(cells, COLUMN_KEYS)), key=name)
            elif old != cells:
                row = data.get(RowKey(name)) if data is not None else None
                for i, cell in enumerate(cells):
                    if cell != old[i]:
                        if row is not None:  # update_cell minus its per-cell refresh (see _table_data)
                            row[_COLUMN_KEYS[i]] = _text(cell, COLUMN_KEYS[i])
                        else:
                            self.update_cell(name, COLUMN_KEYS[i], _text(cell, COLUMN_KEYS[i]))
                        changed += 1
            cells_by_key[name] = cells
        if changed:
            self.updates += changed
            if data is not None:
                self._update_count += 1  # invalidates the row render caches, as update_cell does per cell
                self.refresh()
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
        self._update_count += 1  # header row caches are keyed on it
        self.refresh()

    def _table_data(self) -> dict | None:
        """DataTable's row -> column -> cell dict, written directly for changed cells.

        update_cell() refreshes the widget once per cell; with 1,000 rows those refreshes were most of
        the refresh budget, so cells are set here and one refresh follows the batch. None (public
        update_cell for every cell) if a Textual release stores cells differently."""
        data = getattr(self, "_data", None)
        ok = isinstance(data, dict) and isinstance(getattr(self, "_update_count", None), int)
        return data if ok else None

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
