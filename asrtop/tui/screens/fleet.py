"""The main screen: header summary, fleet table, filter line, footer. Every key is a BINDING."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Input, OptionList, Static

from asrtop.control.model import ACTION_KINDS
from asrtop.control.rollout_model import RolloutState
from asrtop.fleet import FleetSnapshot
from asrtop.problems.words import critical_nodes, problem_line
from asrtop.tui.format import COLUMN_KEYS, Cell, no_match_line, sparkline, table_context, table_hint
from asrtop.tui.problem_lines import Built, ProblemLines
from asrtop.tui.refresh import TREND, Refreshed, RowsView
from asrtop.tui.textual_internals import cropped_compositor
from asrtop.tui.widgets.fleet_table import FleetTable
from asrtop.tui.widgets.header import FleetHeader
from asrtop.tui.widgets.keybar import KeyBar
from asrtop.tui.widgets.notes import NotesLine
from asrtop.tui.widgets.problems_panel import ProblemsPanel, list_rows
from asrtop.tui.widgets.rollout_panel import RolloutPanel

SORTABLE = tuple(k for k in COLUMN_KEYS if k != "sel")
# What the operator does to the fleet: hidden from the footer and help, and refused, in a read-only console.
CONSOLE_ACTIONS = (*ACTION_KINDS, "rollout")


class FleetScreen(Screen):
    BINDINGS = [
        Binding("question_mark", "app.help", "Keys", key_display="?"),
        Binding("d", "drain", "Drain"),
        Binding("r", "ready", "Ready"),
        Binding("m", "maint", "Maint"),
        Binding("w", "weight", "Weight"),
        Binding("b", "backup", "Backup"),
        Binding("space", "toggle_select", "Select", key_display="space"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("M", "models", "Models"),
        Binding("U", "rollout", "Upgrade"),
        Binding("escape", "clear", "Clear filter/selection", show=False),
        Binding("p", "problems", "Problems", show=False),  # the key bar has no room; the panel's line says it
    ]

    def __init__(self, cluster: str, read_only: bool):
        super().__init__()
        cropped_compositor(self)  # a band of the table repainted asks only the table, for its band
        self.cluster = cluster
        self.read_only = read_only
        self.selected: set[str] = set()
        self.snapshot: FleetSnapshot | None = None
        self.live = False  # set on mount: the header and table exist
        self._hint = ""  # what the table's width hides (format.table_hint)
        self._note = ""  # the text under the table now
        self._problem_lines: ProblemLines | None = None  # the last refresh's, for the panel

    def compose(self) -> ComposeResult:
        yield FleetHeader(self.cluster, self.read_only, id="summary")
        yield NotesLine(id="notes")
        yield FleetTable(id="fleet")
        yield Static("", id="table-note", classes="hidden")  # what the width hides; an empty filter result
        yield ProblemsPanel(id="problems")
        yield RolloutPanel(id="rollout")
        yield Input(placeholder="filter: name, state or model digest prefix (Enter keeps, Esc clears)",
                    id="filter", classes="hidden")
        yield KeyBar()

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.live = True
        if self.app.snapshot is not None or self.app.last_error:  # what landed while this screen was composing
            self.show_fleet(self.app.snapshot, self.app.last_error)
        self.app.follow_rollout()  # a rollout running or stopped before the console started shows at once

    # -- data ------------------------------------------------------------------------------------
    def show_fleet(self, snap: FleetSnapshot | None, error: str | None = None) -> None:
        self._show(snap, error)

    def show_refresh(self, refreshed: Refreshed) -> None:
        """A refresh prepared off the UI thread: its summary, trend and table diff are applied as they are."""
        self._show(refreshed.snapshot, None, refreshed)

    def _show(self, snap: FleetSnapshot | None, error: str | None, refreshed: Refreshed | None = None) -> None:
        if not self.live:  # is_mounted can be true before the header exists; on_mount pulls the latest
            return
        if snap is not None:
            self.snapshot = snap
            if self.selected:
                names = refreshed.names if refreshed is not None else {n.name for n in snap.nodes}
                self.selected &= names
        self._problem_lines = refreshed.problem_lines if refreshed is not None else None
        if refreshed is not None:
            trend = refreshed.trend
        else:
            with self.app.history_lock:
                trend = sparkline(self.app.history.fleet_series("in_flight")[-TREND:], TREND).rstrip()
        try:
            header = self.query_one(FleetHeader)
        except NoMatches:  # the app is closing: the screen's children go before the screen itself
            return
        header.show(snap, error, self.app.draining, trend, self.app.problems,
                    refreshed.summary if refreshed is not None else None)
        if snap is not None:
            self.query_one(NotesLine).show(snap.notes)
        if self.snapshot is not None:
            if refreshed is not None and refreshed.rows is not None:
                rows = refreshed.rows
                self.table.apply_rows(rows, self.snapshot, replace(
                    rows.ctx, draining=dict(self.app.draining), selected=frozenset(self.selected),
                    critical=critical_nodes(self.app.problems)))
                self._show_table_note()
                if self.problems_panel.resizes_for(self.app.problems, self._problem_rows()):
                    self.table.after_bands(self.show_problems)  # the panel's new height resizes the table
                else:
                    self.show_problems()
            else:
                self.show_problems()
                self.redraw()

    def refresh_inputs(self) -> tuple[RowsView | None, Mapping[str, tuple[Cell, ...]], tuple[int, ...] | None,
                                      tuple[int, int] | None]:
        """The table's filter and sort, the cells and the columns it shows, the rows on screen, for a refresh
        starting now (None: no table yet)."""
        if not self.live:
            return None, {}, None, None
        table = self.table
        return table.view, table.cells, table.shown_columns, table.row_window

    def problem_inputs(self) -> tuple[tuple[int, int] | None, int, Built]:
        """The problems panel's line widths, rows and lines on screen, for a refresh starting now to make its lines
        (asrtop.tui.problem_lines; widths None: no panel yet)."""
        if not self.live:
            return None, 0, {}
        panel = self.problems_panel
        return panel.line_widths(), self._problem_rows(), panel.built

    @property
    def problems_panel(self) -> ProblemsPanel:
        return self.query_one(ProblemsPanel)

    def _problem_rows(self) -> int:
        return list_rows(self.app.size.height, not self.query_one(RolloutPanel).has_class("hidden"))

    def show_problems(self) -> None:
        """The app's problems into the panel (aged against the snapshot's clock, the one the tracker used)."""
        try:
            panel, rows = self.problems_panel, self._problem_rows()
        except NoMatches:  # after_bands called it as the app closes: the screen's children are gone
            return
        panel.show(self.app.problems, self.snapshot.taken_at if self.snapshot else 0.0, rows, self._problem_lines)
        if panel.has_class("hidden") and panel.list.has_focus:  # the last problem cleared: back to the table
            self.table.focus()

    def redraw(self) -> None:
        if self.snapshot is None:
            return
        ctx = table_context(self.snapshot, self.app.draining, self.selected, critical_nodes(self.app.problems))
        self.table.update_fleet(self.snapshot, ctx)
        self._show_table_note()

    def on_fleet_table_fitted(self, event: FleetTable.Fitted) -> None:
        self._hint = table_hint(event.fit, event.agent_counted)
        self._show_table_note()

    def _show_table_note(self) -> None:
        """Under the table: 'no node matches …' for an empty filter result (the table shrinks to its
        header so the line sits where the rows would), else what the width hides."""
        table = self.table
        empty = bool(table.filter_text) and not table.shown_nodes
        table.set_class(empty, "no-rows")
        text = no_match_line(table.filter_text) if empty else self._hint
        note = self.query_one("#table-note", Static)
        note.set_class(not text, "hidden")
        if text != self._note:
            self._note = text
            note.update(text)

    def targets(self) -> list[str]:
        """The selected nodes in table order, else the node under the cursor."""
        if self.selected:
            order = self.table.shown_nodes
            hidden = sorted(self.selected - set(order))
            return [n for n in order if n in self.selected] + hidden
        node = self.table.cursor_node
        return [node] if node else []

    # -- read-only: actions are hidden from the footer and refused --------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in CONSOLE_ACTIONS and self.read_only:
            return False
        return True

    def act(self, kind: str) -> None:
        """Start `kind` on the selected nodes, else the one under the cursor (keys and the command palette)."""
        nodes = self.targets()
        if not nodes:
            self.notify("no node under the cursor", severity="warning")
            return
        self.app.start_action(kind, nodes)

    def action_drain(self) -> None:
        self.act("drain")

    def action_ready(self) -> None:
        self.act("ready")

    def action_maint(self) -> None:
        self.act("maint")

    def action_weight(self) -> None:
        self.act("weight")

    def action_backup(self) -> None:
        self.act("backup")

    def action_rollout(self) -> None:
        """A rolling upgrade of the selected nodes, else of every node (not just the one under the cursor)."""
        self.app.start_rollout(self.targets() if self.selected else [])

    def show_rollout(self, state: RolloutState | None, now: float, alive: bool | None, collapsed: bool,
                     config_path: Path | None, error: str | None = None) -> None:
        if not self.live:
            return
        try:
            panel = self.query_one(RolloutPanel)
        except NoMatches:  # the app is closing: the screen's children go before the screen itself
            return
        problems = self.problems_panel
        panel.reserved = 0 if problems.has_class("hidden") else problems.outer_size.height
        panel.show(state, now, alive, collapsed, config_path, error)

    # -- navigation --------------------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        node = self.table.cursor_node
        if node is None:
            return
        self.selected ^= {node}
        self.redraw()
        if self.table.cursor_row < self.table.row_count - 1:
            self.table.move_cursor(row=self.table.cursor_row + 1)

    def action_clear(self) -> None:
        if self.problems_panel.list.has_focus:  # esc in the problems list: back to the table first
            self.table.focus()
            return
        box = self.query_one("#filter", Input)
        if self.table.filter_text or not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            self.table.filter_text = ""
            self.table.resort()
            self._show_table_note()
            self.table.focus()
        elif self.selected:
            self.selected.clear()
            self.redraw()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        # Focus NOW, not deferred (Widget.focus): keys typed or pasted right after `/` are already queued and
        # would reach the table's bindings ('d' in "node" opened a drain).
        self.set_focus(box)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.table.filter_text = event.value.strip()
            self.table.resort()
            self._show_table_note()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value.strip():
                event.input.add_class("hidden")
            self.table.focus()

    def action_sort(self) -> None:
        t = self.table
        i = SORTABLE.index(t.sort_column) + 1 if t.sort_column in SORTABLE else 0
        column = SORTABLE[i] if i < len(SORTABLE) else None
        t.set_sort(column)  # the column's header shows ▲/▼; back to config order has no header to show it
        if column is None:
            self.notify("config order (unsorted)", timeout=2)

    def action_reverse_sort(self) -> None:
        t = self.table
        t.set_sort(t.sort_column, not t.sort_reverse)

    def action_models(self) -> None:
        self.app.open_models()

    def action_problems(self) -> None:
        """`p`: to the problems list and back to the table."""
        panel = self.problems_panel
        if panel.list.has_focus:
            self.table.focus()
        elif panel.has_class("hidden"):
            self.notify("no problems", timeout=2)
        else:
            self.set_focus(panel.list)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The list took the focus (`p`, Tab, a click): the table's cursor goes to its problem's node."""
        listing = self.problems_panel.list
        if event.widget is not listing:
            return
        if listing.highlighted is None:
            listing.highlighted = 0  # its event follows
        else:
            self._follow(listing.highlighted)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option_list.has_focus:
            self._follow(event.option_index)

    def _follow(self, index: int) -> None:
        """Moving through the list moves the table's cursor to the problem's node: the row it is about shows,
        and an action key acts on that node."""
        problem = self.problems_panel.problem_at(index)
        if problem is not None and problem.node is not None:
            self.table.show_node(problem.node)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter on a problem: its node's row under the table's cursor, then its detail (as Enter on the row)."""
        event.stop()
        problem = self.problems_panel.problem_at(event.option_index)
        if problem is None:
            return
        if problem.node is None:
            self.notify(problem_line(problem, self.snapshot.taken_at if self.snapshot else 0.0),
                        title="fleet problem: no node to open", timeout=8)
            return
        self.table.show_node(problem.node)
        self.table.focus()
        self.app.open_detail(problem.node)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.open_detail(event.row_key.value)
