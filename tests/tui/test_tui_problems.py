"""The console's view of problems: the panel under the table (hidden without problems, most severe and newest
first, Enter opens the node), the count in the header, the critical row's mark (NO_COLOR too), the node
detail's list, a cleared problem leaving, and golden layouts with problems (alone and beside a rollout).

The rules are the test's: one Rule whose find() returns what the test put in a dict, raised and cleared at
once (raise_after / clear_after 0), so a problem shows on the next refresh and goes on the one after."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import T0, FakeAudit, FakeController, FakeFleet, fleet_of_12
from screen import run_from_palette, screen_lines, screen_text, settled, wait_for
from test_tui_layout import check_golden, table_region
from test_tui_rollout import RUNNING, FakeStarter, state_of

from asrtop.config import ProblemsConfig
from asrtop.problems.engine import ProblemTracker, Rule
from asrtop.problems.model import Finding, Severity
from asrtop.tui.app import AsrtopApp
from asrtop.tui.format import CRITICAL_MARK
from asrtop.tui.screens.detail import NodeDetailScreen
from asrtop.tui.widgets.problems_panel import ProblemsPanel

pytestmark = pytest.mark.usefixtures("utc")  # clock times on screen in UTC, wherever the test runs

CRIT, WARN = Severity.CRITICAL, Severity.WARNING
MODEL = Finding("model-differs", "node-4", CRIT, "runs model ffee998, the fleet a1b2c3d", "asrtop drain node-4")
LEAK = Finding("gpu-memory-leak", "node-2", WARN, "leaks GPU memory: +48 MB/s for 2 min while its load is flat; "
               "full in 11 min", "asrtop drain node-2")
HOT = Finding("gpu-hot", "node-5", WARN, "GPU0 at 88°C for 3 min", None)
HOT_11 = Finding("gpu-hot", "node-11", WARN, "GPU0 at 86°C for 1 min", None)
BACKUPS = Finding("backups-only", None, WARN, "only backups serve: 0 of 3 primaries ready", None)


def rules_of(found: dict) -> tuple[Rule, ...]:
    """One rule reporting whatever `found` holds now (key -> Finding); `found["raise"]` makes it raise."""

    def find(ctx):
        if "raise" in found:
            raise RuntimeError(found["raise"])
        return list(found.values())

    return (Rule("test", "test findings", find),)


def tracker_of(found: dict, earlier: tuple[tuple[float, tuple[Finding, ...]], ...] = (), fleet=None):
    """A tracker over rules_of(found); `earlier`: (seconds before T0, findings) evaluated first, so that the
    problems on screen have held for a while (their age) although the fake fleet's clock stands still."""
    tracker = ProblemTracker(rules_of(found), ProblemsConfig())
    snap = (fleet or FakeFleet()).build()
    for ago, findings in earlier:
        found.clear()
        found.update((f.key, f) for f in findings)
        tracker.update(replace(snap, taken_at=T0 - ago), None)
    return tracker


def make_app(found: dict, fleet=None, earlier=(), **kw):
    fleet = fleet or FakeFleet(6, odd_model=(4,), backups=())
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600,
                    problem_tracker=tracker_of(found, earlier, fleet), **kw)
    return app, fleet


def put(found: dict, *findings: Finding) -> None:
    found.clear()
    found.update((f.key, f) for f in findings)


async def refreshed(pilot, app) -> None:
    """One more refresh, applied."""
    seen = app.refreshes
    app.refresh_now()
    await wait_for(pilot, lambda: app.refreshes > seen, what="a refresh")
    await pilot.pause(0.05)


def panel(app) -> ProblemsPanel:
    return app.fleet_screen.query_one(ProblemsPanel)


def panel_lines(app) -> list[str]:
    """The screen's lines from the panel's first to its last."""
    lines = screen_lines(app)
    region = panel(app).region
    return lines[region.y:region.y + region.height]


def row_of(lines: list[str], node: str) -> str:
    return next(line for line in lines if line[4:].split(" ", 1)[0] == node)


async def test_no_problems_no_panel_no_count():
    found: dict = {}
    app, _ = make_app(found)
    async with app.run_test(size=(80, 24)) as pilot:
        text = "\n".join(await settled(pilot, app))
        assert panel(app).has_class("hidden") and app.problems == ()
        assert "problem" not in text and CRITICAL_MARK not in text


async def test_p_without_problems_says_so_and_help_and_palette_name_the_list():
    found: dict = {}
    app, _ = make_app(found)
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        await pilot.press("p")
        assert app.focused is app.fleet_screen.table
        assert any(n.message == "no problems" for n in app._notifications)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: "asrtop keys" in screen_text(app), what="help")
        text = screen_text(app)
        assert "p              to the problems list" in text
        assert f"{CRITICAL_MARK}              in the first column: the node has a critical problem" in text
        await pilot.press("escape")
        put(found, LEAK)
        await refreshed(pilot, app)
        await run_from_palette(pilot, "Problems list")
        await wait_for(pilot, lambda: app.focused is panel(app).list, what="the list focused from the palette")


async def test_panel_lists_problems_most_severe_then_newest_with_words_and_actions():
    found: dict = {}
    # node-2's leak began 10 minutes ago, node-5's heat 3 minutes ago, node-4's model differs since 1 minute
    app, _ = make_app(found, earlier=((600, (LEAK,)), (180, (LEAK, HOT)), (60, (LEAK, HOT, MODEL))))
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        lines = panel_lines(app)
        assert not panel(app).has_class("hidden")
        assert lines[0].lstrip().startswith("3 problems: 1 CRIT, 2 WARN")
        rows = [line.split() for line in lines[1:]]
        assert [r[:3] for r in rows] == [["CRIT", "node-4", "1m"], ["WARN", "node-5", "3m"], ["WARN", "node-2", "10m"]]
        assert lines[1].rstrip().endswith("→ asrtop drain node-4") and "runs model ffee998" in lines[1]
        assert "GPU0 at 88°C for 3 min" in lines[2] and "→" not in lines[2]  # no action: none is made up
        assert screen_text(app).splitlines()[2].startswith(" 3 problems: 1 CRIT  ")  # the header's count
        assert app.focused is app.fleet_screen.table  # the panel takes no key from the table
        await pilot.press("down")
        assert app.fleet_screen.table.cursor_node == "node-2"


async def test_critical_row_marked_without_colour(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    found: dict = {}
    put(found, MODEL, LEAK)
    app, _ = make_app(found)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        lines = await settled(pilot, app)
        assert row_of(lines, "node-4").startswith(f" {CRITICAL_MARK}  node-4")  # critical: marked
        assert row_of(lines, "node-2").startswith("    node-2")  # a warning only: no mark
        header = lines[2]
        assert header.startswith(" 2 problems: 1 CRIT  ")
        # the mark and the count keep a non-colour attribute (reverse video), as a hot GPU's figure does
        cell = app.fleet_screen.table.get_cell("node-4", "sel")
        assert cell.plain == CRITICAL_MARK and "reverse" in str(cell.style)


async def test_enter_on_a_problem_opens_its_node_and_esc_returns_to_its_row():
    found: dict = {}
    app, _ = make_app(found, earlier=((120, (LEAK,)), (60, (LEAK, HOT))))
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        table = app.fleet_screen.table
        assert table.cursor_node == "node-1"
        await pilot.press("p")  # to the list: its first problem's node comes under the table's cursor
        assert app.focused is panel(app).list and table.cursor_node == "node-5"
        await pilot.press("down")  # the older one: node-2
        assert table.cursor_node == "node-2"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeDetailScreen), what="detail")
        assert app.screen.node == "node-2"
        await wait_for(pilot, lambda: "Problems" in screen_text(app), what="the detail's problems")
        text = screen_text(app)
        assert "WARN  since 2m" in text and "leaks GPU memory: +48 MB/s" in text
        assert "→ asrtop drain node-2" in text and "GPU0 at 88°C" not in text  # its own problems only
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.fleet_screen, what="back")
        assert app.focused is table and table.cursor_node == "node-2"
        await pilot.press("p", "escape")  # esc leaves the list for the table (and clears nothing)
        assert app.focused is table
        await pilot.press("home")
        assert table.cursor_node == "node-1"
        await pilot.press("tab")  # Tab reaches the list too; the cursor follows its highlighted problem (node-2's)
        assert app.focused is panel(app).list and table.cursor_node == "node-2"


async def test_a_cleared_problem_leaves_panel_count_and_mark():
    found: dict = {}
    put(found, MODEL)
    app, _ = make_app(found)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        await pilot.press("p")
        assert app.focused is panel(app).list
        assert app.fleet_screen.table.get_cell("node-4", "sel").plain == CRITICAL_MARK
        put(found)
        await refreshed(pilot, app)
        assert app.problems == () and panel(app).has_class("hidden")
        assert app.fleet_screen.table.get_cell("node-4", "sel").plain == " "
        assert "problem" not in screen_text(app)
        assert app.focused is app.fleet_screen.table  # the list went away: the keys are the table's again


async def test_a_fleet_problem_has_no_node_to_open_and_a_failing_rule_keeps_the_console():
    found: dict = {}
    put(found, BACKUPS)
    app, _ = make_app(found)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        assert "fleet  " in panel_lines(app)[1] and "only backups serve" in panel_lines(app)[1]
        await pilot.press("p", "enter")
        await pilot.pause(0.1)
        assert app.screen is app.fleet_screen
        assert any("no node to open" in (n.title or "") for n in app._notifications)
        found["raise"] = "bug in a rule"
        await refreshed(pilot, app)
        assert any("problem rules failed: RuntimeError: bug in a rule" in n.message for n in app._notifications)
        assert [p.rule for p in app.problems] == ["backups-only"]  # the last problems stay on screen


def twelve_with_problems():
    found: dict = {}
    fleet = fleet_of_12()
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600,
                    problem_tracker=tracker_of(found, ((720, (LEAK,)), (300, (LEAK, HOT)),
                                                       (90, (LEAK, HOT, BACKUPS, MODEL)),
                                                       (20, (LEAK, HOT, BACKUPS, MODEL, HOT_11))), fleet))
    return app


@pytest.mark.parametrize("size", [(80, 24), (120, 35)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_problems_golden_layouts(size):
    width, height = size
    app = twelve_with_problems()
    async with app.run_test(size=size) as pilot:
        lines = await settled(pilot, app)
    assert len(lines) == height and all(len(line) <= width for line in lines)
    rows = table_region(lines)
    assert sum(line.startswith("    node-") or line.startswith(f" {CRITICAL_MARK}") or line.startswith(" !")
               for line in rows) >= (8 if height < 30 else 12)  # the panel leaves the table most of the screen
    text = "\n".join(lines)
    assert lines[2].startswith(" 5 problems: 1 CRIT  ") and "5 problems: 1 CRIT, 4 WARN" in text
    if height < 30:  # four lines of the list at 80x24, the rest a scroll away
        assert "1 more: scroll the list" in text
    check_golden(f"problems_{width}x{height}", lines)


async def test_problems_and_rollout_share_the_space_under_the_table():
    starter = FakeStarter()
    starter.state = state_of("running", RUNNING)
    found: dict = {}
    fleet = fleet_of_12()
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600, rollout=starter,
                    problem_tracker=tracker_of(found, ((300, (LEAK, HOT)), (90, (LEAK, HOT, BACKUPS, MODEL))),
                                               fleet))
    app.clock = lambda: T0 + 60
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        await wait_for(pilot, lambda: "rollout 20261201T051203Z-4f2a running" in screen_text(app), what="rollout")
        await refreshed(pilot, app)  # each panel sized knowing the other
        lines = await settled(pilot, app)
        assert app.fleet_screen.table.size.height >= 6  # the column header and five nodes at least
        assert panel(app).list.size.height == 3  # one line less beside a rollout
    assert "4 problems: 1 CRIT, 3 WARN" in "\n".join(lines)  # the panel's count
    check_golden("problems_rollout_80x24", lines)


async def test_a_fleet_wide_outage_lists_the_first_fifty_and_counts_them_all():
    from asrtop.tui.problem_lines import LISTED_MAX

    found: dict = {}
    fleet = FakeFleet(60, odd_model=(), backups=())
    put(found, *(Finding("agent-stale", f"node-{i}", WARN, "agent silent for 12 s", None) for i in range(1, 61)))
    app, _ = make_app(found, fleet=fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        assert len(app.problems) == 60 and panel(app).list.option_count == LISTED_MAX == 50
        assert panel_lines(app)[0].lstrip().startswith("60 problems: 60 WARN · the first 50 listed: scroll the list")


async def test_a_long_problem_wraps_under_its_text_in_the_detail_at_80_columns():
    """The detail wraps a problem's text within the scroll area (its padding and scrollbar taken off), every
    continuation under the text: a text that just fits 58 columns once came out as a word alone at the left."""
    crash = Finding("crash-loop", "node-2", CRIT, "crash-loops: its ASR process restarted 8 times in the last 10 min",
                    "asrtop drain node-2")
    found: dict = {}
    put(found, crash)
    app, _ = make_app(found)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        app.open_detail("node-2")
        await wait_for(pilot, lambda: "crash-loops" in screen_text(app), what="the detail's problems")
        lines = screen_text(app).splitlines()
        first = next(i for i, line in enumerate(lines) if "crash-loops" in line)
        block = lines[first + 1:next(i for i in range(first, len(lines)) if "→ asrtop drain node-2" in lines[i]) + 1]
        assert block and all(line.startswith(" " * 21) for line in block), lines[first:first + len(block) + 1]


async def test_panel_lines_are_built_to_the_width_and_laid_out_again_on_a_resize():
    """Each line is one Text of the list's width (a grid per line went through Rich each time the list measured
    its lines: ~0.3 s the refresh that opened the panel at 30 problems, issue 17); a narrower screen lays them
    out again, the actions still whole at its right edge."""
    from rich.text import Text

    app = twelve_with_problems()
    async with app.run_test(size=(120, 35)) as pilot:
        await settled(pilot, app)
        panel = app.fleet_screen.problems_panel
        for width in (120, 96):
            await pilot.resize_terminal(width, 35)
            lines = await settled(pilot, app)
            prompts = [panel.list.get_option_at_index(i).prompt for i in range(panel.list.option_count)]
            assert prompts and all(isinstance(p, Text) and "\n" not in p.plain for p in prompts)
            cells = {p.cell_len for p in prompts}
            assert cells == {panel.list.scrollable_content_region.width} and width - 4 < min(cells), (width, cells)
            assert sum("→ asrtop drain node-4" in line for line in lines) == 1, lines


async def test_the_panel_opening_waits_for_the_tables_bands(monkeypatch):
    """300 nodes whose figures all move: the refresh that raises the first problem repaints the table a band a
    frame, and the panel (which shrinks the table, so repaints every line on screen in one update) opens only
    after the last band, when those lines' cells are rendered already: opened in the same update it held the
    UI loop ~30 ms at 1,000 nodes (bench_tui_end_to_end). Its height changed by a refresh later than that."""
    from asrtop.tui.widgets.fleet_table import FleetTable

    found: dict = {}
    fleet = FakeFleet(300, odd_model=(), backups=())
    app, _ = make_app(found, fleet)
    async with app.run_test(size=(160, 45)) as pilot:
        await settled(pilot, app)
        table = app.fleet_screen.table
        full_height = table.size.height
        paints: list[tuple[int, bool]] = []  # (table height, bands pending) at each paint of the table
        lines = FleetTable.render_lines
        monkeypatch.setattr(FleetTable, "render_lines",
                            lambda self, crop: paints.append((self.size.height, self.repaint_pending))
                            or lines(self, crop))
        fleet.tick += 1  # every row's figures move: the table repaints in bands
        put(found, MODEL)
        await refreshed(pilot, app)
        await wait_for(pilot, lambda: panel(app).display and table.size.height < full_height, what="panel open")
        assert any(pending for _, pending in paints)  # the refresh's bands were painted ...
        shrunk = next(i for i, (height, _) in enumerate(paints) if height < full_height)
        assert not any(pending for _, pending in paints[shrunk:]), paints  # ... all of them before it shrank
        assert any("node-4" in line and "runs model" in line for line in panel_lines(app))


async def test_a_refresh_gives_the_list_new_lines_only_for_the_problems_whose_words_moved():
    """Lines whose words and widths stay are the same objects, so the list renders again only the others
    (textual_internals.replace_prompts); the moved line shows its new words."""
    found: dict = {}
    app, _ = make_app(found, earlier=((120.0, (LEAK, HOT)),))
    async with app.run_test(size=(120, 35)) as pilot:
        put(found, LEAK, HOT)
        await refreshed(pilot, app)
        listing = panel(app).list
        before = {listing.get_option_at_index(i).prompt.plain: listing.get_option_at_index(i).prompt
                  for i in range(listing.option_count)}
        assert len(before) == 2
        put(found, LEAK, replace(HOT, text="GPU0 at 91°C for 3 min"))
        await refreshed(pilot, app)
        after = [listing.get_option_at_index(i).prompt for i in range(listing.option_count)]
        kept = [p for p in after if p.plain in before]
        assert len(kept) == 1 and kept[0] is before[kept[0].plain] and "leaks GPU memory" in kept[0].plain
        assert any("GPU0 at 91°C for 3 min" in line for line in panel_lines(app))


async def test_the_panels_lines_are_made_in_the_refresh_thread_and_here_after_a_resize(monkeypatch):
    """A refresh brings the panel's lines made in its thread (asrtop.tui.problem_lines), as it brings the table's
    cells: while the problems age ('30s' -> '31s': every line new) none is made on the UI thread, and the list shows
    exactly the lines made for those problems here. After a resize (another width) the panel makes them itself."""
    import threading

    import asrtop.tui.problem_lines as made_lines

    made_on: list[int] = []
    real_line_of = made_lines.line_of

    def recorded_line_of(*args, **kw):
        made_on.append(threading.get_ident())
        return real_line_of(*args, **kw)

    monkeypatch.setattr(made_lines, "line_of", recorded_line_of)
    found: dict = {}
    fleet = FakeFleet(12, odd_model=(4,), backups=(), frozen_clock=False)
    app, _ = make_app(found, fleet, earlier=((30, (MODEL, LEAK, HOT, HOT_11)),))
    async with app.run_test(size=(120, 35)) as pilot:
        ui = threading.get_ident()
        await settled(pilot, app)
        put(found, MODEL, LEAK, HOT, HOT_11)
        await refreshed(pilot, app)
        made_on.clear()
        for tick in range(1, 4):
            fleet.tick = tick
            await refreshed(pilot, app)
        assert len(made_on) >= 3 * 4 and ui not in made_on, made_on
        shown = panel(app)
        widths, rows, _ = app.fleet_screen.problem_inputs()
        expected = made_lines.problem_lines(app.problems, app.snapshot.taken_at, widths, rows, True, {})
        assert len(shown.list.options) == 4
        assert [option.prompt for option in shown.list.options] == list(expected.lines)
        assert "33s" in panel_lines(app)[1]
        made_on.clear()
        await pilot.resize_terminal(100, 35)
        await wait_for(pilot, lambda: made_on, what="the lines made again at the new width")
        assert set(made_on) == {ui}
        assert all(len(option.prompt) == widths[0] - 20 for option in shown.list.options)
