"""Where fleet facts come from. Every source implements `FleetSource.snapshot()` -> FleetSnapshot."""

from __future__ import annotations

from typing import Protocol

from asrtop.fleet import FleetSnapshot


class FleetSource(Protocol):
    async def snapshot(self) -> FleetSnapshot: ...

    async def close(self) -> None: ...
