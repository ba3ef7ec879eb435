"""Snapshot-style layout tests: the console's text at 80x24, 120x35 and 200x60 on a fixed 12-node fake fleet.

The expected screens live in tests/tui/golden/*.txt (regenerate after an intended layout change with
`ASRTOP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/tui/test_tui_layout.py` and review the diff).
Semantic checks come first, so a failure says what broke.
"""

import os
import re
from pathlib import Path

import pytest
from fakes import DIGEST_B, FakeAudit, FakeController, FakeFleet, fleet_of_12
from screen import screen_text, settled, wait_for

from asrtop.tui.app import AsrtopApp
from asrtop.tui.format import COLUMNS

GOLDEN = Path(__file__).parent / "golden"


pytestmark = pytest.mark.usefixtures("utc")  # clock times on screen in UTC, wherever the test runs


def make_app(**kw):
    fleet = FakeFleet(6, odd_model=(4,), dead_agents=(3,))
    # one poll only: the header's in-flight sparkline grows with every refresh
    return AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600, **kw), fleet


def check_golden(name: str, lines: list[str]) -> None:
    """Compare the screen with golden/<name>.txt: the table region (from its column header to the key bar)
    first, so that a change of the header above it (summary.py) does not hide what the table does, then
    the whole screen.

    Regenerate every golden file after an intended layout change with one command, and review the diff:
        ASRTOP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/tui/test_tui_layout.py
    """
    path = GOLDEN / f"{name}.txt"
    text = "\n".join(lines) + "\n"
    if os.environ.get("ASRTOP_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with ASRTOP_UPDATE_GOLDEN=1 once and review it"
    golden = path.read_text().splitlines()
    assert table_region(lines) == table_region(golden), f"fleet table differs from {path}"
    assert text == path.read_text(), f"screen differs from {path} (header or key bar?)"


def table_region(lines: list[str]) -> list[str]:
    """The table's header, rows and the line under it: not the key bar (app.py's bindings) below, and
    not the blank rows that a taller or shorter header above takes or gives back."""
    return [line for line in lines[table_top(lines):-1] if line.strip()]


def table_top(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if COLUMN_HEADER.match(line))


COLUMN_HEADER = re.compile(r"^ {4}node\S* +state")


def make_fleet_app(fleet=None, **kw):
    fleet = fleet or fleet_of_12()
    # one poll only: the header's in-flight sparkline grows with every refresh
    return AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600, **kw)


def column_header(lines: list[str]) -> str:
    return lines[table_top(lines)]


@pytest.mark.parametrize("size", [(80, 24), (120, 35), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_fleet_golden_layouts(size):
    width, height = size
    app = make_fleet_app()
    async with app.run_test(size=size) as pilot:
        lines = await settled(pilot, app)
        table = app.fleet_screen.table
        assert table.max_scroll_x == 0  # nothing to scroll sideways: no column is cut
    assert len(lines) == height and all(len(line) <= width for line in lines)
    header = column_header(lines).split()
    for label in ("node", "state", "infl", "req/s", "5xx", "resp", "gpu", "model"):  # kept at every width
        assert label in header, (label, header)
    assert DIGEST_B[:7] + "!" in "\n".join(lines)
    assert any(line.startswith(" !  node-9") for line in lines)  # dead agent marked even without colour
    note = lines[-2]
    if width >= 120:  # every column shows, and the line under the table has nothing to say
        assert {"gmem", "wt", "bk", "temp", "power", "cpu", "agent"} <= set(header)
        assert not note.strip()
    else:
        # (an HTTP-only fleet has no streams column at all, not even a hidden one)
        hidden = [c.label for c in COLUMNS if c.label.strip() and c.label not in header and c.key != "streams"]
        assert hidden and note.startswith(f" hidden at this width: {' '.join(hidden)}")
    check_golden(f"fleet_{width}x{height}", lines)


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
    assert DIGEST_B[:7] + "!" in text and " down\n" in text + "\n" and " bk " in text
    assert "1 differs!" in text
    assert "#98e024" not in svg.lower()  # the theme's green, used for "ready" when colour is on
