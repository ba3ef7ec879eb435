"""End to end: from polled answers of N nodes on two balancers to the painted frame, in the real console.

A PollingFleetSource answers each poll with synthetic agent readings and two HAProxy balancers' ServerState
lists (what asrtop.sources reads: LivePoll, nodes with addresses, so the merge joins by endpoint), built in a
thread as real I/O would be. The real AsrtopApp (run_test, 160x45, refresh 1 s) polls it: merge, history,
problem rules and the table's diff in its refresh thread, the UI applies the diff and paints.

Per refresh: CPU of each stage (merge, problems = history + rules + the problems panel's lines, summary, diff,
release = freeing the snapshot the refresh replaced: in the refresh threads; apply, paint: on the UI loop; the paint
is every screen update until the table's last band is painted, each update turned into what a terminal is sent, as
the console does on one: a headless app skips that), the wall from answers ready to frame painted, and the longest
the UI loop was blocked (a probe task on the loop sleeps 1 ms at a time; how late it wakes is how long something
else held the loop; on a loaded host it also counts the time the OS ran other processes, so the longest UI task in
CPU is printed too). Baselines in the same run and app: the same refreshes with the whole pipeline on the loop (as
the console ran before), a repaint of an unchanged table (idle frame), a repaint with every visible cell rendered
again (what each refresh's paint cost before), every visible row put together again from cached cells by
VisibleCellCache._render_line_in_row and by Textual's own, every visible line joined again from its cached row by
VisibleCellCache._render_line and by Textual's own, a screen of rows put together again and painted in the table's
bands through the fleet screen's CroppedCompositor and through Textual's Compositor, the problems list's lines laid
out by OneLineOptionList and by OptionList, and its visible lines rendered by each (each pair alternated).

Budgets (issue 17), 1,000 nodes: the UI loop never blocked > 16 ms by a refresh; refresh + paint <= 50 ms
CPU per second at a 1 s refresh.

    .venv/bin/python tests/benchmarks/bench_tui_end_to_end.py [--nodes 1000 5000] [--rounds 16]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))

from fakes import DIGEST_A, DIGEST_B, server, status  # noqa: E402
from host_speed import host_speed, host_speed_line  # noqa: E402

import asrtop.tui.app as appmod  # noqa: E402
import asrtop.tui.app_refresh as refreshmod  # noqa: E402
import asrtop.tui.textual_internals as internals  # noqa: E402
from asrtop.balancers.base import AdminState  # noqa: E402
from asrtop.config import NodeConfig  # noqa: E402
from asrtop.fleet import AgentReading, BalancerReading  # noqa: E402
from asrtop.sources.live import LivePoll  # noqa: E402
from asrtop.tui.app import AsrtopApp, FleetUpdated  # noqa: E402
from textual._compositor import Compositor, CompositorUpdate  # noqa: E402
from textual.app import App  # noqa: E402
from textual.screen import Screen  # noqa: E402
from textual.widgets import DataTable, OptionList  # noqa: E402

from asrtop.tui.textual_internals import VisibleCellCache  # noqa: E402

rows_ours_method = VisibleCellCache._render_line_in_row
lines_ours_method = VisibleCellCache._render_line

REFRESH = 1.0
PROBE_STEP = 0.002
PAINT = {"cpu": 0.0, "longest": 0.0}  # CPU of the screens' updates (layout + compositor: the paint), longest one
_screen_update = Screen._on_timer_update


# What ran when, for the longest blocks' breakdown: (start, end) wall (perf_counter), what, CPU seconds of it.
EVENTS: list[tuple[float, float, str, float]] = []


def _timed_screen_update(self: Screen) -> None:
    t, c = time.perf_counter(), time.thread_time()
    _screen_update(self)
    spent = time.thread_time() - c
    PAINT["cpu"] += spent
    PAINT["longest"] = max(PAINT["longest"], spent)
    EVENTS.append((t, time.perf_counter(), "screen update (layout + compositor)", spent))


Screen._on_timer_update = _timed_screen_update  # before any screen exists: its update timer takes this one
_display = App._display


def _display_as_on_a_terminal(self: App, screen: Screen, renderable) -> None:
    """App._display, with the update turned into what a terminal is sent (render_segments), as the console's own
    driver does: a headless app (run_test) skips it, and it is part of every screen update's cost on a terminal."""
    if isinstance(renderable, CompositorUpdate) and not self._batch_count:
        renderable.render_segments(self.console)
    _display(self, screen, renderable)


App._display = _display_as_on_a_terminal
_prepare = refreshmod.prepare


def _timed_prepare(*args):
    t, c = time.perf_counter(), time.thread_time()
    try:
        return _prepare(*args)
    finally:
        EVENTS.append((t, time.perf_counter(), "refresh thread: prepare (holds the GIL in turns)",
                       time.thread_time() - c))


refreshmod.prepare = _timed_prepare  # poll_fleet looks it up when it calls it
_release = refreshmod.release
APPLIED: list = [None]  # the record of the last refresh applied: the release that follows it is counted there


def _timed_release(retired: list) -> float:
    t = time.perf_counter()
    cpu = _release(retired)
    EVENTS.append((t, time.perf_counter(), "refresh thread: release of the last snapshot", cpu))
    if APPLIED[0] is not None:
        APPLIED[0].stages["release"] = cpu
    return cpu


refreshmod.release = _timed_release  # the poll worker looks it up when it calls it
_gc_started: dict[int, tuple[float, float]] = {}


def _gc_event(phase: str, info: dict) -> None:
    key = threading.get_ident()
    if phase == "start":
        _gc_started[key] = (time.perf_counter(), time.thread_time())
    elif key in _gc_started:
        t, c = _gc_started.pop(key)
        where = "UI" if threading.current_thread() is threading.main_thread() else "thread"
        EVENTS.append((t, time.perf_counter(), f"gc gen{info['generation']} on {where}", time.thread_time() - c))


gc.callbacks.append(_gc_event)
_handle_run = asyncio.events.Handle._run


def _callback_name(cb) -> str:
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame_self = getattr(coro, "cr_frame", None) and coro.cr_frame.f_locals.get("self")
        return f"task {getattr(coro, '__qualname__', coro)}" + (f" of {type(frame_self).__name__}" if frame_self else "")
    return getattr(cb, "__qualname__", repr(cb))


def _timed_handle_run(self) -> None:  # every callback the UI loop runs; those over 1 ms are kept
    t, c = time.perf_counter(), time.thread_time()
    _handle_run(self)
    end = time.perf_counter()
    if end - t > 0.001:
        EVENTS.append((t, end, "loop callback: " + _callback_name(self._callback), time.thread_time() - c))


asyncio.events.Handle._run = _timed_handle_run


@functools.lru_cache
def configured(n: int) -> tuple[NodeConfig, ...]:
    """The cluster's nodes: loaded once, the same objects in every poll (as LiveFleetSource's config holds them:
    their match keys are worked out once per config load, not per refresh)."""
    return tuple(NodeConfig(f"node-{i}", server=f"srv{i}", address=f"10.{i // 250}.{i % 250}.1:10095",
                            agent=f"http://10.{i // 250}.{i % 250}.1:10860") for i in range(1, n + 1))


def answers(n: int, tick: int, now: float) -> LivePoll:
    """One poll's answers: every agent's status and both balancers' servers, as the sources hand them over."""
    nodes = configured(n)
    agents = {}
    for i, node in enumerate(nodes, 1):
        if i % 97 == 13:
            agents[node.name] = AgentReading(node.agent, None, None, "connection refused")
        else:
            st = status(node.name, i, DIGEST_B if i % 50 == 7 else DIGEST_A, 2, tick)
            agents[node.name] = AgentReading(node.agent, st, now, None, 0.002)
    servers = []
    for i, node in enumerate(nodes, 1):
        host, port = node.address.rsplit(":", 1)
        s = server(f"s-{i}", i, AdminState.READY, 3, i % 20 == 5, tick)  # named otherwise: joined by address
        servers.append(replace(s, address=host, port=int(port)))
    lbs = tuple(BalancerReading(name, "haproxy", tuple(servers), None, now) for name in ("haproxy-a", "haproxy-b"))
    return LivePoll(nodes, agents, lbs, now, REFRESH, (), None, {}, None, (), ())


class SyntheticSource:
    """asrtop.sources.PollingFleetSource over synthetic answers (built in a thread: the poll's I/O)."""

    def __init__(self, n: int):
        self.n = n
        self.tick = 0
        self.ready_at: dict[int, float] = {}  # poll number -> when its answers were ready
        self.build_s: list[float] = []

    async def poll(self) -> LivePoll:
        self.tick += 1
        t = time.perf_counter()
        polled = await asyncio.to_thread(answers, self.n, self.tick, time.time())
        self.ready_at[self.tick] = time.perf_counter()
        self.build_s.append(time.perf_counter() - t)
        return polled

    async def snapshot(self):
        return (await self.poll()).merge()

    async def model_files(self, agent_url: str):
        return "none"

    async def close(self) -> None:
        pass


@dataclass
class Refresh:
    seq: int
    ready: float  # answers ready (perf_counter)
    stages: dict[str, float] = field(default_factory=dict)  # CPU seconds
    painted: float = 0.0
    longest_block: float = 0.0  # wall, from the loop probe
    block_at: float = 0.0  # when the probe woke after it
    longest_block_cpu: float = 0.0  # CPU that held the loop in one block: its loop callbacks + other threads' gc
    longest_task: float = 0.0  # CPU of the longest UI task of this refresh (apply, or one screen update)


class Measured(AsrtopApp):
    CSS_PATH = str(Path(appmod.__file__).with_name("asrtop.tcss"))  # Textual resolves it next to the subclass

    def __init__(self, source: SyntheticSource):
        super().__init__(source, None, cluster="bench", refresh=REFRESH)
        self.freeze_after_first_refresh = True  # as run_tui sets them
        self.schedule_full_collections = True
        self.fine_gil_switch = True
        self.records: list[Refresh] = []
        self.blocks: list[tuple[float, float]] = []  # (woke at, late by) from the loop probe
        self.ready_override: float | None = None  # the on-loop baseline sets when its answers were ready

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        ready = self.ready_override or self.source.ready_at.get(message.seq, time.perf_counter())
        rec = Refresh(message.seq, ready, dict(message.refreshed.cpu) if message.refreshed else {})
        APPLIED[0] = rec
        message.prevent_default()  # Textual would run AsrtopApp's handler after this one: it runs here, timed
        t0, c0 = time.perf_counter(), time.thread_time()
        super().on_fleet_updated(message)
        rec.stages["apply"] = time.thread_time() - c0
        EVENTS.append((t0, time.perf_counter(), "apply (on_fleet_updated)", rec.stages["apply"]))
        painted_before = PAINT["cpu"]
        PAINT["longest"] = 0.0

        def painted() -> None:  # after the screen's update that painted the table's last band of this refresh
            if self.fleet_screen.table.repaint_pending:
                self.call_after_refresh(painted)
                return
            self.call_after_refresh(done)  # and the update after it: what waited for the bands (FleetTable.after_bands)

        def done() -> None:
            rec.stages["paint"] = PAINT["cpu"] - painted_before
            rec.longest_task = max(rec.stages["apply"], PAINT["longest"])
            rec.painted = time.perf_counter()
            self.records.append(rec)

        self.call_after_refresh(painted)

    async def probe(self) -> None:
        """Sleeps PROBE_STEP at a time on the UI loop; waking later than that means the loop was held."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(PROBE_STEP)
            woke = time.perf_counter()
            self.blocks.append((woke, woke - t - PROBE_STEP))


def longest_blocks(app: Measured, records: list[Refresh]) -> None:
    for rec in records:
        blocks = [(late, woke) for woke, late in app.blocks if rec.ready <= woke <= rec.painted + 0.05]
        rec.longest_block, rec.block_at = max(blocks, default=(0.0, 0.0))
        held = [(t, e, cpu) for t, e, what, cpu in EVENTS if rec.ready - 0.2 <= t <= rec.painted + 0.05
                and (what.startswith("loop callback") or what.startswith("gc") and what.endswith("thread"))]
        rec.longest_block_cpu = max((sum(cpu for t, e, cpu in held if t < woke and e > woke - late)
                                     for late, woke in blocks if late > 0.002), default=0.0)


def block_breakdown(rec: Refresh, events: list) -> list[str]:
    """What overlapped the probe's late wake: wall inside the block and CPU of each event (a callback whose wall
    is well over its CPU waited for the GIL or for the OS)."""
    end = rec.block_at
    start = end - rec.longest_block
    lines = [f"  refresh {rec.seq}: block {rec.longest_block * 1000:.1f} ms, "
             f"{(start - rec.ready) * 1000:.0f} ms after the answers were ready"]
    covered = 0.0
    for t, e, what, cpu in sorted(events):
        overlap = min(e, end) - max(t, start)
        if overlap > 0.0002:
            lines.append(f"    {what}: {overlap * 1000:.1f} ms of the block (whole: {(e - t) * 1000:.1f} ms wall, "
                         f"{cpu * 1000:.1f} ms CPU)")
            if what.startswith("loop callback"):
                covered += overlap
    lines.append(f"    not inside a loop callback over 1 ms: {(rec.longest_block - covered) * 1000:.1f} ms")
    return lines


def ui_cpu(rec: Refresh) -> float:
    return rec.stages.get("apply", 0.0) + rec.stages.get("paint", 0.0)


def total_cpu(rec: Refresh) -> float:
    return sum(rec.stages.values())


async def run(n: int, rounds: int) -> dict:
    source = SyntheticSource(n)
    app = Measured(source)
    async with app.run_test(size=(160, 45)) as pilot:
        probe = asyncio.get_running_loop().create_task(app.probe())
        await _until(lambda: len(app.records) >= rounds + 1, 60 + rounds * 5 * max(1, n // 1000))
        threaded = app.records[1:rounds + 1]  # the first fills the table (adds every row): not a refresh
        first = app.records[0]
        app.workers.cancel_group(app, "poll")
        await pilot.pause(0.2)
        scheduled = []  # the scheduled full collection, as gc_schedule runs it (one every FULL_EVERY refreshes)
        for _ in range(3):
            t, c = time.perf_counter(), time.thread_time()
            gc.collect()
            scheduled.append((time.perf_counter() - t, time.thread_time() - c))
            await pilot.pause(0.05)

        # Baseline: the same refreshes with the whole pipeline on the loop (merge, problems, diff, apply).
        count = len(app.records)
        for k in range(rounds):
            polled = await source.poll()
            await asyncio.sleep(0.05)  # not pilot.pause: no screen update but the console's own (see _until)
            app.ready_override = time.perf_counter()
            c0 = time.thread_time()
            snap = polled.merge()
            merged = time.thread_time() - c0
            app.on_fleet_updated(FleetUpdated(snap, 10_000 + k))
            await _until(lambda: len(app.records) > count + k, 30)
            app.records[-1].stages["merge (on loop)"] = merged
            await asyncio.sleep(0.3)
        on_loop = app.records[count:count + rounds]
        app.ready_override = None

        table = app.fleet_screen.table
        idle, full = [], []
        for _ in range(5):
            c = time.thread_time()
            table.refresh()
            await pilot.pause(0)
            idle.append(time.thread_time() - c)
            table.__dict__["_asrtop_cells_cacheable"] = False  # Textual's own cell path, as before issue 17:
            internals.invalidate_render_caches(table)  # every visible cell renders again
            c = time.thread_time()
            await pilot.pause(0)
            full.append(time.thread_time() - c)
            table.__dict__["_asrtop_cells_cacheable"] = True
        # every visible row put together again from cached cells (what each refresh's paint does), then every
        # visible line joined again from its cached row and painted: ours, then Textual's (alternated)
        rows_ours, rows_textual = await alternated_paints(pilot, table, "_render_line_in_row", rows_ours_method,
                                                          DataTable._render_line_in_row,
                                                          ("_row_render_cache", "_line_cache"))
        lines_ours, lines_textual = await alternated_paints(pilot, table, "_render_line", lines_ours_method,
                                                            DataTable._render_line, ("_line_cache",))
        bands_ours, bands_textual = await alternated_bands(table, app.fleet_screen)
        listing = app.fleet_screen.problems_panel.list  # the problems list laid out again, as when it opens:
        measure_ours, measure_textual = [], []  # by OneLineOptionList, then by OptionList (nothing cached)
        for _ in range(20 if listing.option_count else 0):
            for into, update_lines in ((measure_ours, type(listing)._update_lines), (measure_textual,
                                                                                       OptionList._update_lines)):
                for index in range(listing.option_count):
                    listing.get_option_at_index(index)._visual = None
                listing._line_cache.clear()
                c = time.thread_time()
                update_lines(listing)
                into.append(time.thread_time() - c)
        list_paints = await alternated_list_paints(pilot, listing) if listing.option_count else ([], [], 0)
        probe.cancel()
        longest_blocks(app, app.records)
    worst = sorted(threaded, key=lambda x: x.longest_block, reverse=True)[:3]
    return {"n": n, "threaded": threaded, "on_loop": on_loop, "first": first, "idle": idle, "full": full,
            "scheduled": scheduled,
            "rows": (rows_ours, rows_textual), "lines": (lines_ours, lines_textual),
            "bands": (bands_ours, bands_textual),
            "measure": (measure_ours, measure_textual, listing.option_count),
            "list_paints": list_paints,
            "answers_s": statistics.median(source.build_s),
            "breakdown": [line for rec in worst for line in block_breakdown(rec, list(EVENTS))]}


async def alternated_list_paints(pilot, listing) -> tuple[list, list, int]:
    """20 times: the problems list's visible lines rendered again and painted (its render cache emptied, as when
    the panel opens or its lines change) by OneLineOptionList's _get_option_render, then by OptionList's own; and
    how many lines it shows."""
    kind = type(listing)
    ours = kind.__dict__["_get_option_render"]
    timed: tuple[list, list] = ([], [])
    for _ in range(20):
        for into, method in zip(timed, (ours, OptionList._get_option_render)):
            kind._get_option_render = method
            for index in range(listing.option_count):
                listing.get_option_at_index(index)._visual = None
            listing._option_render_cache.clear()
            listing.refresh()
            c = time.thread_time()
            await pilot.pause(0)
            into.append(time.thread_time() - c)
    kind._get_option_render = ours
    return (*timed, listing.size.height)


async def alternated_paints(pilot, table, name: str, ours, theirs, caches: tuple[str, ...]) -> tuple[list, list]:
    """20 times: VisibleCellCache's method `name` set to `ours`, then to `theirs`, the table's `caches` emptied and a
    paint timed (CPU seconds) each time; `ours` set again after."""
    timed: tuple[list, list] = ([], [])
    for _ in range(20):
        for into, method in zip(timed, (ours, theirs)):
            setattr(VisibleCellCache, name, method)
            for cache in caches:
                getattr(table, cache).clear()
            table.refresh()
            c = time.thread_time()
            await pilot.pause(0)
            into.append(time.thread_time() - c)
    setattr(VisibleCellCache, name, ours)
    return timed


async def alternated_bands(table, screen) -> tuple[list, list]:
    """20 times: the screen's compositor a CroppedCompositor, then Textual's Compositor; each time every visible row
    put together again from its cached cells (as after a refresh) and repainted in the table's bands
    (repaint_in_bands), timed (CPU seconds of the UI thread) from the first band asked to a frame after the last."""
    timed: tuple[list, list] = ([], [])
    compositor = screen._compositor
    for _ in range(20):
        for into, kind in zip(timed, (internals.CroppedCompositor, Compositor)):
            compositor.__class__ = kind
            for cache in ("_row_render_cache", "_line_cache"):
                getattr(table, cache).clear()
            c = time.thread_time()
            table.repaint_in_bands()
            await _until(lambda: not table.repaint_pending, 10)
            await asyncio.sleep(0.04)  # the last band's screen update
            into.append(time.thread_time() - c)
    compositor.__class__ = internals.CroppedCompositor
    return timed


async def _until(cond, timeout: float) -> None:
    """Until `cond()`, looking every 20 ms. Not with pilot.pause: each pause ends in a screen update of its own
    (Pilot.pause calls the screen's _on_timer_update), which the console never gets outside a test. Waiting by
    pauses, every 20 ms a table band was painted off Textual's frame timer, often just before the timer's own
    update, and the two ran as one block of the loop."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        await asyncio.sleep(0.02)


def report(r: dict) -> None:
    med = statistics.median
    ms = 1000
    threaded, on_loop = r["threaded"], r["on_loop"]
    print(f"\n== {r['n']} nodes x 2 balancers, {len(threaded)} refreshes at {REFRESH:.0f} s, 160x45 "
          f"(synthetic answers built in {r['answers_s'] * ms:.0f} ms, off the loop, not counted)")
    print(f"first refresh (adds every row): UI CPU {ui_cpu(r['first']) * ms:.0f} ms, "
          f"longest block {r['first'].longest_block * ms:.0f} ms")
    stages = ("merge", "problems", "summary", "diff", "release", "apply", "paint")
    print("stage CPU, median ms:  " + "  ".join(f"{s} {med(x.stages.get(s, 0) for x in threaded) * ms:.1f}"
                                                 for s in stages))
    ui = [ui_cpu(x) for x in threaded]
    total = [total_cpu(x) for x in threaded]
    wall = [x.painted - x.ready for x in threaded]
    block = [x.longest_block for x in threaded]
    old_ui = [ui_cpu(x) + x.stages.get("merge (on loop)", 0) for x in on_loop]
    old_block = [x.longest_block for x in on_loop]
    print(f"UI loop CPU per refresh (apply + paint): median {med(ui) * ms:.1f}  max {max(ui) * ms:.1f} ms")
    print(f"all CPU per refresh (thread + UI):       median {med(total) * ms:.1f}  max {max(total) * ms:.1f} ms"
          f"  = {med(total) / REFRESH * ms:.0f} ms CPU per second")
    print(f"wall, answers ready -> frame painted:    median {med(wall) * ms:.1f}  max {max(wall) * ms:.1f} ms")
    task = [x.longest_task for x in threaded]
    held = [x.longest_block_cpu for x in threaded]
    print(f"longest UI loop block in CPU:            median {med(held) * ms:.1f}  max {max(held) * ms:.1f} ms"
          "  (the loop's callbacks in it + a gc in the refresh thread, which holds the GIL; not other processes)")
    print(f"longest UI loop block during a refresh:  median {med(block) * ms:.1f}  max {max(block) * ms:.1f} ms wall"
          f"  (longest UI task in CPU: median {med(task) * ms:.1f}  max {max(task) * ms:.1f} ms)")
    print(f"baseline, pipeline on the loop: UI CPU median {med(old_ui) * ms:.1f} ms, longest block median "
          f"{med(old_block) * ms:.1f} max {max(old_block) * ms:.1f} ms -> now "
          f"{med(ui) / med(old_ui):.2f}x the UI CPU, {max(block) / max(old_block):.2f}x the longest block")
    print(f"paint: after a refresh {med(x.stages['paint'] for x in threaded) * ms:.1f} ms; idle frame "
          f"{med(r['idle']) * ms:.1f} ms; every visible cell rendered again (the paint before) "
          f"{med(r['full']) * ms:.1f} ms -> {med(x.stages['paint'] for x in threaded) / med(r['full']):.2f}x of it")
    ours, textual_rows = r["rows"]
    print(f"rows put together again from cached cells: {med(ours) * ms:.1f} ms; by Textual's own "
          f"_render_line_in_row {med(textual_rows) * ms:.1f} ms -> {med(ours) / med(textual_rows):.2f}x of it")
    ours, textual_lines = r["lines"]
    print(f"a screen of lines joined again from their rows (cached) and painted: {med(ours) * ms:.1f} ms; with "
          f"Textual's own _render_line {med(textual_lines) * ms:.1f} ms -> {med(ours) / med(textual_lines):.2f}x of it")
    ours, textual_bands = r["bands"]
    print(f"a screen of rows put together again and painted in bands: {med(ours) * ms:.1f} ms; with Textual's own "
          f"Compositor {med(textual_bands) * ms:.1f} ms -> {med(ours) / med(textual_bands):.2f}x of it")
    ours, textual_measure, options = r["measure"]
    if options:
        print(f"the problems list's {options} lines laid out (as when the panel opens): {med(ours) * ms:.2f} ms; by "
              f"OptionList's own _update_lines {med(textual_measure) * ms:.2f} ms -> "
              f"{med(ours) / med(textual_measure):.2f}x of it")
    ours, textual_paints, shown = r["list_paints"]
    if ours:
        print(f"the problems list's {shown} visible lines rendered again and painted: {med(ours) * ms:.2f} ms; by "
              f"OptionList's own _get_option_render {med(textual_paints) * ms:.2f} ms -> "
              f"{med(ours) / med(textual_paints):.2f}x of it")
    start, end = threaded[0].ready, threaded[-1].painted
    full = [(e - t, cpu) for t, e, what, cpu in EVENTS if what.startswith("gc gen2") and start <= t <= end]
    full_per_s = sum(cpu for _, cpu in full) / max(1e-9, end - start)
    if full:
        print(f"full collections in these refreshes: {len(full)} in {end - start:.0f} s, CPU median "
              f"{med(c for _, c in full) * ms:.1f} max {max(c for _, c in full) * ms:.1f} ms, wall max "
              f"{max(w for w, _ in full) * ms:.1f} ms (scheduled before a poll: asrtop.tui.gc_schedule) "
              f"= {full_per_s * ms:.1f} ms CPU per second")
    print("the longest blocks, what overlapped them:")
    print("\n".join(r["breakdown"]))
    from asrtop.tui.gc_schedule import FULL_EVERY

    wall_full = med(w for w, _ in r["scheduled"])
    cpu_full = med(c for _, c in r["scheduled"])
    spread_per_s = cpu_full / (FULL_EVERY * REFRESH)
    if not full:  # none fell in the rounds: what one costs, run on the loop after them, spread over its interval
        full_per_s = spread_per_s
    print(f"the scheduled full collection, run 3 times on the loop after the refreshes: median {wall_full * ms:.1f} ms"
          f" wall, {cpu_full * ms:.1f} ms CPU; one every {FULL_EVERY} refreshes (and soon after a screen closes)"
          f" = {spread_per_s * ms:.2f} ms CPU per second")
    if r["n"] == 1000:
        print(f"(longest UI task in CPU <= 16 ms: {'PASS' if max(task) <= 0.016 else 'OVER'})")
        gc_wall = max(w for w, _ in full) if full else wall_full
        gc_words = (f"the scheduled full collection {gc_wall * ms:.1f} ms every {FULL_EVERY} refreshes: "
                    f"{'PASS' if gc_wall <= 0.016 else 'OVER'}")  # it blocks the loop too
        print(f"budget: longest block <= 16 ms: during refreshes {'PASS' if max(block) <= 0.016 else 'OVER'} "
              f"(max {max(block) * ms:.1f} ms); {gc_words}")
        ok_cpu = med(total) / REFRESH + full_per_s <= 0.050
        print(f"budget: refresh + paint <= 50 ms CPU/s: {'PASS' if ok_cpu else 'OVER'} "
              f"({(med(total) / REFRESH + full_per_s) * ms:.0f} ms/s with the full collections"
              f"{'' if full else ' (spread over their interval)'}; UI loop alone: {med(ui) / REFRESH * ms:.0f} ms/s)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--rounds", type=int, default=16)
    a = p.parse_args()
    print(f"{threading.active_count()} thread(s); switch interval {sys.getswitchinterval() * 1000:.0f} ms, "
          f"{refreshmod.GIL_SWITCH * 1000:.0f} ms while the console runs (as run_tui sets it)")
    for n in a.nodes:
        before = host_speed()
        r = asyncio.run(run(n, a.rounds))
        report(r)
        print(host_speed_line(before, host_speed()))
        # The console freezes the heap once per process, then schedules its full collections (run_tui, one app
        # a process); the next size's app must do both again, or it runs on the interpreter's own collections.
        gc.unfreeze()


if __name__ == "__main__":
    main()
