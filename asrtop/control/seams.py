"""The seams the console is built against (DESIGN rule 5): the real Controller and AuditLog implement them,
and so do the test fakes. Async throughout: the console awaits them in workers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence, overload, runtime_checkable

from asrtop.control.audit import AuditEntry
from asrtop.control.cutoff import CutResult
from asrtop.control.model import Action, ActionResult, BatchPlan, Plan, RecoveryResult
from asrtop.control.rollout_model import RolloutPlan, RolloutSettings, RolloutState


class ActionController(Protocol):
    @overload
    async def plan(self, action: Action, force: bool = False) -> Plan: ...

    @overload
    async def plan(self, action: Sequence[Action], force: bool = False) -> BatchPlan: ...

    async def plan(self, action: Action | Sequence[Action], force: bool = False) -> Plan | BatchPlan: ...

    async def apply(self, action: Action, force: bool = False, dry_run: bool = False) -> ActionResult: ...

    async def apply_batch(self, actions: Sequence[Action], force: bool = False) -> tuple[ActionResult, ...]: ...


@runtime_checkable
class CutsStreams(Protocol):
    """A controller that can end what is still open on a drained node (a drain's cutoff: asrtop.control.cutoff).
    The console offers a cutoff only with one, and only when cut_refusal() is None."""

    def cut_refusal(self) -> str | None: ...

    async def cut_open(self, node: str, after: float, say: Callable[[str], None]) -> CutResult: ...


class AuditReader(Protocol):
    async def recent(self, node: str | None = None, limit: int = 10) -> list[AuditEntry]:
        """The last `limit` entries, newest first (only `node`'s when given)."""
        ...


class Recoverer(Protocol):
    """Finish or undo the changes the intent journal says were interrupted (asrtop.control.recover.Recovery)."""

    async def pending(self) -> list[str]:
        """One line per interrupted action; [] when there is nothing to recover."""
        ...

    async def plan(self) -> RecoveryResult: ...

    async def run(self, dry_run: bool = False) -> RecoveryResult: ...


class RolloutStarter(Protocol):
    """What the console needs to start and follow a rollout: the engine (asrtop.control.rollout) under the
    [rollout] table's settings, and a launcher that runs `asrtop rollout --resume` detached from the console."""

    @property
    def settings(self) -> RolloutSettings:
        """The cluster file's [rollout] table (no hook: the console says to set one and plans nothing)."""
        ...

    @property
    def config_path(self) -> Path | None:
        """The cluster file: the commands the console shows to go on with a rollout name it (--config)."""
        ...

    async def plan(self, nodes: Sequence[str]) -> RolloutPlan:
        """What a rollout of `nodes` would do (all nodes when empty); changes nothing."""
        ...

    def create(self, plan: RolloutPlan) -> RolloutState:
        """Write the state file. Raises RolloutRefused (one line) when an unfinished rollout exists."""
        ...

    def launch(self, state: RolloutState) -> Path:
        """Start the process that runs it, detached (it outlives the console); returns its log. Raises OSError."""
        ...

    def current(self) -> RolloutState | None:
        """The state file now (None: none). Cheap: called on every refresh."""
        ...

    def alive(self) -> bool:
        """Whether a process holds the rollout lock now (a 'running' state without one was interrupted)."""
        ...

    def finished(self) -> tuple[int, str] | None:
        """Once, when the process this console launched has ended: its exit code and last line (the rollout's
        end, as the CLI words it); else None."""
        ...
