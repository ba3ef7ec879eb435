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

- ``DataTable._offset_cache`` (generation -> row offsets, ``_y_offsets``) and ``_ordered_row_cache``
  ((row count, generation) -> rows in order): both a pass over every row, redone after each generation
  step; a step for changed cells only carries them over (``_step_keeping_row_layout``).
- ``DataTable._render_cell(row_index, column_index, base_style, width, cursor, hover)`` -- renders one cell
  into segment lines through Rich (``Styled(Padding(cell, (0, cell_padding)), pre, post)``), cached in
  ``_cell_render_cache`` under a key that holds ``_update_count``: one step makes every visible cell render
  again. ``VisibleCellCache`` overrides it (below): a cell renders again only when its value object changed.
  It uses ``_row_locations``/``_column_locations`` (index -> key), ``_data``, ``_header_row_key``, ``_show_hover_cursor``,
  ``_pseudo_class_state`` (the other parts of Textual's own key), ``_get_styles_to_render_cell`` (the cursor /
  hover / fixed styles) and keeps its entries in ``_cell_render_cache`` (a ``CellRenders`` in place of Textual's
  LRUCache: the body's cells by row in its ``rows``, emptied by its ``clear``), so Textual's own cache clears
  (theme, cursor, zebra) drop them too.
- ``DataTable._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)`` -- puts one
  line of a row together from its cells (fixed and scrollable), cached in ``_row_render_cache`` under a key
  that holds ``_update_count``. ``VisibleCellCache`` overrides it for a row cursor without row labels
  (``_labelled_row_exists``, ``_row_label_column_width``), keeping Textual's key and cache, ``_get_row_style``
  and ``_get_styles_to_render_cell`` for the styles, and reading each row's cells from ``_cell_render_cache``
  as ``_render_cell`` keeps them.
- ``DataTable._render_line(y, x1, x2, base_style)`` -- a line of the table: the row's line put together
  (``_render_line_in_row``), its scrollable part cropped after the fixed columns, joined to them, cut to the
  width and simplified, cached in ``_line_cache`` under a key of Textual's (``_get_offsets(y)`` finds the row).
  ``VisibleCellCache._render_line`` joins the cells as that crop and cut leave them, under the same key, when
  the line is not scrolled sideways and its columns fit the width; else Textual's.
- ``OptionList._update_lines`` (the options' lines in ``_line_cache``: ``lines`` as (option, line) pairs,
  ``heights``, ``index_to_line``; then ``virtual_size`` and ``_scroll_update``), ``_get_left_gutter_width`` and
  ``Option._divider``: ``OneLineOptionList`` writes them for one-line options without measuring each.
- ``OptionList._get_option_render(option, style)`` (an option's strips, cached in ``_option_render_cache`` under
  ``(option, style, padding)``, each strip given the meta ``{"option": _option_to_index[option]}``):
  ``OneLineOptionList`` renders a one-line Text that fits through Rich alone, as Textual shows it.
- ``DataTable._on_resize`` steps ``_update_count`` on every resize, for the room right of the columns that a
  row's line holds (its cache key has no width). ``VisibleCellCache._on_resize`` keeps the generation when the
  width stays (the problems panel opening or closing under the table changes the height only).
- ``OptionList._options`` (the options in order), ``Option._set_prompt`` (a new prompt, its visual dropped) and
  ``OptionList._option_render_cache`` (keyed ``(option, style, padding)``): ``replace_prompts`` sets the prompts
  that changed and drops only their renders. ``replace_option_prompt_at_index`` empties the render cache and
  the line layout (``_line_cache``) on every call, so the next paint measured every option again and rendered
  every visible line, though a problem line is one line and stays one.
- ``Compositor._get_renders(crop)`` (textual/_compositor.py: each widget on screen with its region, clip and the lines
  it renders, for ``_render_chops``), ``Compositor.visible_widgets`` (widget -> (region, clip)), ``Compositor.size``
  and ``Screen._compositor``: ``CroppedCompositor`` asks a partial update's widgets for its lines alone.
- ``LRUCache._full`` (textual/cache.py) -- set the first time the cache passes its size, never unset but by
  ``clear()``: once set, each entry added evicts one, so a larger ``maxsize`` alone does not let it grow.
  ``bound_render_caches`` unsets it when it gives a cache room to grow.

Why the paint: after a refresh the next frame cost 64-66 ms CPU at 1,000 rows (bench_tui_refresh, 160x45).
It does not grow with the rows (measured the same at 100 rows): it is every visible cell (41 rows x 16)
rendered through Rich again, because the generation step above invalidates all of them, though a refresh
changes 2-4 cells a row. With ``VisibleCellCache`` only the changed visible cells render (and one render
of a given text, style and width is shared by every cell that shows it); rows are still put together from
their cells (Textual's row and line caches are keyed on the generation).

While a paint lasts (``render_lines``), ``get_component_styles(...)`` and ``ordered_columns`` are worked out
once, not on every line as DataTable's ``_render_line_in_row`` asks for them (the component's ``rich_style``
walks the styles and the ancestors' backgrounds: ~1/5 of the paint of a 1,000-node table's changed rows).
So is what ``DataTable.render_line`` works out on every line before it calls ``_render_line(y, x1, x2,
base_style)`` (the line, from ``_line_cache``): the scroll offset, the fixed rows' height (``_row_locations``,
``_header_row_key``) and the widget's own ``rich_style``; and the line filters (``get_line_filters``) are
applied to the line ``_render_line`` returns, so that the filtered strip is cached with it (``Strip``'s
filter cache) instead of Textual filtering the new Strip its styles cache builds of each line on every paint.
That is only the same as Textual's when the styles cache passes a content line through as it is (no border,
outline, padding, tint, hatch or opacity: ``_paint_frame`` checks, else Textual's order is kept).

Why rows are added at once (``add_rows_at_once``): the first refresh fills the table with every row, and a
resize that shows other columns fills it again (``FleetTable._rebuild``). ``DataTable.add_row`` does, per row,
what depends only on the table: ``ordered_columns`` (a sorted list built anew) twice, the cursor set again
(its validation and watchers), ``check_idle``. At 1,000 rows that bookkeeping was ~0.4 of a rebuild.
``add_rows_at_once`` writes what ``add_row`` writes -- ``_row_locations`` (a two-way dict: key <-> index),
``_data``, ``rows`` (a ``Row`` each), ``_new_rows`` (the rows whose size ``_update_dimensions`` works out
on idle), ``_require_update_dimensions``, ``_update_count`` stepped once per row -- and does the rest once,
``_highlight_cursor`` included when the rows are the table's first (as ``add_row`` does for its first row).
Then, on idle, ``DataTable._update_dimensions(new_rows)`` measured every cell of the new rows through Rich for
``Column.content_width``, which only an ``auto_width`` column reads (``Column.get_render_width``): 150-270 ms
on the UI loop after a 1,000-row fill. ``VisibleCellCache._update_dimensions`` leaves out the rows whose measures
cannot count (one line high, no label, every column of fixed width) and hands the rest to Textual's.

Garbage that needs the collector (``tests/tui/test_textual_internals.py`` checks there is none from refreshes):

- ``Strip.divide(cuts)`` -- the compositor divides every painted line at the screen's cuts; when the one cut is
  the line's end, Textual returns ``[self]`` and caches that list in the strip's own ``_divide_cache``: the
  strip refers to itself, so every such line left a cycle when it was dropped (~160 strips, ~2,300 objects in 8
  refreshes at 1,000 nodes). ``_divide_without_self_cycle`` (installed on Strip when this module loads) returns
  the same ``[self]`` without caching it.
- ``LRUCache`` keeps its entries in a ring of ``[prev, next, key, value]`` lists: ``clear()`` drops the ring
  as one cycle (the problems list clears its option cache whenever its problems change). ``acyclic_caches``
  gives a widget ``AcyclicLRUCache``s, whose ``clear()`` unlinks the entries first.

Without them (a Textual that keeps cells differently) every function here takes the public route
(``update_cell`` per cell; a reactive whose watcher clears the caches), shows the same cells, slower, and
``fast_path_problem`` says why: the fleet table logs it and notifies once, it does not slow down silently.
"""

from __future__ import annotations

from functools import partial
from itertools import zip_longest
from typing import Callable, Iterable, NamedTuple, Sequence

from rich.cells import cell_len
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual._compositor import Compositor
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widgets import DataTable, OptionList
from textual.widgets.option_list import Option
from textual.widgets.data_table import ColumnKey, DuplicateKey, Row, RowKey

CHECKED_AGAINST = "8.2.8"

CellStore = dict[RowKey, dict[ColumnKey, object]]  # DataTable's CellType is a TypeVar
_textual_divide = Strip.divide


def _divide_without_self_cycle(self: Strip, cuts):
    """Strip.divide, but the one-piece answer (``[self]``) is not cached in the strip itself (see above)."""
    cuts = [cut for cut in cuts if cut <= self.cell_length]
    if cuts == [self.cell_length]:
        return [self]
    return _textual_divide(self, cuts)


Strip.divide = _divide_without_self_cycle  # type: ignore[method-assign]


class CroppedCompositor(Compositor):
    """Textual's Compositor, whose partial updates ask only the widgets on the updated lines for only those lines.

    ``Compositor._get_renders(crop)`` picks the widgets whose clip (their container's region: the screen, for the
    fleet screen's) overlaps the update's crop, so every widget on screen, and asks each for every line it shows;
    ``_render_chops`` then drops the lines outside the update (``is_rendered_line``) and ``ChopsUpdate`` what lies
    outside its spans. Here a partial update asks a widget only for its lines in the crop's rows, and only when
    what it shows overlaps the crop: the same chops on the updated lines, the rest never made. A full update (the
    crop is the screen) is Textual's. At 1,000 nodes each band of the fleet table (fleet_table.repaint_in_bands)
    made every widget on screen render every line, the table's 41 too, for 16 lines that changed.
    ``tests/tui/test_textual_internals.py`` checks the updates against Textual's."""

    def _get_renders(self, crop: Region | None = None):
        if not crop or crop == self.size.region:
            return super()._get_renders(crop)
        return self._renders_on(crop)

    def _renders_on(self, crop: Region):
        lines = Region(0, crop.y, self.size.width, crop.height)  # the crop's rows, the whole width
        for widget, (region, clip) in self.visible_widgets.items():
            clip = clip.intersection(lines)
            shown = region.intersection(clip)
            if shown.width and shown.height and shown.overlaps(crop):
                x, y, width, height = shown
                yield region, clip, widget.render_lines(Region(x - region.x, y - region.y, width, height))


def cropped_compositor(screen):
    """`screen` with a CroppedCompositor (call it in the screen's __init__, before anything is laid out); the
    screen. Textual's own where its Screen keeps no ``_compositor`` to replace."""
    if type(getattr(screen, "_compositor", None)) is Compositor:
        screen._compositor = CroppedCompositor()
    return screen


class AcyclicLRUCache(LRUCache):
    """Textual's LRUCache whose ``clear()`` unlinks its ring of entries first: cleared, they are freed at once by
    reference counting, not left as a cycle for the next full collection (asrtop.tui.gc_schedule)."""

    __slots__ = ()

    def clear(self) -> None:
        link = self._head
        while link:  # each link is emptied after its next is read: the ring ends at the emptied head
            following = link[1]
            link.clear()
            link = following
        super().clear()


class CellRenders(AcyclicLRUCache):
    """DataTable's ``_cell_render_cache`` as VisibleCellCache keeps it: Textual's own entries (the header's cells,
    row labels) as before, and in ``rows`` the body's cells that VisibleCellCache renders: a row's place and
    styles -> its cells by column index, each (value shown, width, column key, lines). A row's line is put together
    from one lookup of its row, not one of an 11-field key per cell (measured at 1,000 nodes, a full table put
    together again from cached cells: ~5% less CPU). ``rows`` is cleared with the cache, so every Textual clear of
    it (theme, cursor, zebra, a style update) clears them too."""

    __slots__ = ("rows",)

    def __init__(self, maxsize: int, rows: int = 64):
        super().__init__(maxsize)
        self.rows: AcyclicLRUCache = AcyclicLRUCache(rows)

    def clear(self) -> None:
        self.rows.clear()
        super().clear()


def acyclic_caches(widget):
    """`widget` with every LRUCache it holds replaced by an empty AcyclicLRUCache of the same size (call it
    before the widget caches anything); the widget."""
    for name, value in list(vars(widget).items()):
        if type(value) is LRUCache:
            setattr(widget, name, AcyclicLRUCache(value.maxsize))
    return widget


def replace_prompts(listing: OptionList, prompts: Sequence[object]) -> int:
    """Option i's prompt becomes prompts[i] (one per option) where it is another object; how many changed. One-line
    Texts replacing one-line Texts keep the list's line layout and the other options' renders (see the module
    docstring); anything else takes OptionList's public route."""
    renders = getattr(listing, "_option_render_cache", None)
    quiet = isinstance(renders, LRUCache) and hasattr(Option, "_set_prompt")
    replaced, changed = set(), 0
    for i, prompt in enumerate(prompts):
        option = listing.get_option_at_index(i)
        if option.prompt is prompt:
            continue
        changed += 1
        if quiet and _one_line(option.prompt) and _one_line(prompt):
            option._set_prompt(prompt)
            replaced.add(option)
        else:
            listing.replace_option_prompt_at_index(i, prompt)
    if replaced:
        for key in [key for key in renders.keys() if key[0] in replaced]:
            renders.discard(key)
        listing.refresh()
    return changed


def _one_line(prompt: object) -> bool:
    return isinstance(prompt, Text) and prompt.no_wrap and "\n" not in prompt.plain


class OneLineOptionList(OptionList):
    """An OptionList whose options are known one line each while their prompts are one-line Texts (no wrap, no
    newline) and no option has a divider, without measuring them: OptionList's ``_update_lines`` visualizes every
    option added (through Rich) for its height, and ``get_content_height`` every option on each layout. The
    problems list is rebuilt with up to 50 of them whenever its problems change: measuring them was ~10 of the
    ~28 ms of the screen update that opened the panel at 1,000 nodes (bench_tui_end_to_end). What it writes is
    what ``_update_lines`` writes (``_line_cache``: ``lines`` as (option index, line) pairs, ``heights``,
    ``index_to_line``; then the virtual size); with another option or another Textual, Textual's own."""

    def _one_line_options(self, options) -> bool:
        cache = getattr(self, "_line_cache", None)
        return (cache is not None and all(hasattr(cache, name) for name in ("lines", "heights", "index_to_line"))
                and all(not option._divider and _one_line(option.prompt) for option in options))

    def _update_lines(self) -> None:
        region = self.scrollable_content_region
        if not region:
            return
        options = self.options
        lines = getattr(getattr(self, "_line_cache", None), "lines", None)
        next_index = lines[-1][0] + 1 if lines else 0
        if not self._one_line_options(options[next_index:]):
            super()._update_lines()
            return
        cache = self._line_cache
        for index in range(next_index, len(options)):
            cache.index_to_line[index] = len(cache.lines)
            cache.heights[index] = 1
            cache.lines.append((index, 0))
        virtual_size = Size(region.width - self._get_left_gutter_width(), len(cache.lines))
        if virtual_size != self.virtual_size:
            self.virtual_size = virtual_size
            self._scroll_update(virtual_size)

    def get_content_height(self, container, viewport, width: int) -> int:
        options = self.options
        if self._one_line_options(options):
            return len(options)
        return super().get_content_height(container, viewport, width)

    def _get_option_render(self, option: Option, style) -> list[Strip]:
        """A one-line Text that fits, left-aligned, in an option without CSS padding: its Rich segments on the
        option's style, as OptionList's own render (Text -> Content -> strips: 0.30 vs 0.07 ms a problem line,
        measured; the list's 7 lines painted again 0.70x of its time, bench_tui_end_to_end) shows it. Cached as
        OptionList caches its renders; anything else is Textual's."""
        padding = self.get_component_styles("option-list--option").padding
        key = (option, style, padding)
        cache = getattr(self, "_option_render_cache", None)
        if cache is None:
            return super()._get_option_render(option, style)
        if (strips := cache.get(key)) is not None:
            return strips
        prompt = option.prompt
        width = self.scrollable_content_region.width - self._get_left_gutter_width()
        index = getattr(self, "_option_to_index", {}).get(option)
        if (padding or option._divider or index is None or not _one_line(prompt) or not prompt.plain.isprintable()
                or prompt.cell_len > width or self.styles.text_align not in ("left", "start")):
            return super()._get_option_render(option, style)
        # what OptionList's strip.extend_cell_length(width, style).apply_meta(meta) makes, as one strip: each
        # segment on the option's style, the padding in it, the meta on all
        on = style.rich_style + Style.from_meta({"option": index})
        segments = list(Segment.apply_style(prompt.render(self.app.console), on))
        if width > prompt.cell_len:
            segments.append(Segment(" " * (width - prompt.cell_len), on))
        strips = [Strip(segments, width)]
        cache[key] = strips
        return strips


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

    def done(self, refresh: bool = True) -> None:
        """After the last cell: the rows written on the fast path render from their new cells. `refresh` False:
        no repaint asked for (called while the table is being painted: it paints them now)."""
        if self.fast_rows:
            invalidate_render_caches(self.table, refresh)


# what add_rows_at_once writes or calls besides the cell store (cell_store)
_ADD_ROW_INTERNALS = ("_row_locations", "rows", "_new_rows", "_require_update_dimensions", "_highlight_cursor")


def add_rows_at_once(table: DataTable, rows: Iterable[tuple[str, Sequence[object]]]) -> int:
    """``table.add_row(*cells, key=key)`` for each (key, cells), one row high, without a label: the same rows, keys,
    cells and cursor as that loop, with what ``add_row`` does per row that depends only on the table (its
    ordered columns: a sorted list built anew, twice; the cursor set again, its validation and watchers; the
    idle check) done once for the batch. The rows added (Textual's path when the internals are missing)."""
    if cell_store(table) is None or not all(hasattr(table, name) for name in _ADD_ROW_INTERNALS):
        return add_rows_one_by_one(table, rows)
    keys = [column.key for column in DataTable.ordered_columns.fget(table)]
    locations, data, table_rows, new = table._row_locations, table._data, table.rows, table._new_rows
    was_empty = not table_rows
    added = 0
    try:
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            if len(cells) > len(keys):
                raise ValueError("More values provided than there are columns.")
            locations[row_key] = len(table_rows)
            data[row_key] = dict(zip_longest(keys, cells))
            table_rows[row_key] = Row(row_key, 1, None, False)
            new.add(row_key)
            added += 1
    finally:  # a bad row stops the batch as it stops add_row's loop: the rows before it are in, sized and counted
        if added:
            _added(table, added, was_empty)
    return added


def add_rows_one_by_one(table: DataTable, rows: Iterable[tuple[str, Sequence[object]]]) -> int:
    """Textual's own path: ``table.add_row(*cells, key=key)`` for each (key, cells); the rows added."""
    added = 0
    for key, cells in rows:
        table.add_row(*cells, key=key)
        added += 1
    return added


def _added(table: DataTable, added: int, was_empty: bool) -> None:
    """What add_row does after writing its row, once for `added` rows."""
    table._require_update_dimensions = True
    table.cursor_coordinate = table.cursor_coordinate
    if was_empty and table.columns and table.show_cursor and table.cursor_type != "none":
        table._highlight_cursor()  # as add_row does when its row is the first: the cursor has a cell now
    table._update_count += added  # add_row steps the generation once per row
    table.check_idle()


def invalidate_render_caches(table: DataTable, refresh: bool = True) -> bool:
    """Make every row and the header render from what the table holds now; refresh it (unless `refresh` is False).

    True: by one step of the cache generation. False: public route, toggling ``zebra_stripes`` (its
    watcher clears every cache) and back.
    """
    if cell_store(table) is not None:
        _step_keeping_row_layout(table)
        if refresh:
            table.refresh()
        return True
    table.zebra_stripes = not table.zebra_stripes
    table.zebra_stripes = not table.zebra_stripes
    return False


def _step_keeping_row_layout(table: DataTable) -> None:
    """One step of the cache generation for changed cells or column labels: the rows' order and heights did
    not change, so the row offsets and the ordered rows Textual computed for the old generation (a pass over
    every row, 5,000 rows: about half the paint) are carried over to the new one instead of recomputed."""
    count = table._update_count
    offsets = table._offset_cache.get(count)
    rows = table._ordered_row_cache.get((table.row_count, count))
    table._update_count = count + 1
    if offsets is not None:
        table._offset_cache[count + 1] = offsets
    if rows is not None:
        table._ordered_row_cache[(table.row_count, count + 1)] = rows


# How many screens of cells the cell caches keep (bound_render_caches).
RENDER_CACHE_SCREENS = 3
# Lines beyond one screen that the row, line and renderable caches keep (bound_render_caches).
GENERATION_CACHE_MARGIN = 8
_ROW_CACHES = ("_row_render_cache", "_line_cache", "_row_renderable_cache")


def bound_render_caches(table: DataTable, visible_rows: int, columns: int) -> bool:
    """Size the table's render caches: the cells' to a few screens (RENDER_CACHE_SCREENS) of `visible_rows` rows of
    `columns` cells, the rows', lines' and row renderables' to one screen and a margin (GENERATION_CACHE_MARGIN);
    False when this Textual keeps them differently (nothing changed).

    Textual sizes them for any table: 1,000 rows, lines and row renderables and 10,000 cells. The row, line and
    renderable caches are keyed on the cache generation that each refresh steps, so past a screenful they fill
    with rows no paint will ask for again: at 1,000 nodes about 60,000 live objects (Strips with their own
    caches, Segments, Styles), which every full garbage collection walked -- 20-60 ms with the GIL held, the
    longest the console's loop was blocked (tests/benchmarks/bench_tui_end_to_end.py). Three screens of them
    still held two past generations: 37,000 objects alive at the quiet point at 1,000 nodes, 31,000 with one
    screen (counted in that benchmark's app). A cell's entry is not keyed on the generation (its value's
    identity is), so the cells keep a few screens for scrolling back. Called on every resize,
    never emptied here: an LRUCache that holds more than a smaller new size evicts one entry per entry added,
    so it stays at the size it reached (a shrinking window must not make every visible cell render again
    through Rich: ~50 ms the refresh the problems panel opened), and a larger size lets it grow again
    (tests/benchmarks/bench_tui_resize.py)."""
    screen = max(1, visible_rows)
    sizes = {name: max(16, screen + GENERATION_CACHE_MARGIN) for name in _ROW_CACHES}
    sizes["_cell_render_cache"] = max(16, RENDER_CACHE_SCREENS * screen) * max(1, columns)
    caches = {name: getattr(table, name, None) for name in sizes}
    if not all(isinstance(c, LRUCache) for c in caches.values()):
        return False
    content = table.__dict__.get("_content_renders")
    if isinstance(content, LRUCache):
        caches["_content_renders"], sizes["_content_renders"] = content, sizes["_cell_render_cache"]
    cells = caches["_cell_render_cache"]
    if isinstance(cells, CellRenders):  # the body's rows, fixed and scrollable cells apart: two entries a row
        caches["_cell_render_cache.rows"] = cells.rows
        sizes["_cell_render_cache.rows"] = 2 * max(16, RENDER_CACHE_SCREENS * screen)
    for name, cache in caches.items():
        cache.maxsize = sizes[name]
        if getattr(cache, "_full", False) and len(cache) < cache.maxsize:
            # LRUCache marks itself full the first time it passes its size and then evicts one entry per entry
            # added, whatever its size becomes: after a refresh in a small window (16 rows of cells at least),
            # a larger window kept the small cache, and every paint rendered every visible cell again
            cache._full = False
    return True


_EMPTY_TEXT = Text(no_wrap=True, end="")  # textual.widgets._data_table._EMPTY_TEXT: what an empty cell renders as


class _PaintStyles:
    """A component's styles while one paint lasts: its ``rich_style`` worked out once (DataTable asks for it again
    on every line: ~1/5 of a 1,000-node table's paint), anything else read from the styles themselves."""

    __slots__ = ("styles", "rich_style")

    def __init__(self, styles):
        self.styles = styles
        self.rich_style = styles.rich_style

    def __getattr__(self, name: str):
        return getattr(self.styles, name)


class _PaintFrame(NamedTuple):
    """What one paint of the table does not change (``VisibleCellCache._paint_frame``)."""

    width: int
    scroll_x: int
    scroll_y: int
    fixed_height: int  # the header's and the fixed rows' lines
    style: Style  # the widget's rich_style: the lines' base style
    filters: tuple  # the line filters render_line applies (none: the styles cache applies them, as Textual does)
    background: object  # the Color the filters are given


def _cell_key(row_key, column_key, row_index, column_index, style, width, cursor, hover, show_hover, pseudo) -> tuple:
    """A cell's entry in ``_cell_render_cache`` (VisibleCellCache's, beside Textual's own keys): its place, the
    styles it is drawn with and its width; the value it showed is kept in the entry, not the key."""
    return ("value", row_key, column_key, row_index, column_index, style, width, cursor, hover, show_hover, pseudo)


def _row_place(row_key, row_index, style, cursor, hover, show_hover, pseudo) -> tuple:
    """A body row's key in ``CellRenders.rows``: its cells rendered for this place and these styles."""
    return row_key, row_index, style, cursor, hover, show_hover, pseudo


class VisibleCellCache(DataTable):
    """A DataTable whose visible cells render again only when their value changed (see the module docstring).

    A cell's rendering is cached under its place (row and column key and index: the segments carry them as
    meta for the mouse), the styles it was drawn with, its width, and the identity of the value it showed;
    the value is kept with it, so a new value object (the table never changes a Text in place) is a miss.
    A miss of a one-line rich Text renders it as Textual does: the padded Text once per distinct content
    (shared by every cell showing it), then the cell's styles applied around it (``Styled``'s rule). The
    header, row labels and anything else take Textual's own path. ``tests/tui/test_textual_internals.py``
    checks the segments against Textual's for every kind of cell the fleet table shows."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        acyclic_caches(self)  # Textual's own caches
        if isinstance(getattr(self, "_cell_render_cache", None), LRUCache):
            self._cell_render_cache = CellRenders(self._cell_render_cache.maxsize)
        # (text, styles, width) -> segments
        self._content_renders: LRUCache[tuple, list[Segment]] = AcyclicLRUCache(4096)

    # -- one paint: what does not change while it lasts is worked out once, not once a line ----------------
    def render_lines(self, crop):
        self.__dict__["_asrtop_paint"] = {"frame": self._paint_frame()}
        try:
            return super().render_lines(crop)
        finally:
            self.__dict__["_asrtop_paint"] = None

    def _paint_frame(self) -> _PaintFrame:
        """What DataTable.render_line works out on every line (size, scroll, the fixed rows' height, the widget's
        ``rich_style``, which walks every ancestor's styles), and the line filters it applies itself: the app's
        filters when the styles cache passes a content line through as it is (no border, outline, padding, tint,
        hatch or opacity), else none (Textual applies them, as always)."""
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        fixed_height = sum(self.get_row_height(self._row_locations.get_key(i)) for i in range(self.fixed_rows))
        if self.show_header:
            fixed_height += self.get_row_height(self._header_row_key)
        styles = self.styles
        as_it_is = (not any(edge for edge, _ in styles.border) and not any(edge for edge, _ in styles.outline)
                    and not any(styles.padding) and not styles.tint.a and self.opacity == 1.0
                    and styles.text_opacity == 1.0 and (not styles.has_rule("hatch") or styles.hatch == "none"))
        filters = tuple(super().get_line_filters()) if as_it_is else ()
        return _PaintFrame(width, scroll_x, scroll_y, fixed_height, self.rich_style, filters,
                           self.background_colors[1])

    def render_line(self, y: int) -> Strip:
        """DataTable's, with the paint's constants (``_paint_frame``), and the line filtered here: Textual filters
        the new Strip the styles cache makes of each line on every paint, so a line unchanged in DataTable's line
        cache was filtered again each time; filtered here, the result is kept with the cached line (Strip's own
        filter cache). Together ~45% of a repaint of an unchanged 1,000-node table (bench_tui_end_to_end's
        idle frame), and so of the full repaint when the problems panel opens."""
        paint = self.__dict__.get("_asrtop_paint")
        if paint is None:
            return super().render_line(y)
        width, scroll_x, scroll_y, fixed_height, style, filters, background = paint["frame"]
        if y >= fixed_height:
            y += scroll_y
        strip = self._render_line(y, scroll_x, scroll_x + width, style)
        for line_filter in filters:
            strip = strip.apply_filter(line_filter, background)
        return strip

    def get_line_filters(self):
        paint = self.__dict__.get("_asrtop_paint")
        if paint is not None and paint["frame"].filters:
            return ()  # render_line applied them
        return super().get_line_filters()

    def get_component_styles(self, *names: str):
        paint = self.__dict__.get("_asrtop_paint")
        if paint is None:
            return super().get_component_styles(*names)
        styles = paint.get(names)
        if styles is None:
            styles = paint[names] = _PaintStyles(super().get_component_styles(*names))
        return styles

    @property
    def ordered_columns(self):
        paint = self.__dict__.get("_asrtop_paint")
        if paint is None:
            return DataTable.ordered_columns.fget(self)
        columns = paint.get("columns")
        if columns is None:
            columns = paint["columns"] = DataTable.ordered_columns.fget(self)
        return list(columns)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False):
        if column_index < 0 or not self._cells_cacheable():  # row labels (none here): Textual's path
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        column_key = self._column_locations.get_key(column_index)
        if row_index < 0:  # the header: its value is the column's label (relabelling sets a new Text)
            row_key = self._header_row_key
            column = self.columns.get(column_key)
            value = column.label if column is not None else None
        else:
            row_key = self._row_locations.get_key(row_index)
            row = self._data.get(row_key)
            value = row.get(column_key) if row is not None else None
            renders = self._cell_render_cache
            if isinstance(renders, CellRenders):
                return self._render_body_cell(renders, row_key, column_key, row_index, column_index, value,
                                              base_style, width, cursor, hover)
        key = _cell_key(row_key, column_key, row_index, column_index, base_style, width, cursor, hover,
                        self._show_hover_cursor, self._pseudo_class_state)
        cache = self._cell_render_cache
        hit = cache.get(key)  # type: ignore[call-overload]
        if hit is not None and hit[0] is value:
            return hit[1]
        lines = None
        if row_index >= 0:
            lines = self._render_text_cell(row_key, row_index, column_index, value, base_style, width, cursor, hover)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if hit is not None:  # LRUCache.set keeps an existing key's value: the old value's entry goes first
            cache.discard(key)
        cache[key] = (value, lines)  # type: ignore[index]
        return lines

    def _render_body_cell(self, renders: CellRenders, row_key: RowKey, column_key: ColumnKey, row_index: int,
                          column_index: int, value: object, base_style: Style, width: int, cursor: bool, hover: bool):
        """A body cell's lines from its row's cells in ``renders.rows`` while its value object and width are the ones
        rendered, else rendered (``_render_text_cell``, else Textual's) and kept there."""
        place = _row_place(row_key, row_index, base_style, cursor, hover, self._show_hover_cursor,
                           self._pseudo_class_state)
        cells = renders.rows.get(place)
        if cells is None:
            cells = renders.rows[place] = {}
        hit = cells.get(column_index)  # line_of in _render_line_in_row tests a hit the same way, inline (hot path)
        if hit is not None and hit[0] is value and hit[1] == width and hit[2] is column_key:
            return hit[3]
        lines = self._render_text_cell(row_key, row_index, column_index, value, base_style, width, cursor, hover)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cells[column_index] = (value, width, column_key, lines)
        return lines

    def _render_line_in_row(self, row_key: RowKey, line_no: int, base_style: Style, cursor_location,
                            hover_location):
        """DataTable's own, for a row cursor and no row labels, with what a paint does not change worked out once
        per paint (the columns' widths and keys, the fixed and header styles, the room right of the columns)
        and each row's cursor and hover once per row, not per cell; a cell whose value object is the one
        `_render_cell` cached is taken from that cache here. Anything else: Textual's path. At 1,000 nodes the
        rows are put together again every refresh (their cache is keyed on the generation), ~10 ms of a ~23 ms
        paint (bench_tui_end_to_end). ``tests/tui/test_textual_internals.py`` checks every line of a table
        against Textual's own method's."""
        paint = self.__dict__.get("_asrtop_paint")
        if (paint is None or self.cursor_type != "row" or (self._labelled_row_exists and self.show_row_labels)
                or not self._cells_cacheable()):
            return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)
        show_cursor, show_hover, pseudo = self.show_cursor, self._show_hover_cursor, self._pseudo_class_state
        cache_key = (row_key, line_no, base_style, cursor_location, hover_location, "row", show_cursor,
                     show_hover, self._update_count, pseudo)
        rows_cache = self._row_render_cache
        hit = rows_cache.get(cache_key)
        if hit is not None:
            return hit
        keys, widths, fixed, header_style, fixed_style, room = self._paint_rows(paint)
        row_index = self._row_locations.get(row_key) if row_key in self._row_locations else -1
        cursor, hover = cursor_location.row == row_index, hover_location.row == row_index
        render_cell = self._render_cell
        data = self._data.get(row_key) if row_index >= 0 else None
        renders = self._cell_render_cache
        rows = renders.rows if data is not None and isinstance(renders, CellRenders) else None

        def line_of(column_index: int, style: Style, cells: dict | None) -> list[Segment]:
            if cells is not None:  # the row's cells as _render_body_cell keeps them (its hit test, inline: a
                hit = cells.get(column_index)  # shared function cost ~5% of a table put together, all it saved)
                key = keys[column_index]
                if (hit is not None and hit[0] is data.get(key) and hit[1] == widths[column_index]
                        and hit[2] is key):
                    return hit[3][line_no]
            return render_cell(row_index, column_index, style, widths[column_index], cursor=cursor,
                               hover=hover)[line_no]

        def cells_of(style: Style) -> dict | None:
            return None if rows is None else rows.get(_row_place(row_key, row_index, style, cursor, hover, show_hover,
                                                                 pseudo))

        cell_style = header_style if row_key is self._header_row_key else fixed_style
        cells = cells_of(cell_style)
        fixed_row = [line_of(i, cell_style, cells) for i in range(fixed)]
        row_style = self._get_row_style(row_index, base_style)
        cells = cells_of(row_style)
        scrollable_row = [line_of(i, row_style, cells) for i in range(len(keys))]
        extend_style, _ = self._get_styles_to_render_cell(row_index == -1, False, False, hover, cursor,
                                                          show_cursor, show_hover, False, False)
        extend_style = row_style + extend_style
        extend_style += Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
        scrollable_row.append([Segment(" " * room, extend_style)])
        row_pair = (fixed_row, scrollable_row)
        rows_cache[cache_key] = row_pair
        return row_pair

    def _paint_rows(self, paint: dict) -> tuple:
        """The columns' keys and widths, the fixed columns' count, the header's and fixed cells' styles and the
        room right of the columns: the same for every row of one paint."""
        rows = paint.get("rows")
        if rows is None:
            columns = self.ordered_columns
            widths = [column.get_render_width(self) for column in columns]
            fixed = min(self.fixed_columns, len(columns))  # Textual slices: a table without its columns yet
            rows = paint["rows"] = (
                [column.key for column in columns], widths, fixed,
                self.get_component_styles("datatable--header").rich_style,
                self.get_component_styles("datatable--fixed").rich_style + Style.from_meta({"fixed": True}),
                max(0, self.size.width - (sum(widths[fixed:]) + self._row_label_column_width)))
        return rows

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """DataTable's own, for the line of a row put together by ``_render_line_in_row`` above, not scrolled
        sideways, whose columns fit the width: Textual crops the row's scrollable cells after the fixed ones
        (counting every segment's cells), joins the fixed cells before them, then cuts the line back to the
        width (counting again: the fixed cells' width too many) and simplifies it, in three new Strips. Here the
        cells are joined as they come out of that crop and cut (the fixed cells, the scrollable ones after them,
        the room right of the columns less the fixed cells' width), simplified as Textual does, in one Strip of
        known length. ~70% of a line's cost after its row is put together, every visible line of every refresh
        (bench_tui_end_to_end). ``tests/tui/test_textual_internals.py`` checks every line against Textual's."""
        paint = self.__dict__.get("_asrtop_paint")
        if (paint is None or x1 != 0 or self.cursor_type != "row" or (self._labelled_row_exists and
                                                                       self.show_row_labels)
                or not self._cells_cacheable()):
            return super()._render_line(y, x1, x2, base_style)
        _, widths, fixed, _, _, room = self._paint_rows(paint)
        width = self.size.width
        fixed_width = sum(widths[:fixed])
        if x2 != width or room < fixed_width or sum(widths[fixed:]) + room != width or self._row_label_column_width:
            return super()._render_line(y, x1, x2, base_style)  # columns wider than the table: Textual's crop
        try:
            row_key, y_offset_in_row = self._get_offsets(y)
        except LookupError:
            return Strip.blank(width, base_style)
        cursor, hover = self.cursor_coordinate, self.hover_coordinate
        cache_key = (y, x1, x2, width, cursor, hover, base_style, self.cursor_type, self._show_hover_cursor,
                     self._update_count, self._pseudo_class_state)
        line_cache = self._line_cache
        if cache_key in line_cache:
            return line_cache[cache_key]
        fixed_row, scrollable_row = self._render_line_in_row(row_key, y_offset_in_row, base_style,
                                                              cursor_location=cursor, hover_location=hover)
        segments: list[Segment] = []
        for cell in fixed_row:
            segments.extend(cell)
        for cell in scrollable_row[fixed:-1]:
            segments.extend(cell)
        if room > fixed_width:  # the room right of the columns, cut by the fixed cells' width (none left: gone)
            room_segment = scrollable_row[-1][0]
            segments.append(Segment(room_segment.text[:room - fixed_width], room_segment.style))
        strip = Strip(Segment.simplify(segments), width)
        line_cache[cache_key] = strip
        return strip

    def _on_resize(self, event: events.Resize) -> None:
        """DataTable's own steps the cache generation on every resize: every line on screen is put together again
        and the row offsets worked out again. A line's rendering depends on the table's width, not its height, so
        a resize that keeps the width (the problems panel opening or closing under the table) keeps them."""
        width = self.__dict__.get("_asrtop_width")
        self.__dict__["_asrtop_width"] = event.size.width
        if width == event.size.width and self._cells_cacheable():
            event.prevent_default()  # DataTable._on_resize, the one handler after this one, would step it

    def _update_dimensions(self, new_rows) -> None:
        """DataTable's own, without measuring the new rows' cells when no measure can change anything: on idle
        after rows are added, Textual measures every cell of every new row through Rich for its column's
        ``content_width`` (the label column's for a labelled row) and renders the auto-height rows. A column's
        content width is read only where it is ``auto_width``, so for one-line rows without labels under
        fixed-width columns (the fleet table's: ``fit_columns`` sets every width) the measures are thrown away:
        150-270 ms on the UI loop after a 1,000-row fill (the first refresh, a resize that rebuilds the table).
        The rest (the virtual size) is Textual's."""
        if self._cells_cacheable() and not any(column.auto_width for column in self.columns.values()):
            rows, locations = self.rows, self._row_locations
            new_rows = [key for key in new_rows if key in locations and (
                rows[key].label is not None or rows[key].auto_height)]
        super()._update_dimensions(new_rows)

    def _cells_cacheable(self) -> bool:
        """The internals used here exist (else Textual's own path, as a Textual without them needs)."""
        ok = self.__dict__.get("_asrtop_cells_cacheable")
        if ok is None:
            ok = cell_store(self) is not None and all(
                hasattr(self, name) for name in ("_row_locations", "_column_locations", "_cell_render_cache",
                                                 "_show_hover_cursor", "_pseudo_class_state",
                                                 "_get_styles_to_render_cell"))
            self.__dict__["_asrtop_cells_cacheable"] = ok
        return ok

    def _render_text_cell(self, row_key: RowKey, row_index: int, column_index: int, value: object,
                          base_style: Style, width: int, cursor: bool, hover: bool):
        """Textual's rendering of a one-line Text cell, its padded content shared; None: not such a cell."""
        row = self.rows.get(row_key)
        if not isinstance(value, Text) or row is None or row.height != 1 or "\n" in value.plain:
            return None
        if not value:  # Textual draws an empty Text as its own empty, unstyled Text
            value = _EMPTY_TEXT
        padding = self.cell_padding
        content = (value.plain, value.style, tuple(value.spans), value.justify, value.overflow, value.no_wrap,
                   value.end, width, padding)
        segments = self._content_renders.get(content)
        if segments is None:
            console = self.app.console
            segments = padded_text_segments(value, width, padding, console.get_style)
            if segments is None:  # not a cell padded_text_segments knows: Rich renders it, as Textual does
                options = self.app.console_options.update_dimensions(width, 1).update(no_wrap=True)
                segments = console.render_lines(Padding(value, (0, padding)), options)[0]
            self._content_renders[content] = segments
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, fixed, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        pre = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        return [list(Segment.apply_style(segments, style=pre, post_style=post_style))]


_PAD_STYLE = Style()


def padded_text_segments(text: Text, width: int, padding: int, get_style) -> list[Segment] | None:
    """The segments Rich renders for ``Padding(text, (0, padding))`` in `width` cells, built directly (~20x
    faster: after a refresh most visible cells hold new figures), for the cells the fleet table makes: one
    line that fits, single-width characters, justified left or right, a style given as a string and at most
    one span that runs to the end (a bar's figure). None for anything else (the caller renders it through
    Rich). tests/tui/test_textual_internals.py checks these against Rich's for every such shape."""
    plain = text.plain
    inner = width - 2 * padding
    style = text.style
    if (padding < 1 or not plain or len(plain) > inner or text.justify not in ("left", "right")
            or not isinstance(style, str) or cell_len(plain) != len(plain) or "\n" in plain):
        return None
    spans = text.spans
    pad = " " * (inner - len(plain))
    side = Segment(" " * padding, _PAD_STYLE)
    if text.justify == "right" and plain[-1].isspace():  # Rich drops it before it right-justifies
        return None
    if not spans:
        body = plain + pad if text.justify == "left" else pad + plain
        return [side, Segment(body, get_style(style)) if style else Segment(body), side]
    if len(spans) != 1 or not style or text.justify != "left":
        return None
    span = spans[0]
    if not isinstance(span.style, str) or not 0 < span.start < len(plain) or span.end != len(plain):
        return None
    base = get_style(style)
    out = [side, Segment(plain[:span.start], base), Segment(plain[span.start:], base + get_style(span.style))]
    if pad:
        out.append(Segment(pad, base))
    out.append(side)
    return out
