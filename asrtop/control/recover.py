"""`asrtop recover` and the console's "Recover interrupted changes": finish or undo every change the intent
journal (journal.py) says was interrupted, audit it, and mark it recovered.

For each interrupted action (one operation per balancer), under the action lock and with signals held:

    1. one audit line for the interruption (outcome "interrupted"), once: the journal then says "interrupted"
    2. each balancer finishes or undoes its operation from the journaled facts and what it shows now
       (asrtop.balancers.base.RecoversChanges; HAProxy: balancers/haproxy_recover.py), concurrently
    3. one audit line for the recovery (action "recover", value "completed"/"undone"), then the journal says
       "recovered" for each operation that succeeded; a failed one stays unfinished (rerun after fixing)

Completing the change is preferred (the journal holds the exact new `add server` line); it is undone only
when it had not deleted anything yet or HAProxy refuses the new line. A dry run reads, sends nothing and
writes nothing. Every step is idempotent: a recovery that is itself killed is simply run again.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Callable, Sequence

from asrtop.balancers.base import Balancer, BalancerError, BalancerUnreachable, RecoversChanges, RecoveryReport
from asrtop.config import ClusterConfig
from asrtop.control.audit import AuditError, AuditLog, AuditWriter, now_text, state_record, who
from asrtop.control.journal import AFTER, Journal, OpView, by_action, clock, interrupted_line, what
from asrtop.control.model import Outcome, RecoveryItem, RecoveryResult, exit_code_for
from asrtop.control.oplock import LockTimeout, action_lock, lock_path
from asrtop.control.signals import SignalHold


def stopped_words(op: OpView) -> str:
    step, at = op.stopped
    return f"{AFTER.get(step, 'after ' + step)} at {clock(at)}"


class Recovery:
    """Recover what the journal beside `audit` says was interrupted, on the cluster's balancers."""

    def __init__(self, config: ClusterConfig, balancers: Sequence[Balancer], audit: AuditWriter | None = None,
                 journal: Journal | None = None, read_only: bool = False):
        self.balancers = {b.name: b for b in balancers}
        self.audit: AuditWriter = audit if audit is not None else AuditLog(config.audit_log)
        self.journal = journal if journal is not None else Journal.beside(self.audit.path)
        self.read_only = read_only or config.read_only
        self.redeliver_signals = True  # False: the caller delivers RecoveryResult.signal
        self.on_lock_wait: Callable[[str], None] | None = None  # one line, when another action holds the lock

    async def pending(self) -> list[str]:
        """One line per interrupted action (what the notes say); [] when there is nothing to recover."""
        return [interrupted_line(g) for g in by_action(await asyncio.to_thread(self.journal.unfinished))]

    async def plan(self) -> RecoveryResult:
        return await self.run(dry_run=True)

    async def run(self, dry_run: bool = False) -> RecoveryResult:
        if self.read_only and not dry_run:
            return _result((), "refused", "refused: read-only mode, nothing recovered (started with --read-only or "
                                          "cluster.read_only = true)", dry_run)
        if dry_run:
            ops = await asyncio.to_thread(self.journal.unfinished)
            items = await asyncio.gather(*(self._one(op, True) for op in ops))
            return _summary(tuple(items), True)
        try:
            async with action_lock(lock_path(self.audit.path), on_wait=self.on_lock_wait) as locked:
                # a signal waits until every interrupted action is recovered and audited
                with SignalHold(self.redeliver_signals) as hold:
                    # under the lock no change is in progress: every unfinished operation was interrupted
                    ops = await asyncio.to_thread(self.journal.unfinished, locked)
                    items: list[RecoveryItem] = []
                    for group in by_action(ops):
                        items += await self._recover(group)
                    if locked:
                        await asyncio.to_thread(self.journal.compact)
                    return replace(_summary(tuple(items), False), signal=hold.pending)
        except LockTimeout as e:
            return _result((), "refused", f"refused: {e}", False)

    async def _recover(self, group: list[OpView]) -> list[RecoveryItem]:
        if not all(op.interruption_audited for op in group):
            self._append(_interrupted_record(group))
            for op in group:
                await asyncio.to_thread(self.journal.mark, op, "interrupted")
        items = list(await asyncio.gather(*(self._one(op, False) for op in group)))
        self._append(_recovery_record(group, items))
        for op, item in zip(group, items):
            if item.ok:
                await asyncio.to_thread(self.journal.mark, op, "recovered", result=item.result,
                                        commands=list(item.commands))
        return items

    async def _one(self, op: OpView, dry_run: bool) -> RecoveryItem:
        def item(result: str, **kw) -> RecoveryItem:
            return RecoveryItem(op.balancer, what(op), stopped_words(op), result, **kw)

        b = self.balancers.get(op.balancer)
        if b is None:
            return item("failed", error=f"balancer {op.balancer!r} is not in this cluster file", kind="missing")
        if not isinstance(b, RecoversChanges) or not op.planned:
            return item("failed", error="the journal has no intent record to recover from", kind="rejected")
        try:
            report: RecoveryReport = await asyncio.to_thread(b.recover, op.facts, dry_run)
        except BalancerUnreachable as e:
            return item("failed", error=_one_line(e, op.balancer), kind="unreachable")
        except BalancerError as e:
            return item("failed", error=_one_line(e, op.balancer), kind="rejected")
        except Exception as e:  # an adapter bug: said, never a traceback
            return item("failed", error=f"{type(e).__name__}: {_one_line(e, op.balancer)}", kind="rejected")
        return item(report.result, commands=report.lines, error=report.error and _one_line(report.error, op.balancer),
                    kind="rejected" if report.error else None, after=report.after)

    def _append(self, record: dict) -> None:
        try:
            self.audit.append(record)
        except AuditError:  # the recovery itself matters more; the journal still says what happened
            pass


def _one_line(e: BaseException | str, balancer: str) -> str:
    text = " ".join(str(e).split())
    return text[len(balancer) + 2:] if text.startswith(balancer + ": ") else text


def _base(group: Sequence[OpView]) -> dict:
    return {"time": now_text(), "user": who(), "node": group[0].node, "force": False, "forced": False,
            "dry_run": False, "operation": group[0].action}


def _interrupted_record(group: Sequence[OpView]) -> dict:
    f = group[0].facts
    by = f"{f.get('user', '?')}, pid {f.get('pid', '?')}"
    return {**_base(group), "action": f.get("kind"), "value": f.get("value"), "outcome": "interrupted",
            "message": f"interrupted: {what(group[0])} ({by}) stopped "
                       + ", ".join(f"on {op.balancer} {stopped_words(op)}" for op in group),
            "balancers": [{"name": op.balancer, "ok": False, "error": f"stopped {stopped_words(op)}",
                           "before": None, "after": None} for op in group]}


def _recovery_record(group: Sequence[OpView], items: Sequence[RecoveryItem]) -> dict:
    res = _summary(tuple(items), False)
    results = sorted({i.result for i in items if i.ok})
    return {**_base(group), "action": "recover", "value": "/".join(results) or None, "outcome": res.outcome,
            "message": f"recover {what(group[0])}: " + "; ".join(i.line() for i in items),
            "balancers": [{"name": i.balancer, "ok": i.ok, "error": i.error, "before": None,
                           "after": state_record(i.after)} for i in items]}


def _result(items: tuple[RecoveryItem, ...], outcome: Outcome, message: str, dry_run: bool) -> RecoveryResult:
    return RecoveryResult(items, outcome, message, exit_code_for(outcome), dry_run)


def _summary(items: tuple[RecoveryItem, ...], dry_run: bool) -> RecoveryResult:
    if not items:
        return _result(items, "dry-run" if dry_run else "done",
                       "nothing to recover: the intent journal has no interrupted change", dry_run)
    good, bad = [i for i in items if i.ok], [i for i in items if not i.ok]
    n = len(items)
    if dry_run:
        return _result(items, "dry-run", f"dry run, nothing changed: {n} interrupted operation(s) to recover",
                       dry_run)
    if not bad:
        return _result(items, "done", f"recovered {n} interrupted operation(s)", dry_run)
    why = "; ".join(f"{i.balancer}: {i.error}" for i in bad)
    if good:
        return _result(items, "partial", f"partial: recovered {len(good)} of {n} interrupted operation(s); "
                                         f"NOT {', '.join(i.balancer for i in bad)} ({why})", dry_run)
    kinds = {i.kind for i in bad}
    outcome: Outcome = ("unreachable" if kinds == {"unreachable"} else "bad-input" if kinds == {"missing"}
                        else "rejected")
    return _result(items, outcome, f"{outcome}: nothing recovered ({why})", dry_run)
