"""The seams the console is built against (DESIGN rule 5): the real Controller and AuditLog implement them,
and so do the test fakes. Async throughout: the console awaits them in workers."""

from __future__ import annotations

from typing import Protocol, Sequence, overload

from asrtop.control.audit import AuditEntry
from asrtop.control.model import Action, ActionResult, BatchPlan, Plan, RecoveryResult


class ActionController(Protocol):
    @overload
    async def plan(self, action: Action, force: bool = False) -> Plan: ...

    @overload
    async def plan(self, action: Sequence[Action], force: bool = False) -> BatchPlan: ...

    async def plan(self, action: Action | Sequence[Action], force: bool = False) -> Plan | BatchPlan: ...

    async def apply(self, action: Action, force: bool = False, dry_run: bool = False) -> ActionResult: ...

    async def apply_batch(self, actions: Sequence[Action], force: bool = False) -> tuple[ActionResult, ...]: ...


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
