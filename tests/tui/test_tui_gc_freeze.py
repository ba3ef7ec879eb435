"""The console's own process freezes what is alive after its first refresh out of the collector's sight (issue
17: each full collection scanned the whole console again, ~110 ms at 1,000 nodes, on the UI thread as often
as not); apps in a shared process (tests) do not."""

from __future__ import annotations

import argparse
import gc

from fakes import FakeAudit, FakeController, FakeFleet
from screen import wait_for

from asrtop.tui.app import AsrtopApp
from asrtop.tui.run import run_tui


def test_run_tui_asks_its_app_to_freeze_after_the_first_refresh(tmp_path):
    cfg = tmp_path / "asrtop.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path}/audit.jsonl"\n[[nodes]]\nname = "node-1"\n'
                   f'address = "127.0.0.1:9"\n')
    ran = []

    class NotRun(AsrtopApp):
        def run(self, *a, **kw):
            ran.append(self.freeze_after_first_refresh)

    assert run_tui(argparse.Namespace(config=str(cfg), read_only=False, prometheus=None), NotRun) == 0
    assert ran == [True]
    assert AsrtopApp.freeze_after_first_refresh is False  # an app made elsewhere (tests) leaves the heap alone


async def test_the_heap_is_frozen_once_after_the_first_refresh_is_painted():
    fleet = FakeFleet(6)
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600)
    app.freeze_after_first_refresh = True
    assert gc.get_freeze_count() == 0
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.gc_frozen, what="the heap frozen")
            assert gc.get_freeze_count() > 0 and app.refreshes == 1
    finally:
        gc.unfreeze()
