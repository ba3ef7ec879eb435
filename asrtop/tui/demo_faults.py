"""`asrtop demo` only: command palette entries that inject a fault on a simulated node, and clear it.

The console may not import the demo (asrtop.demo sits above asrtop.tui), so the faults and the HTTP call
come in as a DemoFaultInjector (asrtop.demo.fault.DemoFaults); `demo_console` binds one to the console
class that `asrtop demo` runs. A real cluster's console has none of these entries.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable, Protocol, Sequence

from textual.command import DiscoveryHit, Hit, Hits, Provider

from asrtop.tui.app import AsrtopApp

CLEAR = "clear"  # the fault id that puts a node back to normal


class DemoFaultInjector(Protocol):
    def faults(self) -> Sequence[tuple[str, str]]:
        """(fault id, what it does) for each fault the palette offers; CLEAR among them."""

    def inject(self, address: str, fault: str) -> tuple[bool, str]:
        """Send `fault` to the simulated node at `address` (blocking): (True, the node's faults now) or
        (False, one line why not)."""


class DemoFaultCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], object], str, bool]]:
        """(name, callback, help, discoverable): each fault on the cursor/selected nodes (listed when the
        palette opens), and on each node by name (found by typing)."""
        app = self.app
        fleet = getattr(app, "fleet_screen", None)
        if not isinstance(app, DemoConsole) or fleet is None or app.read_only:  # read-only changes nothing
            return []
        cmds = []
        for fault, words in app.demo_faults.faults():
            title = "Demo: clear faults" if fault == CLEAR else f"Demo: {words}"
            cmds.append((f"{title} on selected node(s)", partial(app.send_fault_to_targets, fault),
                         "the simulated node under the cursor, or the selected ones", True))
            if app.snapshot is not None:
                for n in app.snapshot.nodes[:64]:
                    cmds.append((f"{title} on {n.name}", partial(app.send_fault, [n.name], fault), words, False))
        if app.snapshot is not None:
            every = [n.name for n in app.snapshot.nodes]
            cmds.append(("Demo: clear faults on every node", partial(app.send_fault, every, CLEAR),
                         "every simulated node back to normal", True))
        return cmds

    async def discover(self) -> Hits:
        for name, cb, help, listed in self._commands():
            if listed:
                yield DiscoveryHit(name, cb, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, cb, help, _ in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), cb, help=help)


class DemoConsole(AsrtopApp):
    """The console of `asrtop demo`: the fleet console plus the demo fault palette."""

    COMMANDS = AsrtopApp.COMMANDS | {DemoFaultCommands}

    def __init__(self, *args: Any, demo_faults: DemoFaultInjector, **kw: Any):
        super().__init__(*args, **kw)
        self.demo_faults = demo_faults

    def send_fault_to_targets(self, fault: str) -> None:
        self.send_fault(self.fleet_screen.targets(), fault)

    def send_fault(self, nodes: Sequence[str], fault: str) -> None:
        """Send `fault` to each node in a worker (the UI never waits for a node), one notification per node."""
        if not nodes:
            self.notify("no node under the cursor", severity="warning")
            return
        for node in nodes:
            self.run_worker(self._send_fault(node, fault), group="demo-fault")

    async def _send_fault(self, node: str, fault: str) -> None:
        address = next((n.config.address for n in self.snapshot.nodes if n.name == node), None) \
            if self.snapshot is not None else None
        if address is None:
            self.notify(f"{node}: no address in the cluster file to send a demo fault to", severity="error")
            return
        ok, line = await asyncio.to_thread(self.demo_faults.inject, address, fault)
        if ok:
            self.refresh_now()
        self.notify(f"{node}: {line}", severity="information" if ok else "error", timeout=8)


def demo_console(faults: DemoFaultInjector) -> Callable[..., DemoConsole]:
    """What asrtop.tui.run.run_tui builds the app with in the demo (its `app_class`)."""
    return partial(DemoConsole, demo_faults=faults)
