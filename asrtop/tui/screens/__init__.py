"""Screens: fleet (main), node detail, model view, confirmation and weight modals, help."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from asrtop.fleet import FleetSnapshot


@runtime_checkable
class ShowsFleet(Protocol):
    """A screen that redraws from each new snapshot (the app hands it every refresh once mounted)."""

    def show_fleet(self, snap: FleetSnapshot | None, error: str | None = None) -> None: ...
