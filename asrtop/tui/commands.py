"""Command palette (ctrl+p): every operator action on the selection/cursor node, sorting, views."""

from __future__ import annotations

from functools import partial
from typing import Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from asrtop.tui.format import COLUMNS

LABELS = {c.key: c.label for c in COLUMNS}

ACTION_HELP = {
    "drain": "stop new requests; in-flight ones finish (progress shows in the row)",
    "ready": "put back into rotation",
    "maint": "take out at once",
    "weight": "set the balancing weight",
    "backup": "toggle backup/primary",
}


class FleetCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        from asrtop.tui.screens.fleet import SORTABLE  # late: screens import this module's app

        app = self.app
        fleet = getattr(app, "fleet_screen", None)
        if fleet is None:
            return []
        cmds: list[tuple[str, Callable[[], object], str]] = []
        if not app.read_only:
            for kind, help in ACTION_HELP.items():
                cmds.append((f"{kind.capitalize()} selected node(s)", partial(fleet.act, kind), help))
            if app.rollout is not None:
                cmds.append(("Rolling upgrade (rollout)", fleet.action_rollout,
                             "the selected nodes, else every node: plan, confirm, progress (asrtop rollout)"))
            if app.recovery is not None:
                cmds.append(("Recover interrupted changes", app.start_recover,
                             "finish or undo what an interrupted asrtop left half-done (asrtop recover)"))
        for col in SORTABLE:  # named as the column's header reads
            cmds.append((f"Sort by {LABELS[col]}", partial(fleet.table.set_sort, col), "again to reverse"))
        cmds.append(("Config order", partial(fleet.table.set_sort, None, False), "unsorted"))
        cmds.append(("Filter nodes", fleet.action_filter, "by name, state or model digest prefix"))
        cmds.append(("Model view", app.open_models, "nodes grouped by model digest"))
        cmds.append(("Problems list", fleet.action_problems, "to the problems under the table and back (p)"))
        cmds.append(("Show keys", app.action_help, "every key binding"))
        if app.snapshot is not None:
            for n in app.snapshot.nodes[:500]:
                cmds.append((f"Open {n.name}", partial(app.open_detail, n.name), "node detail"))
        return cmds

    async def discover(self) -> Hits:
        for name, cb, help in self._commands():
            if not name.startswith("Open "):
                yield DiscoveryHit(name, cb, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, cb, help in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), cb, help=help)
