"""The demo console's fault palette (Pilot, fake fleet, a fake injector in place of the HTTP call): offered
only in the demo's console, sent to the node under the cursor or a named one, its answer notified."""

from __future__ import annotations

import threading
from dataclasses import replace

from fakes import FakeAudit, FakeController, FakeFleet
from screen import run_from_palette, wait_for

from asrtop.tui.app import AsrtopApp
from asrtop.tui.commands import FleetCommands
from asrtop.tui.demo_faults import DemoConsole, DemoFaultCommands, demo_console


class AddressedFleet(FakeFleet):
    """The fake fleet with a node address for each node but the last (as the demo's cluster file has)."""

    def build(self, tick=None):
        snap = super().build(tick)
        nodes = tuple(n if i == len(snap.nodes) else replace(n, config=replace(n.config, address=f"127.0.0.1:{30000 + i}"))
                      for i, n in enumerate(snap.nodes, 1))
        return replace(snap, nodes=nodes)


class FakeInjector:
    def __init__(self):
        self.sent: list[tuple[str, str]] = []
        self.threads: set[str] = set()

    def faults(self):
        return [("gpu-leak", "GPU memory leak, 50 MiB/s (simulated)"), ("slow", "slow node, 4x processing time"),
                ("clear", "clear every fault")]

    def inject(self, address, fault):
        self.threads.add(threading.current_thread().name)
        self.sent.append((address, fault))
        if address.endswith(":30002"):
            return False, "no simulated node answered at 127.0.0.1:30002 within 10 s"
        return True, "no faults" if fault == "clear" else f"{fault} on"


def make(cls=None, **kw):
    fleet = AddressedFleet(3, backups=())
    injector = FakeInjector()
    factory = cls or demo_console(injector)
    app = factory(fleet, FakeController(fleet), cluster="asrtop-demo", audit=FakeAudit(), refresh=0.2, **kw)
    return app, injector


def messages(app):
    return [n.message for n in app._notifications]


async def started(pilot, app):
    await wait_for(pilot, lambda: app.refreshes >= 1 and app.fleet_screen.table.row_count > 0, what="first refresh")


async def test_inject_on_the_cursor_node_then_clear_from_the_palette():
    app, injector = make()
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        await run_from_palette(pilot, "gpu leak on sel")  # "leak on sel" ties with the process leak
        await wait_for(pilot, lambda: "node-1: gpu-leak on" in messages(app), what="leak notified")
        assert injector.sent == [("127.0.0.1:30001", "gpu-leak")]
        assert threading.main_thread().name not in injector.threads  # the UI never waited for the node
        await run_from_palette(pilot, "clear on sel")
        await wait_for(pilot, lambda: "node-1: no faults" in messages(app), what="clear notified")
        assert injector.sent[-1] == ("127.0.0.1:30001", "clear")


async def test_a_named_node_a_refusal_and_a_node_without_address_are_one_line_each():
    app, injector = make()
    async with app.run_test(size=(100, 30)) as pilot:
        await started(pilot, app)
        names = [h.text async for h in DemoFaultCommands(app.screen).search("slow node on node-2")]
        assert "Demo: slow node, 4x processing time on node-2" in names
        await run_from_palette(pilot, "slow node-2")
        await wait_for(pilot, lambda: any(m.startswith("node-2: no simulated node answered") for m in messages(app)),
                       what="refusal notified")
        app.send_fault(["node-3"], "gpu-leak")
        await wait_for(pilot, lambda: "node-3: no address in the cluster file to send a demo fault to" in messages(app),
                       what="no address")
        assert ("127.0.0.1:30003", "gpu-leak") not in injector.sent
        app.send_fault([n.name for n in app.snapshot.nodes], "clear")
        await wait_for(pilot, lambda: len([s for s in injector.sent if s[1] == "clear"]) == 2, what="clear all")


async def test_the_plain_console_and_a_read_only_demo_console_have_no_demo_commands():
    assert DemoFaultCommands not in AsrtopApp.COMMANDS and FleetCommands in DemoConsole.COMMANDS
    for app, _ in (make(AsrtopApp), make(read_only=True)):
        async with app.run_test(size=(100, 30)) as pilot:
            await started(pilot, app)
            assert [h async for h in DemoFaultCommands(app.screen).search("demo")] == []
            assert [h async for h in DemoFaultCommands(app.screen).discover()] == []
