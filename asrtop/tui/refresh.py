"""PURE: one console refresh, from a poll's answers to what the UI applies (no textual here).

The console runs `prepare` in a thread (AsrtopApp.poll_fleet), off the event loop: the merge, the history and
the problem rules, the header's summary and the fleet table's cells and their diff against what the table
shows. What comes back is a frozen `Refreshed` (DESIGN rule 4); the UI thread only sets the changed cells,
adds or removes rows and updates the header. A 1,000-node refresh costs tens of milliseconds of CPU, which on
the event loop would freeze keys and paint for that long.

The history and the problem tracker are the refresh's own state: `prepare` changes them under the app's
`history_lock`; the UI reads the history under the same lock (the detail screen's sparklines).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

from asrtop.fleet import FleetSnapshot, NodeView
from asrtop.history import FleetHistory
from asrtop.problems.engine import ProblemTracker
from asrtop.problems.model import Problem
from asrtop.problems.words import critical_nodes
from rich.text import Text

from asrtop.tui.format import (BAR_WIDTH, COLUMN_KEYS, Cell, TableContext, matches_filter, row_cells, sort_value,
                               sparkline, table_context, without_colour)
from asrtop.tui.problem_lines import Built, ProblemLines, problem_lines
from asrtop.tui.summary import Summary, summarize

TREND = 10  # samples of the fleet in-flight sparkline in the header
_ABSENT = object()
RIGHT = frozenset({"inflight", "rps", "weight", "5xx", "rt", "temp", "power", "cpu", "age"})  # right-justified


def cell_text(cell: Cell, key: str, colour: bool = True) -> Text:
    """A table cell as the Rich Text the table holds (made once, never changed afterwards: Texts made in the
    refresh thread are handed to the UI as the snapshot is)."""
    style = cell[1] if colour else without_colour(cell[1])
    text = Text(cell[0], style=style, no_wrap=True, justify="right" if key in RIGHT else "left")
    if len(cell) > 2:  # the figure after a bar takes the accent (format.Cell)
        text.stylize(cell[2], BAR_WIDTH)  # type: ignore[misc]
    return text


@dataclass(frozen=True)
class RowsView:
    """What the table's rows depend on besides the fleet: the operator's filter and sort."""

    filter_text: str = ""
    sort_column: str | None = None
    sort_reverse: bool = False


@dataclass(frozen=True)
class RowsDiff:
    """The fleet table's rows for one snapshot, and how they differ from `base` (the cells the table showed
    when the diff was made: the table applies the diff only while it still shows exactly those)."""

    cells: Mapping[str, tuple[Cell, ...]]  # every row shown, in COLUMNS order (a new dict, never changed)
    order: tuple[str, ...]  # rows in display order (filtered, sorted)
    changed: tuple[tuple[str, tuple[int, ...]], ...]  # rows of `base` whose cells changed: indexes into COLUMNS
    added: tuple[str, ...]  # rows not in `base`, in the fleet's order
    removed: tuple[str, ...]  # rows of `base` no longer shown
    base: Mapping[str, tuple[Cell, ...]]
    view: RowsView
    ctx: TableContext
    nodes: Mapping[str, NodeView]  # the rows' nodes by name (to redo a row whose selection or drain changed)
    # The changed cells of the columns `shown` (indexes into COLUMNS) as Rich Text, made with `colour`: the UI
    # sets them as they are while it still shows those columns. shown None: none made.
    texts: tuple[tuple[str, tuple[tuple[int, Text], ...]], ...] = ()
    shown: tuple[int, ...] | None = None
    colour: bool = True
    # Rows of `base` outside the table's window: their cells were not worked out (`cells` holds the base's, maybe
    # out of date); the table works them out from these nodes when they come into view (FleetTable.show_deferred).
    deferred: Mapping[str, NodeView] = field(default_factory=dict)


def changed_cells(row: tuple[Cell, ...], old: tuple[Cell, ...]) -> tuple[int, ...]:
    return tuple([i for i in range(len(row)) if row[i] != old[i]])


def row_order(wanted: Sequence[NodeView], view: RowsView, now: float) -> tuple[str, ...]:
    if view.sort_column is None:
        return tuple(n.name for n in wanted)
    col = view.sort_column
    position = {n.name: i for i, n in enumerate(wanted)}
    keyed = sorted(wanted, key=lambda n: (sort_value(n, col, now), position[n.name]), reverse=view.sort_reverse)
    return tuple(n.name for n in keyed)


def _texts(cells: Mapping[str, tuple[Cell, ...]], changed, shown: tuple[int, ...] | None, colour: bool):
    if shown is None:
        return ()
    on = frozenset(shown)
    return tuple((name, tuple((i, cell_text(cells[name][i], COLUMN_KEYS[i], colour)) for i in which if i in on))
                 for name, which in changed)


def window_rows(order: Sequence[str], window: tuple[int, int] | None) -> frozenset[str] | None:
    """The rows of `order` in `window` (first row, rows) and as many again on each side (a scroll of up to a
    screen finds its rows worked out); None: no window, every row."""
    if window is None:
        return None
    first, count = window
    return frozenset(order[max(0, first - count):first + 2 * count])


def diff_rows(snap: FleetSnapshot, ctx: TableContext, view: RowsView, base: Mapping[str, tuple[Cell, ...]],
              shown: tuple[int, ...] | None = None, colour: bool = True,
              window: tuple[int, int] | None = None) -> RowsDiff:
    """The rows' cells and their diff against `base`. `window` (the table's first row on screen, rows on
    screen): only the rows in and near it get their cells worked out, the others are deferred (RowsDiff) --
    a 1,000-node table shows ~40 rows, and a row's cells cost ~0.1 ms; rows new to the table always get theirs."""
    wanted = [n for n in snap.nodes if matches_filter(n, view.filter_text)]
    order = row_order(wanted, view, snap.taken_at)
    near = window_rows(order, window)
    cells: dict[str, tuple[Cell, ...]] = {}
    changed, added = [], []
    deferred: dict[str, NodeView] = {}
    for node in wanted:
        name = node.name
        old = base.get(name)
        if old is None:
            added.append(name)
        elif near is not None and name not in near:
            deferred[name] = node
            cells[name] = old
            continue
        row = row_cells(node, ctx)
        if old is not None and old != row:
            changed.append((name, changed_cells(row, old)))
        cells[name] = row
    removed = tuple(k for k in base if k not in cells)
    return RowsDiff(cells, order, tuple(changed), tuple(added), removed, base, view, ctx,
                    {n.name: n for n in wanted}, _texts(cells, changed, shown, colour), shown, colour, deferred)


def restyle(diff: RowsDiff, ctx: TableContext) -> RowsDiff:
    """`diff` under `ctx`: the same fleet, but the selection, the drains or the critical marks may have changed
    since the diff was made (the operator selected a node, a drain progressed): only those rows are redone."""
    before = diff.ctx
    drains = {n for n in before.draining.keys() | ctx.draining.keys()
              if before.draining.get(n, _ABSENT) != ctx.draining.get(n, _ABSENT)}
    names = [n for n in drains | (before.selected ^ ctx.selected) | (before.critical ^ ctx.critical)
             if n in diff.cells]
    if not names:
        return replace(diff, ctx=ctx)
    cells, changed = dict(diff.cells), dict(diff.changed)
    for name in names:
        row = cells[name] = row_cells(diff.nodes[name], ctx)
        old = diff.base.get(name)
        if old is not None:
            which = changed_cells(row, old)
            if which:
                changed[name] = which
            else:
                changed.pop(name, None)
    texts = dict(diff.texts)
    redone = [(name, changed[name]) for name in names if name in changed]
    for name in names:
        texts.pop(name, None)
    texts.update(_texts(cells, redone, diff.shown, diff.colour))
    deferred = {k: v for k, v in diff.deferred.items() if k not in names}  # those redone are worked out
    return replace(diff, cells=cells, changed=tuple(changed.items()), ctx=ctx, texts=tuple(texts.items()),
                   deferred=deferred)


@dataclass(frozen=True)
class RefreshInputs:
    """What a refresh needs from the UI, taken on the UI thread when it starts. `view` None: no table yet."""

    history: FleetHistory
    tracker: ProblemTracker
    lock: threading.Lock  # the app's history_lock
    problems: tuple[Problem, ...] = ()  # the last ones (kept when the rules fail)
    draining: Mapping[str, int | None] = field(default_factory=dict)
    selected: frozenset[str] = frozenset()
    view: RowsView | None = None
    base: Mapping[str, tuple[Cell, ...]] = field(default_factory=dict)
    shown: tuple[int, ...] | None = None  # the table's columns (indexes into COLUMNS): their changed cells as Text
    colour: bool = True
    window: tuple[int, int] | None = None  # the table's rows on screen (first, count): rows far from it deferred
    # the problems panel's line widths (without, with its scrollbar) and rows, and its lines on screen (by problem
    # key: problem_lines reuses a line made of the same words); widths None: no panel yet, no lines made
    problem_widths: tuple[int, int] | None = None
    problem_rows: int = 0
    problem_built: Built = field(default_factory=dict)


@dataclass(frozen=True)
class Refreshed:
    """A finished refresh: everything the UI shows from it, computed."""

    snapshot: FleetSnapshot
    problems: tuple[Problem, ...]
    rules_error: str | None  # the problem rules raised (the last problems are kept)
    summary: Summary  # the header's
    trend: str  # the header's fleet in-flight sparkline
    names: frozenset[str]  # every node in the fleet
    stale: frozenset[str]  # nodes whose agent stopped answering
    rows: RowsDiff | None
    cpu: Mapping[str, float] = field(default_factory=dict)  # stage -> CPU seconds of the thread that ran it
    problem_lines: ProblemLines | None = None  # the problems panel's lines (None: no panel to make them for)


def release(retired: list) -> float:
    """Let go of what the UI replaced (the last snapshot: its nodes, agent readings and statuses, ~17 objects a
    node), in the refresh thread; the CPU seconds it took. Freed where their last reference went, they were
    freed on the UI loop inside each refresh's apply: 3-5 ms of its 5-7 ms at 1,000 nodes
    (bench_tui_end_to_end)."""
    t = time.thread_time()
    retired.clear()
    return time.thread_time() - t


def prepare(build: Callable[[], FleetSnapshot], inputs: RefreshInputs) -> Refreshed:
    """`build` (the merge) then everything after it; CPU per stage in `cpu` (merge, problems: the history, the rules
    and the panel's lines, summary, diff)."""
    clock = time.thread_time
    t0 = clock()
    snap = build()
    t1 = clock()
    with inputs.lock:
        inputs.history.record(snap)
        try:
            problems, error = tuple(inputs.tracker.update(snap, inputs.history)), None
        except Exception as e:  # a rule's bug: the last problems stay on screen, the UI says so once
            problems, error = inputs.problems, f"{type(e).__name__}: {e}"
        trend = sparkline(inputs.history.fleet_series("in_flight")[-TREND:], TREND).rstrip()
    lines = None
    if inputs.problem_widths is not None:
        lines = problem_lines(problems, snap.taken_at, inputs.problem_widths, inputs.problem_rows, inputs.colour,
                              inputs.problem_built)
    t2 = clock()
    summary = summarize(snap)
    names = frozenset(n.name for n in snap.nodes)
    stale = frozenset(n.name for n in snap.nodes if n.stale and n.config.agent)
    t3 = clock()
    rows = None
    if inputs.view is not None:
        ctx = table_context(snap, inputs.draining, inputs.selected, critical_nodes(problems))
        rows = diff_rows(snap, ctx, inputs.view, inputs.base, inputs.shown, inputs.colour, inputs.window)
    t4 = clock()
    return Refreshed(snap, problems, error, summary, trend, names, stale, rows,
                     {"merge": t1 - t0, "problems": t2 - t1, "summary": t3 - t2, "diff": t4 - t3}, lines)
