"""Pilot tests of every binding against the REAL demo cluster (HAProxy 2.8, simulated nodes, agents).

HAProxy is read back through the adapter, independently of the console. The shared `demo_cluster`
is left as found (every change is undone); the agent-kill test starts its own small cluster.
"""

import argparse
import asyncio

from support.control_cluster import run_cli, without_second_look
from screen import plan_shown, run_from_palette, screen_text, wait_for

from asrtop.balancers.base import AdminState
from asrtop.balancers.haproxy import HAProxyBalancer
from asrtop.config import load_config
from asrtop.tui.run import build_app
from asrtop.tui.screens.confirm import ConfirmScreen
from asrtop.tui.screens.weight import WeightScreen


def console(cluster, read_only=False):
    args = argparse.Namespace(config=str(cluster.config_path), read_only=read_only, prometheus=None)
    return build_app(args, load_config(cluster.config_path))


def haproxy(cluster) -> dict:
    lb = HAProxyBalancer("check", cluster.admin_socket, cluster.backend)
    return {s.name: s for s in lb.servers()}


async def ready_console(pilot, app):
    await wait_for(pilot, lambda: app.snapshot is not None and app.fleet_screen.table.row_count == 4
                   and all(n.status is not None for n in app.snapshot.nodes), what="fleet with agents")


async def go_to(pilot, app, node):
    table = app.fleet_screen.table
    table.move_cursor(row=table.get_row_index(node))
    await pilot.pause(0.05)
    assert table.cursor_node == node


async def press_action(pilot, app, key):
    """The key of an action, once the last one has ended: HAProxy shows a change before the console has read it
    back and audited it, and the console takes one action at a time ("another action is still running")."""
    await wait_for(pilot, lambda: not app.action_busy, what="the last action's end")
    await pilot.press(key)


async def ready_again(pilot, app, cluster, node):
    """r, y: the node back in rotation, as HAProxy reads it."""
    await press_action(pilot, app, "r")
    await confirm(pilot, app, "y")
    await wait_for(pilot, lambda: haproxy(cluster)[node].admin is AdminState.READY, what=f"{node} READY")


async def confirm(pilot, app, *keys):
    await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
    await pilot.press(*keys)


async def test_drain_then_ready_on_haproxy(demo_cluster):
    app = console(demo_cluster)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_console(pilot, app)
        await go_to(pilot, app, "node-1")
        await press_action(pilot, app, "d")
        await confirm(pilot, app)
        assert "node-1" in screen_text(app) and "haproxy" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: haproxy(demo_cluster)["node-1"].admin is AdminState.DRAIN, what="DRAIN")
        await wait_for(pilot, lambda: any("safe to upgrade" in n.message for n in app._notifications),
                       what="drained notification")
        await wait_for(pilot, lambda: app.fleet_screen.table._cells["node-1"][2][0] == "drain", what="row state")
        await ready_again(pilot, app, demo_cluster, "node-1")


async def test_an_action_behind_another_asrtops_says_it_waits_then_goes_through(demo_cluster):
    from asrtop.control.oplock import action_lock, lock_path

    app = console(demo_cluster)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_console(pilot, app)
        await go_to(pilot, app, "node-1")
        async with action_lock(lock_path(load_config(demo_cluster.config_path).audit_log)):  # a CLI's action
            await press_action(pilot, app, "d")
            await confirm(pilot, app, "y")
            await wait_for(pilot, lambda: any("waiting for another asrtop action" in n.message
                                              for n in app._notifications), what="waiting notification")
            assert haproxy(demo_cluster)["node-1"].admin is AdminState.READY  # nothing sent while it waits
        await wait_for(pilot, lambda: haproxy(demo_cluster)["node-1"].admin is AdminState.DRAIN, what="DRAIN")
        await ready_again(pilot, app, demo_cluster, "node-1")


async def test_weight_on_haproxy(demo_cluster):
    app = console(demo_cluster)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_console(pilot, app)
        await go_to(pilot, app, "node-3")
        before = haproxy(demo_cluster)["node-3"].weight
        for value in (7, before):  # set, then put it back
            await press_action(pilot, app, "w")
            await wait_for(pilot, lambda: isinstance(app.screen, WeightScreen), what="weight input")
            await pilot.press(*str(value), "enter")
            await confirm(pilot, app, "y")
            await wait_for(pilot, lambda: haproxy(demo_cluster)["node-3"].weight == value, what=f"weight {value}")


async def test_maint_and_backup_toggle_on_haproxy(demo_cluster):
    app = console(demo_cluster)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_console(pilot, app)
        await go_to(pilot, app, "node-3")
        await press_action(pilot, app, "m")
        await confirm(pilot, app, "y")
        await wait_for(pilot, lambda: haproxy(demo_cluster)["node-3"].admin is AdminState.MAINT, what="MAINT")
        await ready_again(pilot, app, demo_cluster, "node-3")
        for flag in (True, False):  # b toggles: backup, then primary again
            await wait_for(pilot, lambda: app.snapshot.node("node-3").backup is (not flag), what="fresh state")
            await press_action(pilot, app, "b")
            await confirm(pilot, app, "y")
            await wait_for(pilot, lambda: haproxy(demo_cluster)["node-3"].backup is flag, timeout=30,
                           what=f"backup {flag}")
        assert haproxy(demo_cluster)["node-3"].admin is AdminState.READY


async def test_ready_on_odd_model_shows_the_cli_refusal_then_force_and_a_second_yes(demo_cluster):
    app = console(demo_cluster)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_console(pilot, app)
        await wait_for(pilot, lambda: "node-2" in app.snapshot.nodes_differing_from_target(), what="odd model")
        await go_to(pilot, app, "node-2")
        await press_action(pilot, app, "m")
        await confirm(pilot, app, "y")
        await wait_for(pilot, lambda: haproxy(demo_cluster)["node-2"].admin is AdminState.MAINT, what="MAINT")
        # what a script sees, same moment, once the console's maint has ended (HAProxy shows MAINT before its
        # read-back and audit line; a CLI started then waits for the action lock and says so). In a thread all
        # the same: a loop blocked on the CLI would never let a console action release the lock
        await wait_for(pilot, lambda: not app.action_busy, what="the maint's end")
        cli = await asyncio.to_thread(run_cli, demo_cluster.config_path, "ready", "node-2")
        assert cli.returncode == 3, cli.stdout + cli.stderr
        await press_action(pilot, app, "r")
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        # the console shows the CLI's own line; only the hint after it names the key instead of the flag
        refusal = f"asrtop: {app.screen.refusal} (use --force to put it in rotation anyway)"
        assert without_second_look(cli.stderr) == [refusal]
        await pilot.press("y")  # y does not confirm a refusal
        await pilot.pause(0.3)
        assert haproxy(demo_cluster)["node-2"].admin is AdminState.MAINT
        await pilot.press("f")
        await wait_for(pilot, lambda: "Model differs" in screen_text(app), what="second confirmation")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert haproxy(demo_cluster)["node-2"].admin is AdminState.MAINT  # refused without the second yes
        await press_action(pilot, app, "r")
        await confirm(pilot, app, "f")
        await wait_for(pilot, lambda: "Model differs" in screen_text(app), what="second confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: haproxy(demo_cluster)["node-2"].admin is AdminState.READY, what="READY")


async def test_read_only_refuses_on_haproxy(demo_cluster):
    app = console(demo_cluster, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready_console(pilot, app)
        for key in "drmwb":
            await pilot.press(key)
            await pilot.pause(0.1)
            assert not isinstance(app.screen, (ConfirmScreen, WeightScreen))
        assert "READ-ONLY" in screen_text(app)
        # and the controller under it refuses too, whatever the UI does
        from asrtop.control import Action

        result = await app.controller.apply(Action("drain", "node-1"))
        assert result.outcome == "refused"
    assert {s.admin for s in haproxy(demo_cluster).values()} == {AdminState.READY}


async def test_killed_agent_greys_row_and_console_survives(wheel_haproxy_bin):
    from asrtop.demo.cluster import DemoCluster

    with DemoCluster(nodes=2, haproxy_bin=wheel_haproxy_bin) as cluster:
        app = console(cluster)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.snapshot is not None
                           and all(n.status is not None for n in app.snapshot.nodes), what="fleet")
            cluster.nodes[0].agent_proc.kill()
            cluster.nodes[0].agent_proc.wait(5)
            await wait_for(pilot, lambda: app.snapshot.node("node-1").stale, timeout=30, what="stale agent")
            await wait_for(pilot, lambda: app.fleet_screen.table._cells["node-1"][0][0] == "!", what="grey row")
            assert any("agent not answering: node-1" in n.message for n in app._notifications)
            n = app.refreshes
            await pilot.press("enter")  # the dead node's detail says why, with the last good status
            await wait_for(pilot, lambda: app.refreshes > n + 1, what="polling goes on")
            assert "STALE" in screen_text(app) and app.is_running
            assert not app.snapshot.node("node-2").stale


async def test_demo_fault_palette_leaks_on_the_real_node_and_clears(demo_cluster):
    """The demo console's palette, over real HTTP: the cursor node's simulated GPU grows (seen through its
    agent), the other nodes' do not; clear puts it back. The shared cluster is left as found."""
    from asrtop.demo.fault import DemoFaults
    from asrtop.tui.demo_faults import demo_console

    args = argparse.Namespace(config=str(demo_cluster.config_path), read_only=False, prometheus=None)
    app = build_app(args, load_config(demo_cluster.config_path), demo_console(DemoFaults()))

    def used(node):
        return app.snapshot.node(node).status.gpus[0].memory_used_bytes

    def leaked(i):  # the simulator's own figure: the console's memory also moves with open connections
        return demo_cluster.node_stats(i)["gpu_leaked_bytes"]

    async with app.run_test(size=(100, 30)) as pilot:
        await ready_console(pilot, app)
        await go_to(pilot, app, "node-2")
        before = used("node-2")
        try:
            await run_from_palette(pilot, "gpu leak on sel")  # "leak on sel" ties with the process leak
            try:
                await wait_for(pilot, lambda: used("node-2") > before + 64 * 2**20, what="simulated GPU leak")
            except AssertionError as e:  # what the nodes and the console said instead
                raise AssertionError(f"{e}: leaked {[leaked(i) for i in range(4)]}, node-2 used {used('node-2')} "
                                     f"(before {before}); {[n.message for n in app._notifications]}") from None
            assert leaked(1) > 0 and [leaked(i) for i in (0, 2, 3)] == [0, 0, 0]
            await run_from_palette(pilot, "clear on sel")
            await wait_for(pilot, lambda: leaked(1) == 0, what="leak cleared")
            await wait_for(pilot, lambda: used("node-2") < before + 64 * 2**20, what="leak cleared in the console")
        finally:
            demo_cluster.fault(1, clear=True)
