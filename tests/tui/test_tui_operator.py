"""Issue 12, as an operator reads the console: read-only keys say why (item 3), the multi-select
confirmation per node with one guardrail line and the key as the hint (9), one toast per action and the
palette's Screenshot (11), node detail and help cosmetics (12). Pilot and pure renders on the fake fleet."""

from dataclasses import replace

from fakes import FakeAudit, FakeController, FakeFleet
from screen import plan_shown, run_from_palette, screen_lines, screen_text, wait_for

from asrtop.balancers.base import AdminState
from asrtop.history import FleetHistory
from asrtop.tui.app import AsrtopApp
from asrtop.tui.format import sparkline
from asrtop.tui.screens.detail import NodeDetailScreen, render_detail
from asrtop.tui.screens.help import HelpScreen

READ_ONLY_WHY = "(started with --read-only or cluster.read_only = true)"


def make(n=4, read_only=False, min_ready=1, **fleet_kw):
    fleet = FakeFleet(n, **fleet_kw)
    ctl = FakeController(fleet, min_ready=min_ready)
    app = AsrtopApp(fleet, ctl, cluster="lab", read_only=read_only, audit=FakeAudit(), refresh=0.2)
    told: list[tuple[str, str | None]] = []  # every notification: (message, title)
    notify = app.notify

    def record(message, *, title="", **kw):
        told.append((str(message), title or None))
        return notify(message, title=title, **kw)

    app.notify = record  # type: ignore[method-assign]
    return app, fleet, ctl, told


async def started(pilot, app):
    await wait_for(pilot, lambda: app.refreshes >= 1 and app.fleet_screen.table.row_count > 0, what="first refresh")


async def test_read_only_hides_the_action_keys_and_a_refused_key_says_why():
    app, _, ctl, told = make(read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot, app)
        footer = screen_lines(app)[-1]
        assert "Drain" not in footer and "Maint" not in footer and "Filter" in footer
        await pilot.press("d")
        await wait_for(pilot, lambda: told, what="a refusal toast")
        assert told == [(f"read-only mode, drain not sent {READ_ONLY_WHY}", None)]
        await pilot.press("enter")  # node detail: the same keys, the same answer
        await wait_for(pilot, lambda: isinstance(app.screen, NodeDetailScreen), what="detail")
        assert "Drain" not in screen_lines(app)[-1]
        await pilot.press("b")
        await wait_for(pilot, lambda: len(told) == 2, what="a second refusal toast")
        assert told[-1][0] == f"read-only mode, backup not sent {READ_ONLY_WHY}"
        await pilot.press("escape", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        assert "drain: no new requests" not in screen_text(app) and "READ-ONLY" in screen_text(app)
        await pilot.press("d")  # in the help dialog the key is not an action at all: no toast
        await pilot.pause(0.1)
        assert len(told) == 2 and ctl.applied == []


async def test_a_writable_console_never_shows_the_read_only_refusal():
    app, _, ctl, told = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        assert not any("read-only" in m for m, _ in told)


async def test_multi_select_confirmation_is_per_node_with_one_guardrail_line_and_f_as_the_hint():
    app, _, ctl, told = make(n=3, backups=(), min_ready=2)
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        await pilot.press("space", "space", "m")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        text = screen_text(app)
        lines = [line.strip(" ▊▎█▌▐") for line in screen_lines(app)]
        for node in ("node-1", "node-2"):  # each node's change line right under its name
            i = next(k for k, line in enumerate(lines) if line.startswith(f"{node} carries"))
            assert lines[i + 1].startswith("haproxy-a: state ready -> maint"), lines[i:i + 2]
        assert text.count("primaries") == 1 and "together: 1 of 3 primaries stay ready" in text
        assert "refused: taking node-1, node-2 out would leave 1 ready primary node(s), min_ready is 2" in " ".join(
            line.strip(" ▊▎█▌▐") for line in screen_lines(app))  # the modal wraps it
        assert "press f to override" in text and "--force" not in text
        await pilot.press("f")
        await wait_for(pilot, lambda: len(ctl.applied) == 2, what="forced batch")


async def test_an_action_raises_one_toast_its_result_line():
    app, fleet, ctl, told = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("m")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: fleet.admin["node-1"] is AdminState.MAINT and told, what="maint")
        await pilot.pause(0.5)  # a refresh or two: nothing else to say
        assert told == [("maint node-1: done on haproxy-a", None)]


async def test_palette_screenshot_is_saved_without_a_downloads_folder(tmp_path, monkeypatch):
    """Textual saves to ~/Downloads; a server over SSH has none (the palette said "Failed to save")."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.chdir(work)
    app, _, _, told = make()
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        await run_from_palette(pilot, "Screenshot")
        await wait_for(pilot, lambda: any(t == "Screenshot" for _, t in told), what="screenshot toast")
    assert [m for m, t in told if t == "Screenshot"][0].startswith("Saved screenshot")
    shots = list(work.glob("*.svg"))
    assert len(shots) == 1 and "<svg" in shots[0].read_text()


def test_detail_leaves_absent_versions_out_and_names_the_whole_gpu():
    fleet = FakeFleet(2, odd_model=())
    snap = fleet.build()
    node = snap.node("node-1")
    st = replace(node.status, versions={"packages": {}, "cuda": None, "driver": None, "python": "3.11",
                                        "agent": "0.1.0"},
                 gpus=tuple(replace(g, name="NVIDIA H100 80GB HBM3") for g in node.status.gpus))
    node = replace(node, agent=replace(node.agent, status=st))
    text = render_detail(node, snap, FleetHistory(10), [], cols=80).plain
    assert "None" not in text and "{}" not in text
    assert "packages" not in text and "cuda" not in text and "python        3.11" in text
    assert "GPU0 NVIDIA H100 80GB HBM3\n" in text
    assert all(len(line) <= 80 for line in text.splitlines())  # the digest wraps under itself
    digest = [line for line in text.splitlines() if line.startswith("  digest")][0]
    assert text.splitlines()[text.splitlines().index(digest) + 1].startswith(" " * 16)


def test_detail_sparklines_scale_to_the_window_so_a_busy_node_has_a_shape():
    busy = [12, 13, 14, 15, 16, 15, 14, 13, 12, 14]  # in flight on a loaded node: always near its top
    line = sparkline(busy, 10, max(busy), min(busy))
    assert line[0] == "▁" and line[4] == "█" and len(set(line)) >= 4
    assert sparkline([5, 5, 5], 3, 5, 5) == "▅▅▅"  # flat: a mid line, not the floor or a wall


async def test_detail_shows_min_max_range_after_each_sparkline():
    app, fleet, _, _ = make(frozen_clock=True)
    async with app.run_test(size=(80, 40)) as pilot:
        await started(pilot, app)
        for _ in range(6):
            fleet.tick += 1
            await pilot.pause(0.25)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeDetailScreen), what="detail")
        await pilot.pause(0.2)
        row = next(line for line in screen_lines(app) if "in-flight" in line and "–" in line)
        spark = row.split()[2]
        assert "▁" in spark and "█" in spark  # the window's own min and max are the line's floor and top


async def test_help_descriptions_wrap_under_themselves():
    app, _, _, _ = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        lines = screen_lines(app)
        first = next(i for i, line in enumerate(lines) if "drain: no new requests" in line)
        column = lines[first].index("drain:")
        follow = lines[first + 1]
        assert follow[column - 2:column] == "  " and not follow[column].isspace(), (lines[first], follow)
