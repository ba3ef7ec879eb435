"""Where fleet facts come from. Every source implements `FleetSource.snapshot()` -> FleetSnapshot."""

from __future__ import annotations

from typing import Protocol

from asrtop.fleet import FleetSnapshot


class FleetSource(Protocol):
    async def snapshot(self) -> FleetSnapshot: ...

    async def model_files(self, agent_url: str) -> list[dict] | str:
        """One node's model file list (the agent's `/v1/model`), or a one-line reason it is unavailable."""
        ...

    async def close(self) -> None: ...
