"""The console's refresh loop (AsrtopApp mixes this in): poll, prepare off the UI thread, apply.

One worker polls the source; the merge (PollingFleetSource.poll() then merge()), the history, the problem rules,
the header's summary and the table's diff run in a thread (asrtop.tui.refresh.prepare); the frozen result reaches
the UI in a FleetUpdated message and is applied inside batch_update(): the UI thread only sets the changed
cells, the rows and the header. One refresh is in flight at a time.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from functools import partial

from textual import work
from textual.message import Message

from asrtop.fleet import FleetSnapshot
from asrtop.sources import PollingFleetSource
from asrtop.tui.gc_schedule import FullCollections, freeze_long_lived
from asrtop.tui.refresh import RefreshInputs, Refreshed, prepare, release
from asrtop.tui.screens import ShowsFleet

APPLY_WAIT = 10.0  # seconds the poll waits for its refresh to be applied before polling on regardless
RELEASE_WAIT = 0.5  # seconds the release of the last snapshot waits for the table's bands
# How often the refresh thread and the UI loop hand the GIL to each other (sys.setswitchinterval) in the console's
# own process: a thread that wants the GIL waits up to this long for the other to let go. Python's 5 ms added up
# to that much to a key, a band or the loop's wake-up whenever the refresh thread was running; at 1 ms the UI
# loop's longest block at 1,000 nodes was shorter (median 7.7-10.2 ms vs 8.7-12.8, max 14.8-27.0 vs 19.4-22.6
# in four alternated pairs of bench_tui_end_to_end runs) and CPU per refresh no higher (42-58 vs 44-64 ms).
GIL_SWITCH = 0.001


def _given(snap: FleetSnapshot) -> FleetSnapshot:
    return snap


class FleetUpdated(Message):
    def __init__(self, snapshot: FleetSnapshot, seq: int = 0, refreshed: Refreshed | None = None):
        super().__init__()
        self.snapshot = snapshot
        self.seq = seq  # number of the poll that produced it (polls are numbered when they start)
        self.refreshed = refreshed  # prepared off the UI thread; None: prepare it here (a snapshot given directly)


class RefreshFailed(Message):
    def __init__(self, error: str):
        super().__init__()
        self.error = error


class RefreshPipeline:
    """Needs AsrtopApp's source, history, history_lock, problem tracker, fleet screen, draining and the
    _wake / _applied events; the drain tracking and notifications stay in the app."""

    # The console's process (run_tui) sets this: after the first refresh is painted, what is alive then (modules,
    # widgets, a full table) lives as long as the console, and Python's collector scanned all of it again in each
    # full collection: ~110 ms at 1,000 nodes, on whichever thread allocated, the UI's included. gc.freeze()
    # moves it out of the collector's sight (after one collection, while the first answers are awaited: see
    # collect_before_first_refresh). Off in tests: many apps in one process would each leave their widgets frozen.
    freeze_after_first_refresh = False
    gc_frozen = False  # this app froze the heap (at most once per process)
    _collected_early = False  # collect_before_first_refresh ran: the freeze needs no collection of its own
    # Full collections at the quiet point of the refresh cycle, from the freeze on (asrtop.tui.gc_schedule);
    # run_tui sets it with the freeze.
    schedule_full_collections = False
    full_collections: FullCollections | None = None
    # run_tui sets it too: the process's GIL switch interval is GIL_SWITCH while the app runs (None: not changed).
    fine_gil_switch = False
    _switch_before: float | None = None

    # -- polling ---------------------------------------------------------------------------------
    @work(exclusive=True, group="poll", exit_on_error=False)
    async def poll_fleet(self) -> None:
        """One refresh in flight at a time: poll (I/O, on this loop), then merge, problems and the table's diff in
        a thread (asrtop.tui.refresh.prepare), then the UI applies it; only then is the next poll due. A refresh
        that takes longer than the interval delays the next one: missed ticks are skipped, never queued; wakes
        (an action's refresh_now) that come while one is in flight are coalesced into the next poll."""
        if self.fine_gil_switch and self._switch_before is None:
            self._switch_before = sys.getswitchinterval()
            sys.setswitchinterval(GIL_SWITCH)
        while True:
            if self.full_collections is not None:
                self.full_collections.refreshed()  # the last refresh is applied and painted: least is alive now
            started = time.monotonic()
            self.poll_seq += 1
            seq = self.poll_seq
            try:
                if isinstance(self.source, PollingFleetSource):
                    build = (await self.source.poll()).merge
                else:  # a source that merges as it polls: only what follows the merge leaves the loop
                    build = partial(_given, await self.source.snapshot())
                refreshed = await asyncio.to_thread(prepare, build, self.refresh_inputs())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a source bug or outage is shown in the header, polling goes on
                self.post_message(RefreshFailed(f"{type(e).__name__}: {e}"))
            else:
                self._applied.clear()
                self.post_message(FleetUpdated(refreshed.snapshot, seq, refreshed))
                try:  # the next refresh diffs against what this one shows
                    await asyncio.wait_for(self._applied.wait(), APPLY_WAIT)
                except asyncio.TimeoutError:
                    pass
                if self._retired:  # what the apply replaced is freed off the loop, before the quiet point
                    retired, self._retired = self._retired, []
                    await self._table_painted()
                    await asyncio.to_thread(release, retired)
            try:  # re-arm only after this poll completed; an action can wake it early
                await asyncio.wait_for(self._wake.wait(), max(0.05, self.refresh_seconds - (time.monotonic() - started)))
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _table_painted(self) -> None:
        """Until the fleet table's bands of the last refresh are painted (at most RELEASE_WAIT): the release
        frees a snapshot in one piece, holding the GIL, and a band painted meanwhile waited for it (a band's
        8 ms of CPU took 17 ms of wall at 1,000 nodes, bench_tui_end_to_end)."""
        screen = self.fleet_screen
        if not screen.is_mounted or not screen.live:
            return
        painted = self._bands_painted  # one event: after_bands keeps its `set` once while another screen is on top
        painted.clear()
        screen.table.after_bands(painted.set)
        try:
            await asyncio.wait_for(painted.wait(), RELEASE_WAIT)
        except asyncio.TimeoutError:  # another screen is on top: the table paints when it shows again
            pass

    def refresh_now(self) -> None:
        self._wake.set()

    def refresh_inputs(self) -> RefreshInputs:
        """What a refresh starting now needs from the UI (copied here, on the UI thread)."""
        view, base, shown, window = (self.fleet_screen.refresh_inputs() if self.fleet_screen.is_mounted
                                     else (None, {}, None, None))
        selected = frozenset(self.fleet_screen.selected)
        widths, rows, built = (self.fleet_screen.problem_inputs() if self.fleet_screen.is_mounted
                               else (None, 0, {}))
        return RefreshInputs(self.history, self.problem_tracker, self.history_lock, self.problems,
                             dict(self.draining), selected, view, base, shown, not self.no_color, window,
                             widths, rows, built)

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        try:
            refreshed = message.refreshed or prepare(partial(_given, message.snapshot), self.refresh_inputs())
            self._apply_refresh(refreshed, message.seq)
        finally:
            self._applied.set()

    def _apply_refresh(self, refreshed: Refreshed, seq: int) -> None:
        snap = refreshed.snapshot
        if self.snapshot is not None and self.snapshot is not snap:
            if self._retired:  # no poll worker took the last one (a snapshot given directly): freed here
                self._retired.clear()
            self._retired.append(self.snapshot)  # kept alive until the poll worker frees it in a thread
        with self.batch_update():
            self.snapshot = snap
            self.last_error = None
            self.refreshes += 1
            self.take_problems(refreshed.problems, refreshed.rules_error)
            self._track_drains(snap, seq)
            self._notify_changes(snap, refreshed.stale)
            self.follow_rollout()
            if self.refreshes == 1 and self.freeze_after_first_refresh and not gc.get_freeze_count():
                self.call_after_refresh(self._freeze_long_lived)
            for screen in self.screen_stack:
                # A screen still composing has no widgets yet; it pulls self.snapshot when it mounts.
                if screen is self.fleet_screen and screen.is_mounted:
                    screen.show_refresh(refreshed)
                elif isinstance(screen, ShowsFleet) and screen.is_mounted:
                    screen.show_fleet(snap)

    def collect_before_first_refresh(self) -> None:
        """The freeze's collection, run while the console waits for its first answers (AsrtopApp.on_mount, after
        the first paint): a full collection walks the whole heap, ~40 ms at 1,000 nodes after the first refresh,
        a block of the UI loop then; before it, nothing is on screen to wait for. The freeze after the first
        refresh keeps for good whatever cycles that refresh left, instead of walking the heap again: none at 1,000
        nodes (DEBUG_SAVEALL at the freeze, bench_tui_end_to_end's app); the 372 objects a collection there
        found before were the start's (Textual's restyling), which this one frees."""
        if self.freeze_after_first_refresh and self.refreshes == 0 and not gc.get_freeze_count():
            gc.collect()
            self._collected_early = True

    def _freeze_long_lived(self) -> None:
        # collected unless collect_before_first_refresh could run before the first answers came
        freeze_long_lived(collect=not self._collected_early)
        self.gc_frozen = True
        if self.schedule_full_collections and self.full_collections is None:
            self.full_collections = FullCollections()
            self.full_collections.take_over()

    def pop_screen(self):
        """Textual's, and a full collection soon: the closed screen's widgets refer to each other (parents,
        children, message queues), so they are freed only by one (asrtop.tui.gc_schedule)."""
        closing = super().pop_screen()
        if self.full_collections is not None:
            self.full_collections.soon()
        return closing

    def give_back_process_settings(self) -> None:
        """The interpreter's own full collections and GIL switch interval again (the app is leaving)."""
        if self.full_collections is not None:
            self.full_collections.give_back()
        if self._switch_before is not None:
            sys.setswitchinterval(self._switch_before)
            self._switch_before = None
