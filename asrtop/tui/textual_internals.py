"""Every use of Textual internals in the console, in one place, with the reason for each.

Checked against Textual 8.2.8 (``CHECKED_AGAINST``; pyproject pins textual below 9). Nothing else in
asrtop/tui touches an underscored attribute of a Textual object. tests/tui/test_textual_internals.py fails
when the fast path below stops being taken with the installed Textual, and checks that both paths show
the same cells.

Why: a refresh of a 1,000-node fleet must fit 50 ms of CPU (tests/benchmarks/bench_tui_refresh.py). The
public ``DataTable.update_cell()`` sets one cell, steps the table's cache generation and calls
``refresh()`` -- per cell, about 3,000 cells a poll when the numbers move. Measured with Textual 8.2.8,
refresh with numbers moving, median / max ms CPU: through update_cell 77-81 / 133-143 (over budget),
straight into the cell store with one refresh 35-37 / 41-43. So changed cells are written into the cell
store and the caches are invalidated and the widget refreshed once per batch (``QuietCells``): what
``update_cell`` does, without the per-cell repetition.

The internals, as found in Textual 8.2.8 (textual/widgets/_data_table.py):

- ``DataTable._data: dict[RowKey, dict[ColumnKey, CellType]]`` -- the cell store: row key -> column key
  -> cell value. ``update_cell`` writes ``_data[row_key][column_key] = value``; ``get_cell``/``get_row``
  and the row renderables read it. Row and column keys are ``StringKey``s that hash and compare equal to
  their string (documented on ``StringKey``), so a node name finds its row and a ``ColumnKey(name)`` the
  key ``add_column`` made.
- ``DataTable._update_count: int`` -- the cache generation. The cell, row, row-renderable, line and
  offset caches (the header row's too) are keyed on it; ``update_cell``, ``add_row``, ``remove_row`` and
  ``sort`` step it. One step after the batch makes every row (and the header, after a column label
  changed) render from what the table holds now.

Without them (a Textual that keeps cells differently) every function here takes the public route
(``update_cell`` per cell; a reactive whose watcher clears the caches), shows the same cells, slower, and
``fast_path_problem`` says why: the fleet table logs it and notifies once, it does not slow down silently.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

CHECKED_AGAINST = "8.2.8"

CellStore = dict[RowKey, dict[ColumnKey, object]]  # DataTable's CellType is a TypeVar


def cell_store(table: DataTable) -> CellStore | None:
    """The table's row -> column -> cell dict, or None if this Textual does not keep one (public route)."""
    data = getattr(table, "_data", None)
    if isinstance(data, dict) and isinstance(getattr(table, "_update_count", None), int):
        return data
    return None


def fast_path_problem(table: DataTable) -> str | None:
    """Why the fast path cannot be taken on `table` (one line for the log), or None when it can."""
    if cell_store(table) is not None:
        return None
    import textual

    return (f"Textual {textual.__version__} stores DataTable cells differently from {CHECKED_AGAINST}: "
            f"the fleet table refreshes through update_cell() per cell (slower with many nodes)")


class QuietCells:
    """One refresh's cell changes: set straight into the cell store, then one refresh (``done``).

    ``row(key)`` gives a ``set(column_key, value)`` for one row: the row's own dict's ``__setitem__`` on the
    fast path (no wrapper, nothing collected: a 1,000-row batch allocates nothing per cell, which also
    keeps the garbage collector out of the refresh), else public ``update_cell`` for that row, counted in
    ``slow_cells``.
    """

    __slots__ = ("table", "store", "fast_rows", "slow_cells")

    def __init__(self, table: DataTable):
        self.table = table
        self.store = cell_store(table)
        self.fast_rows = 0  # rows handed out on the fast path
        self.slow_cells = 0  # cells set through update_cell

    def row(self, row_key: str) -> Callable[[ColumnKey, object], None]:
        row = self.store.get(row_key) if self.store is not None else None  # a str finds its RowKey
        if row is not None:
            self.fast_rows += 1
            return row.__setitem__
        return partial(self._update_cell, row_key)

    def _update_cell(self, row_key: str, column_key: ColumnKey, value: object) -> None:
        self.slow_cells += 1
        self.table.update_cell(row_key, column_key, value)

    def done(self) -> None:
        """After the last cell: the rows written on the fast path render from their new cells."""
        if self.fast_rows:
            invalidate_render_caches(self.table)


def invalidate_render_caches(table: DataTable) -> bool:
    """Make every row and the header render from what the table holds now; refresh it.

    True: by one step of the cache generation. False: public route, toggling ``zebra_stripes`` (its
    watcher clears every cache) and back.
    """
    if cell_store(table) is not None:
        table._update_count += 1
        table.refresh()
        return True
    table.zebra_stripes = not table.zebra_stripes
    table.zebra_stripes = not table.zebra_stripes
    return False
