"""Pilot tests of every binding and of failure display, on an injected fake fleet and controller."""

import asyncio

from fakes import DIGEST_A, DIGEST_B, FakeAudit, FakeController, FakeFleet, FakeRecovery
from screen import plan_shown, run_from_palette, screen_text, wait_for

from asrtop.balancers.base import AdminState
from asrtop.control import Action, Controller
from asrtop.tui.app import AsrtopApp
from asrtop.tui.commands import FleetCommands
from asrtop.tui.screens.confirm import ConfirmScreen
from asrtop.tui.screens.detail import NodeDetailScreen, render_detail
from asrtop.tui.screens.help import HelpScreen
from asrtop.tui.screens.models import ModelScreen
from asrtop.tui.screens.weight import WeightScreen


def make(n=6, read_only=False, **fleet_kw):
    fleet = FakeFleet(n, **fleet_kw)
    ctl = FakeController(fleet)
    app = AsrtopApp(fleet, ctl, cluster="lab", read_only=read_only, audit=FakeAudit(), refresh=0.2)
    return app, fleet, ctl


async def started(pilot, app):
    await wait_for(pilot, lambda: app.refreshes >= 1 and app.fleet_screen.table.row_count > 0, what="first refresh")


async def test_table_updates_in_place_keeping_cursor():
    app, fleet, _ = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        table = app.fleet_screen.table
        await pilot.press("down", "down")
        assert table.cursor_node == "node-3"
        before = table.updates
        n = app.refreshes
        await wait_for(pilot, lambda: app.refreshes >= n + 2, what="two refreshes")
        assert table.updates == before  # identical data: no cell touched
        fleet.tick = 4  # numbers move: cells change, rows and cursor stay
        await wait_for(pilot, lambda: table.updates > before, what="changed cells")
        assert table.row_count == 6 and table.cursor_node == "node-3"
        assert [str(k.value) for k in table.rows] == fleet.names


async def test_sort_and_filter_keep_the_cursor_node():
    app, _, _ = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        table = app.fleet_screen.table
        await pilot.press("down")  # node-2
        table.set_sort("gpu")  # descending by GPU util
        await pilot.pause(0.05)
        order = table.shown_nodes
        snap = app.snapshot
        utils = [snap.node(n).status.gpus[0].utilization_ratio if snap.node(n).status else -1 for n in order]
        assert utils[:-1] == sorted(utils[:-1], reverse=True)  # the dead agent (unknown) sorts last
        assert table.cursor_node == "node-2"
        await pilot.press("s")  # next column
        assert table.sort_column == "mem"
        await pilot.press("slash", *"node-5", "enter")
        await pilot.pause(0.05)
        assert table.shown_nodes == ["node-5"]
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert len(table.shown_nodes) == 6


async def test_drain_confirm_applies_and_reports_drained():
    app, fleet, ctl = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        text = screen_text(app)
        assert "Drain node-1?" in text and "in-flight requests" in text
        await pilot.press("y")
        await wait_for(pilot, lambda: ctl.applied, what="apply")
        assert ctl.applied == [(Action("drain", "node-1", None), False)]
        assert "node-1" in app.draining
        # the node empties: the console says it is safe to upgrade and stops tracking it
        fleet.tick = 4  # node-1's in-flight: (1*5+4) % 9 == 0
        await wait_for(pilot, lambda: "node-1" not in app.draining, what="drain finished")
        assert any("safe to upgrade" in n.message for n in app._notifications)


async def test_a_drain_undone_while_followed_is_an_error_never_safe_to_upgrade():
    app, fleet, ctl = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: ctl.applied and "node-1" in app.draining, what="apply")
        fleet.admin["node-1"] = AdminState.READY  # undone behind asrtop's back (a reload, an agent, socat)
        await wait_for(pilot, lambda: "node-1" not in app.draining, what="drain undone noticed")
        (undone,) = [n for n in app._notifications if n.title == "drain undone"]
        assert undone.severity == "error"
        assert undone.message == ("node-1 is ready again on haproxy-a: not by asrtop: a reload, another tool or an "
                                  "operator (the notes say which); not safe to upgrade")
        assert not any(n.message.endswith(", safe to upgrade") for n in app._notifications)


async def test_modal_opens_before_the_plan_and_cannot_be_confirmed_until_it_arrives():
    app, _, ctl = make()
    ctl.plan_delay = 3.0  # long enough to look at the pending modal even on a loaded machine
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="modal")
        assert app.screen.pending and "checking with the balancers" in screen_text(app)
        assert "node-1 carries 5 in-flight requests" in screen_text(app)  # from the last snapshot
        await pilot.press("y")
        await pilot.pause(0.1)
        assert ctl.applied == [] and isinstance(app.screen, ConfirmScreen)
        await wait_for(pilot, lambda: plan_shown(app), what="plan")
        await pilot.press("y")
        await wait_for(pilot, lambda: ctl.applied, what="apply")


async def test_cancel_changes_nothing_and_enter_defaults_to_cancel():
    app, _, ctl = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("m")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        await pilot.press("enter")  # the focused button is Cancel
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="dialog closed")
        await pilot.press("r")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        await pilot.press("n")
        await pilot.pause(0.1)
        assert ctl.applied == []


async def test_multi_select_acts_on_every_selected_node():
    app, _, ctl = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("space", "space")  # selects node-1, then node-2 (the cursor moves down)
        assert app.fleet_screen.selected == {"node-1", "node-2"}
        await pilot.press("m")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        assert "node-1, node-2" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: len(ctl.applied) == 2, what="two applies")
        assert {a.node for a, _ in ctl.applied} == {"node-1", "node-2"}


async def test_guardrail_refusal_needs_explicit_force():
    app, fleet, ctl = make(n=2, backups=())
    fleet.admin["node-2"] = AdminState.MAINT
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        assert "refused" in screen_text(app)
        await pilot.press("y")  # plain yes does not override a refusal
        await pilot.pause(0.1)
        assert ctl.applied == [] and isinstance(app.screen, ConfirmScreen)
        await pilot.press("f")
        await wait_for(pilot, lambda: ctl.applied, what="forced apply")
        assert ctl.applied[0][1] is True


async def test_weight_input_validates():
    app, fleet, ctl = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WeightScreen), what="weight input")
        await pilot.press(*"999", "enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, WeightScreen)
        assert "0–256" in screen_text(app)
        await pilot.press("backspace", "backspace", "backspace", "7", "enter")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        assert "Set weight 7 on node-1?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: ctl.applied, what="apply")
        assert ctl.applied[0][0] == Action("weight", "node-1", 7)
        await wait_for(pilot, lambda: app.snapshot.node("node-1").weight == 7, what="refresh")


async def test_backup_toggles_the_current_flag():
    app, _, ctl = make(backups=(2,))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("down", "b")  # node-2 is a backup: b makes it primary
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        assert "Mark node-2 as primary?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: ctl.applied, what="apply")
        assert ctl.applied[0][0] == Action("backup", "node-2", False)


async def test_ready_on_a_different_model_shows_the_cli_refusal_and_needs_force_and_a_second_yes():
    app, fleet, ctl = make(odd_model=(4,))
    fleet.admin["node-4"] = AdminState.MAINT
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        for _ in range(3):
            await pilot.press("down")
        await pilot.press("r")
        await wait_for(pilot, lambda: plan_shown(app), what="first confirmation")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        # the control layer's own refusal, word for word what `asrtop ready node-4` prints
        cli = await Controller.apply(ctl, Action("ready", "node-4"))  # the real rules, past the recorder
        assert cli.exit_code == 3 and cli.message == f"{confirm.refusal} (use --force to put it in rotation anyway)"
        assert confirm.hint == "press f to put it in rotation anyway"  # the same line; the key, not the flag
        assert "--force" not in screen_text(app) and "press f to put it in rotation anyway" in screen_text(app)
        assert f"node-4 runs model {DIGEST_B[:12]}, the fleet majority is {DIGEST_A[:12]}" in cli.message
        assert "files that differ: model.pt" in cli.message
        await pilot.press("y")  # a refusal is not confirmed by y
        await pilot.pause(0.1)
        assert app.screen is confirm and ctl.applied == []
        await pilot.press("f")
        await wait_for(pilot, lambda: "Model differs" in screen_text(app), what="second confirmation")
        await pilot.press("n")
        await pilot.pause(0.1)
        assert ctl.applied == [] and fleet.admin["node-4"] is AdminState.MAINT
        await pilot.press("r")
        await wait_for(pilot, lambda: plan_shown(app), what="first confirmation")
        await pilot.press("f")
        await wait_for(pilot, lambda: "Model differs" in screen_text(app), what="second confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: ctl.applied, what="apply")
        assert ctl.applied == [(Action("ready", "node-4", None), True)]
        await wait_for(pilot, lambda: fleet.admin["node-4"] is AdminState.READY, what="forced ready")
        assert ctl.audit.records[-1]["forced"] is True


async def test_read_only_refuses_every_action():
    app, _, ctl = make(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        for key in "drmwb":
            await pilot.press(key)
            await pilot.pause(0.05)
            assert not isinstance(app.screen, (ConfirmScreen, WeightScreen))
        assert all(not app.fleet_screen.check_action(a, ()) for a in ("drain", "ready", "maint", "weight", "backup"))
        app.start_action("drain", ["node-1"])  # even a direct call is refused
        await pilot.pause(0.05)
        hits = [h async for h in FleetCommands(app.screen).search("drain")]
        assert not hits
        assert ctl.applied == []


async def test_dead_agent_greys_and_balancer_error_is_notified():
    app, fleet, _ = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        fleet.dead.add(2)
        fleet.balancer_error = "haproxy-a: connection refused (/run/haproxy.sock)"
        await wait_for(pilot, lambda: app.snapshot.node("node-2").stale, what="stale agent")
        await wait_for(pilot, lambda: "UNREACHABLE" in screen_text(app), what="header mark")
        messages = [n.message for n in app._notifications]
        assert any("connection refused" in m for m in messages)
        assert any("agent not answering: node-2" in m for m in messages)
        assert app.fleet_screen.table._cells["node-2"][0][0] == "!"


async def test_source_failure_stays_on_screen_and_polling_goes_on():
    app, fleet, _ = make()
    real = fleet.poll
    fail = {"on": False}

    async def flaky():
        if fail["on"]:
            raise OSError("agents unreachable: network down")
        return await real()

    fleet.poll = flaky
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        fail["on"] = True
        await wait_for(pilot, lambda: app.last_error is not None, what="failure shown")
        assert "network down" in screen_text(app)
        fail["on"] = False
        n = app.refreshes
        await wait_for(pilot, lambda: app.refreshes > n, what="recovery")
        assert app.last_error is None


async def test_polls_never_overlap():
    app, fleet, _ = make()
    active = {"now": 0, "max": 0}
    real = fleet.poll

    async def slow():
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        await asyncio.sleep(0.3)  # slower than the 0.2 s refresh
        active["now"] -= 1
        return await real()

    fleet.poll = slow
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 3, what="three refreshes")
        pressed = asyncio.get_running_loop().time()
        await pilot.press("down")  # the UI answers while a poll is in progress
        assert asyncio.get_running_loop().time() - pressed < 5
    assert active["max"] == 1


async def test_detail_model_help_and_palette():
    app, _, _ = make(odd_model=(2,))  # the fake agents list model.pt with other weights on node-2
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeDetailScreen), what="detail")
        await wait_for(pilot, lambda: app.screen.audit, what="audit entries")
        shown = render_detail(app.snapshot.node("node-1"), app.snapshot, app.history, app.screen.audit).plain
        assert "drain  done  drained" in shown  # FakeAudit's node-1 entry
        assert "GPU0 NVIDIA A10" in screen_text(app)
        await pilot.press("escape", "M")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelScreen), what="model view")
        await wait_for(pilot, lambda: f"model.pt: sha256 {'a' * 10} -> {'b' * 10}" in screen_text(app),
                       what="file diff")
        await pilot.press("escape", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = screen_text(app)
        assert "drain" in text.lower() and "space" in text
        await pilot.press("escape")
        hits = [h.text async for h in FleetCommands(app.screen).search("drain")]
        assert "Drain selected node(s)" in hits


async def test_failing_controller_is_a_notification_and_source_is_closed_on_exit():
    app, fleet, ctl = make()

    async def broken(actions, force=False):
        raise RuntimeError("socket vanished")

    ctl.apply_batch = broken
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("m")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: any("socket vanished" in n.message for n in app._notifications),
                       what="error notification")
        assert not app.action_busy and app.is_running
        await pilot.press("d")  # the console still takes actions
        await wait_for(pilot, lambda: plan_shown(app), what="next confirmation")
        await pilot.press("n")
    assert fleet.closed


async def test_unreachable_refusal_cannot_be_forced():
    app, fleet, ctl = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        fleet.balancer_error = "connection refused by HAProxy"
        await pilot.press("d")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        assert "no balancer can be reached" in screen_text(app) and "Force" not in screen_text(app)
        await pilot.press("f", "y")
        await pilot.pause(0.1)
        assert ctl.applied == [] and isinstance(app.screen, ConfirmScreen)


async def test_command_palette_runs_an_action():
    app, _, ctl = make()
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        await run_from_palette(pilot, "maint selected")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation from the palette")
        assert "Maintenance for node-1?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: ctl.applied, what="apply")
        assert ctl.applied[0][0] == Action("maint", "node-1", None)


async def test_empty_fleet_says_so_and_refuses_nothing_silently():
    app, _, ctl = make(n=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 1, what="refresh")
        await pilot.press("d")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("no node under the cursor" in n.message for n in app._notifications)
        assert "0 nodes" in screen_text(app)
    assert ctl.applied == []


SOCKET_NOTE = ("haproxy-a: HAProxy admin socket 0.0.0.0:9999 is TCP on a non-loopback address: anyone who can "
               "reach it can drain, re-weight or delete servers")
RESTART_NOTE = ("haproxy-a: restarted at 11:02:03 UTC, runtime changes lost: node-2 drain (now ready); "
                "re-apply them (or persist them with a server-state-file / in haproxy.cfg)")


def note_notifications(app, text):
    return [n for n in app._notifications if text in n.message and n.severity == "warning"]


async def test_notes_are_marked_in_the_header_and_notified_once_each():
    app, fleet, _ = make()
    fleet.notes = (SOCKET_NOTE,)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await wait_for(pilot, lambda: "⚠ 1 note: haproxy-a: HAProxy admin socket" in screen_text(app),
                       what="notes line")
        lines = screen_text(app).splitlines()
        assert all(len(line) <= 80 for line in lines)
        mark = next(line for line in lines if "⚠ 1 note" in line)
        assert mark.endswith("…")  # cut to the width, never wrapped over the table
        assert len(note_notifications(app, SOCKET_NOTE)) == 1
        n = app.refreshes
        await wait_for(pilot, lambda: app.refreshes >= n + 3, what="identical refreshes")
        assert len(note_notifications(app, SOCKET_NOTE)) == 1  # the same note is not news again
        fleet.notes = (SOCKET_NOTE, RESTART_NOTE)  # a balancer restarted: a new note
        await wait_for(pilot, lambda: "⚠ 2 notes, ? lists all" in screen_text(app), what="two notes")
        assert len(note_notifications(app, RESTART_NOTE)) == 1
        assert len(note_notifications(app, SOCKET_NOTE)) == 1
        await pilot.press("question_mark")  # the keys screen lists every note in full
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await pilot.pause(0.1)
        assert "⚠ 2 notes" in screen_text(app) and "⚠ haproxy-a: restarted at 11:02:03 UTC" in screen_text(app)
        listed = str(app.screen.query_one("#help-notes").content)
        assert f"⚠ {SOCKET_NOTE}" in listed and f"⚠ {RESTART_NOTE}" in listed  # in full
        fleet.notes = ()  # notes go away: the line goes, the help screen follows
        await wait_for(pilot, lambda: "restarted at" not in screen_text(app), what="notes gone from help")
        await pilot.press("escape")
        await wait_for(pilot, lambda: "⚠" not in screen_text(app), what="notes line hidden")


async def test_no_notes_no_line():
    app, _, _ = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.pause(0.1)
        assert "⚠" not in screen_text(app)
        assert not any(n.title == "note" for n in app._notifications)


async def test_simulated_gpus_are_labelled_in_header_and_table():
    app, fleet, _ = make(real_gpus=(1, 2, 3, 4, 5, 6))  # every GPU real: no label anywhere
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "sim" not in text and "~" not in text
        fleet.real_gpus = {1, 2, 3, 4, 5}  # node-6's agent simulates its GPU
        await wait_for(pilot, lambda: "(1 of 6 sim)" in screen_text(app), what="partial sim label")
        lines = screen_text(app).splitlines()
        columns = next(line for line in lines if "node" in line and "state" in line)
        assert "gpu ~=sim" in columns  # (gmem is left out at 80 columns: its label is checked wider)
        assert "~" in next(line for line in lines if "node-6" in line)
        assert "~" not in next(line for line in lines if "node-1" in line)
        fleet.real_gpus = set()  # all simulated
        await wait_for(pilot, lambda: "(sim)" in screen_text(app), what="all-sim label")
        assert all(len(line) <= 80 for line in screen_text(app).splitlines())
        fleet.real_gpus = {1, 2, 3, 4, 5, 6}  # back to real GPUs: the labels go
        await wait_for(pilot, lambda: "sim" not in screen_text(app), what="labels gone")


async def test_refresh_during_a_screen_compose_waits_for_its_mount():
    """A snapshot that lands while a pushed screen is still composing must not query its missing widgets
    (seen once in CI as NoMatches on FleetHeader at start-up); the screen shows it once mounted."""
    from asrtop.tui.app import FleetUpdated

    app, _, _ = make()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        screen = NodeDetailScreen("node-2", False)
        app.push_screen(screen)  # not awaited: on the stack, not yet composed
        assert not screen.is_mounted
        app.on_fleet_updated(FleetUpdated(app.snapshot, 99))  # would raise NoMatches before the fix
        await wait_for(pilot, lambda: screen.is_mounted, what="detail mounted")
        await pilot.pause(0.05)
        assert "node-2" in screen_text(app)


async def test_palette_recovers_interrupted_changes_after_a_confirmation():
    fleet = FakeFleet(6)
    fleet.notes = ("interrupted: `asrtop backup node-2 on` stopped on hx-a after `del server` at 10:31:02 UTC; "
                   "run `asrtop recover`",)
    recovery = FakeRecovery()
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=0.2, recovery=recovery)
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot, app)
        assert "interrupted: `asrtop backup node-2 on`" in screen_text(app)  # the notes line
        await run_from_palette(pilot, "recover interrupted")
        await wait_for(pilot, lambda: plan_shown(app), what="the recovery's plan")
        text = screen_text(app)
        assert "Recover interrupted changes?" in text and "would complete `asrtop backup node-2 on`" in text
        await pilot.press("n")  # cancel: nothing recovered
        await pilot.pause(0.1)
        assert recovery.runs == 0 and not app.action_busy
        app.start_recover()
        await wait_for(pilot, lambda: plan_shown(app), what="the recovery's plan again")
        await pilot.press("y")
        await wait_for(pilot, lambda: recovery.runs == 1, what="recover")
        await wait_for(pilot, lambda: not app.action_busy, what="the action to end")
        app.start_recover()  # nothing left: said, and it cannot be confirmed
        await wait_for(pilot, lambda: plan_shown(app), what="the empty plan")
        assert "nothing to recover" in screen_text(app)
        await pilot.press("y")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmScreen) and recovery.runs == 1
        await pilot.press("escape")


async def test_read_only_console_has_no_recover_command():
    fleet = FakeFleet(6)
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", read_only=True, audit=FakeAudit(), refresh=0.2,
                    recovery=FakeRecovery())
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        assert not [h async for h in FleetCommands(app.screen).search("recover")]
        app.start_recover()
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmScreen) and app.recovery.runs == 0
