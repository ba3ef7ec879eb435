"""The console's own process freezes what is alive after its first refresh out of the collector's sight (issue
17: each full collection scanned the whole console again, ~110 ms at 1,000 nodes, on the UI thread as often
as not), schedules its full collections, and hands the GIL between its refresh thread and UI loop every
millisecond; apps in a shared process (tests) do none of it unless a test asks."""

from __future__ import annotations

import argparse
import asyncio
import gc
from contextlib import contextmanager

from fakes import FakeAudit, FakeController, FakeFleet
from screen import wait_for

from asrtop.tui.app import AsrtopApp
from asrtop.tui.run import run_tui


def console(refresh: float = 0.05, fleet: FakeFleet | None = None, **process_settings: bool) -> AsrtopApp:
    """An app over `fleet` (a 6-node fake fleet), with the process settings run_tui would set that the test
    names."""
    fleet = fleet or FakeFleet(6)
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=refresh)
    for name, on in process_settings.items():
        setattr(app, name, on)
    return app


@contextmanager
def collector_restored():
    """The collector's thresholds as they were, and nothing left frozen, whatever the test did; yields them."""
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_run_tui_asks_its_app_to_freeze_after_the_first_refresh(tmp_path):
    cfg = tmp_path / "asrtop.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path}/audit.jsonl"\n[[nodes]]\nname = "node-1"\n'
                   f'address = "127.0.0.1:9"\n')
    ran = []

    class NotRun(AsrtopApp):
        def run(self, *a, **kw):
            ran.append((self.freeze_after_first_refresh, self.schedule_full_collections, self.fine_gil_switch))

    assert run_tui(argparse.Namespace(config=str(cfg), read_only=False, prometheus=None), NotRun) == 0
    assert ran == [(True, True, True)]
    # an app made elsewhere (tests) leaves the heap and the collector's thresholds alone
    assert AsrtopApp.freeze_after_first_refresh is False and AsrtopApp.schedule_full_collections is False
    assert AsrtopApp.fine_gil_switch is False


async def test_the_heap_is_frozen_once_after_the_first_refresh_is_painted():
    app = console(refresh=3600, freeze_after_first_refresh=True)
    assert gc.get_freeze_count() == 0
    with collector_restored():
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.gc_frozen, what="the heap frozen")
            assert gc.get_freeze_count() > 0 and app.refreshes == 1


class SlowFirstAnswers(FakeFleet):
    """A fleet whose first answers take a while, as 1,000 agents' do."""

    async def poll(self):
        if self.calls == 0:
            await asyncio.sleep(0.3)
        return await super().poll()


async def test_the_freeze_collects_while_the_first_answers_are_awaited_not_after_the_first_refresh():
    """The full collection before the freeze walks the whole heap (~40 ms at 1,000 nodes): it runs once the
    empty console is painted and the first poll is out, not as a block after the first refresh is painted."""
    app = console(refresh=3600, fleet=SlowFirstAnswers(6), freeze_after_first_refresh=True)
    full = []

    def seen(phase, info):
        if phase == "start" and info["generation"] == 2:
            full.append((app.refreshes, app.gc_frozen))

    with collector_restored() as before:
        gc.set_threshold(before[0], before[1], 1 << 30)  # no automatic full collection: only the console's
        gc.callbacks.append(seen)
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                await wait_for(pilot, lambda: app.gc_frozen, what="the heap frozen")
                await pilot.pause(0.1)
        finally:
            gc.callbacks.remove(seen)
    assert full and full[0] == (0, False), full  # the first full collection: before the first refresh
    assert all(refreshes == 0 for refreshes, _ in full), full  # none between the first refresh and the freeze


async def test_full_collections_run_every_few_refreshes_before_a_poll_and_the_thresholds_come_back(monkeypatch):
    """From the freeze on, generation 2 is collected only at the quiet point of the refresh cycle (just before a
    poll), every FULL_EVERY refreshes, generation 1 every GEN1_EVERY young collections; the interpreter's own
    thresholds are back when the app leaves."""
    import asrtop.tui.gc_schedule as gc_schedule

    monkeypatch.setattr(gc_schedule, "FULL_EVERY", 5)  # 300 in the console: 15 s of this test's refreshes
    FULL_EVERY = gc_schedule.FULL_EVERY
    app = console(freeze_after_first_refresh=True, schedule_full_collections=True)
    full: list[str] = []

    def seen(phase, info):
        if phase == "start" and info["generation"] == 2 and app.full_collections is not None:
            full.append("poll" if app.full_collections._since == 0 else "elsewhere")

    gc.callbacks.append(seen)
    try:
        with collector_restored() as before:
            async with app.run_test(size=(80, 24)) as pilot:
                await wait_for(pilot, lambda: app.full_collections is not None and app.full_collections.runs >= 2,
                               what="two scheduled full collections")
                assert gc.get_threshold()[2] > 10**6 and gc.get_threshold()[:2] == (before[0], gc_schedule.GEN1_EVERY)
                assert app.refreshes >= 2 * FULL_EVERY
                assert full and set(full) == {"poll"}, full
            assert gc.get_threshold() == before
    finally:
        gc.callbacks.remove(seen)


async def test_a_closed_screen_brings_the_next_full_collection_forward():
    """Refreshes leave no cycles, so full collections are minutes apart; a closed screen's widgets are cycles,
    so closing one (Esc on the node detail) has the next quiet point run one."""
    import asrtop.tui.gc_schedule as gc_schedule

    app = console(freeze_after_first_refresh=True, schedule_full_collections=True)
    with collector_restored():
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.full_collections is not None, what="the collections taken over")
            assert app.full_collections.every == gc_schedule.FULL_EVERY >= 100
            start = app.refreshes
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is not app.fleet_screen, what="the node detail")
            await wait_for(pilot, lambda: app.refreshes >= start + 3, what="three refreshes")
            assert app.full_collections.runs == 0
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.full_collections.runs == 1, what="a full collection")
            assert app.screen is app.fleet_screen and app.refreshes < start + gc_schedule.FULL_EVERY


async def test_the_gil_switch_interval_is_fine_while_the_console_runs_and_comes_back():
    """The console's process hands the GIL between its refresh thread and its UI loop every GIL_SWITCH seconds
    while the app runs; the interpreter's interval is back when it leaves."""
    import sys

    from asrtop.tui.app_refresh import GIL_SWITCH

    before = sys.getswitchinterval()
    assert before > GIL_SWITCH
    app = console(fine_gil_switch=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 2, what="two refreshes")
        assert sys.getswitchinterval() == GIL_SWITCH
    assert sys.getswitchinterval() == before
