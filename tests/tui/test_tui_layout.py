"""Snapshot-style layout tests: the console's text at 80x24 and 160x45 on a fixed fake fleet.

The expected screens live in tests/tui/golden/*.txt (regenerate after an intended layout change with
ASRTOP_UPDATE_GOLDEN=1 and review the diff). Semantic checks come first, so a failure says what broke.
"""

import os
import time
from pathlib import Path

import pytest
from fakes import DIGEST_B, FakeAudit, FakeController, FakeFleet
from screen import screen_text, settled, wait_for

from asrtop.tui.app import AsrtopApp

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(**kw):
    fleet = FakeFleet(6, odd_model=(4,), dead_agents=(3,))
    # one poll only: the header's in-flight sparkline grows with every refresh
    return AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600, **kw), fleet


def check_golden(name: str, lines: list[str]) -> None:
    path = GOLDEN / f"{name}.txt"
    text = "\n".join(lines) + "\n"
    if os.environ.get("ASRTOP_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with ASRTOP_UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text()


async def test_fleet_80x24():
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        lines = await settled(pilot, app)
        text = "\n".join(lines)
        assert "lab 6 nodes: 6 ready" in text
        assert "4 of 6 nodes on model a1b2c3d, 1 differs!, 1 unknown" in text
        header = next(line for line in lines if "node" in line and "state" in line)
        for label in ("infl", "req/s", "gpu", "gmem", "model"):  # the essentials fit in 80 columns
            assert label in header
        assert DIGEST_B[:7] + "!" in text
        assert any(line.startswith(" !  node-3") for line in lines)  # dead agent marked even without colour
        assert all(len(line) <= 80 for line in lines)
        assert "? Keys  d Drain" in lines[-1], lines
        check_golden("fleet_80x24", lines)


async def test_fleet_160x45_shows_every_column():
    app, _ = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        lines = await settled(pilot, app)
        header = next(line for line in lines if "node" in line and "state" in line)
        for label in ("wt", "bk", "5xx", "resp", "temp", "power", "cpu", "agent"):
            assert label in header
        node3 = next(line for line in lines if "node-3" in line)
        assert node3.rstrip().endswith("stale")
        check_golden("fleet_160x45", lines)


async def test_read_only_layout_hides_actions():
    app, _ = make_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        text = "\n".join(await settled(pilot, app))
        assert "READ-ONLY" in text
        assert "Drain" not in text and "Weight" not in text


async def test_detail_and_model_views_at_80x24():
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "GPU0 NVIDIA A10" in screen_text(app), what="detail")
        text = screen_text(app)
        assert text.startswith(" node-1  ready")
        assert "History" in text and "in-flight" in text
        assert all(len(line) <= 80 for line in text.splitlines())
        await pilot.press("escape", "M")
        await wait_for(pilot, lambda: "DIFFERS" in screen_text(app), what="model view")
        assert "node-4" in screen_text(app)


async def test_no_color_keeps_every_marker(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app, _ = make_app()
    assert app.no_color
    async with app.run_test(size=(160, 45)) as pilot:
        lines = await settled(pilot, app)
        svg = app.export_screenshot()
    text = "\n".join(lines)
    # meaning survives without colour: minority mark, dead agent, backup, model badge
    assert DIGEST_B[:7] + "!" in text and "stale" in text and " bk " in text
    assert "1 differs!" in text
    assert "#98e024" not in svg.lower()  # the theme's green, used for "ready" when colour is on
