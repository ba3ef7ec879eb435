"""Actions out: the one home of the action model, its rules, the controller, the audit log and the lock.

    model.py       leaf: kinds, outcomes + exit codes, Action, Plan, BatchPlan, ActionResult
    rules.py       PURE: validation, guardrails (one node, a batch, the model guard), wording
    controller.py  the I/O: plan, apply to every balancer, read back, audit, wait drained
    recover.py     `asrtop recover`: finish or undo the changes the journal says were interrupted
    seams.py       the Protocols the console takes (ActionController, AuditReader, Recoverer)
    journal.py     the write-ahead intent journal of multi-step changes (+ its notes provider)
    audit.py       the audit log (typed entries, newest first)
    oplock.py      one action at a time per cluster
    signals.py     SIGINT/SIGTERM/SIGHUP held while a change is sent and audited
    drift.py       intent versus actual: servers that no longer show what asrtop set, and why (a reload, an
                   agent check, another tool); a notes provider for the fleet source
    rollout.py     `asrtop rollout` and the console's rollout: RolloutEngine (plan, create, run/resume, abort)
    rollout_stages.py  the stages (drain, wait, hook, health, canary, ready), each recorded before and after
    rollout_plan.py    PURE: order, batches, min_ready over a batch, target digest, refusals
    rollout_model.py   PURE: stages, plan, state file content, events, their wording
    rollout_store.py   the state file (atomic) and the rollout lock; who holds a rollout now (Holder)
    rollout_hook.py    the hook: argv template, no shell, own session, log, timeout
    rollout_canary.py  the canary stage's seam (canary.py sends it)
    eta.py         PURE: time to empty from the fall of the in-flight count (rollout wait, drain --wait)
"""

from asrtop.control.model import (
    ACTION_KINDS,
    Action,
    ActionResult,
    BalancerOutcome,
    BatchPlan,
    Plan,
    Refusal,
)

__all__ = ["ACTION_KINDS", "Action", "ActionResult", "BalancerOutcome", "BatchPlan", "Controller", "Plan", "Refusal"]


def __getattr__(name: str) -> object:
    """`Controller` is imported when first asked for: the leaf model (kinds, outcomes) stays cheap to import for
    the CLI's fast paths, which would otherwise load the controller's I/O stack just to read a kind."""
    if name == "Controller":
        from asrtop.control.controller import Controller

        return Controller
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
