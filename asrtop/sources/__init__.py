"""Where fleet facts come from. Every source implements `FleetSource.snapshot()` -> FleetSnapshot."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from asrtop.agentstatus import AgentStatus
from asrtop.fleet import FleetSnapshot


class FleetSource(Protocol):
    async def snapshot(self) -> FleetSnapshot: ...

    async def model_files(self, agent_url: str) -> list[dict] | str:
        """One node's model file list (the agent's `/v1/model`), or a one-line reason it is unavailable."""
        ...

    async def agent_status(self, agent_url: str, timeout: float) -> AgentStatus | str:
        """One node's agent asked now, apart from the rounds, within `timeout` (the model guard's second look at
        a node whose agent missed the snapshot's round), or a one-line reason it gave no status."""
        ...

    async def close(self) -> None: ...


class FleetPoll(Protocol):
    """One poll's answers, the I/O done: `merge()` builds the snapshot from them (CPU only, no I/O, safe to run
    in a thread: the console runs it off its event loop)."""

    def merge(self) -> FleetSnapshot: ...


@runtime_checkable
class PollingFleetSource(Protocol):
    """A source (FleetSource) whose snapshot is a poll then a merge, offered apart: `snapshot()` is
    `(await poll()).merge()`. Only `poll` is checked (isinstance on a runtime protocol checks every method it
    names: a source written before FleetSource gained one was taken as not polling, and merged on the UI loop)."""

    async def poll(self) -> FleetPoll: ...
