"""Every operator action goes through here: to ALL configured balancers, read back, audited.

    ctl = Controller(config, balancers, source=fleet_source)   # audit defaults to config.audit_log
    plan = await ctl.plan(Action("drain", "node-3"))            # for a confirmation: consequence + changes
    batch = await ctl.plan([Action("drain", "n1"), Action("drain", "n2")])   # + the guardrail over all
    result = await ctl.apply(Action("drain", "node-3"))         # outcome, one-line message, exit_code
    await ctl.wait_drained("node-3", timeout=600, on_progress=cb)   # raises DrainUndone if it is undone

The rules (validation, guardrails, wording) are pure, in asrtop.control.rules; this module does the I/O.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Sequence, overload

from asrtop.balancers.base import (
    AddsPlanNotes,
    Balancer,
    BalancerError,
    BalancerUnreachable,
    NotPersisted,
    PausesAgentChecks,
    RecoversChanges,
    ReportsStartTime,
    ServerState,
    StepInterrupted,
    StepRecorder,
)
from asrtop.config import ClusterConfig
import asrtop.control.cutoff as cutoff
import asrtop.control.rules as rules
from asrtop.control.audit import AuditError, AuditLog, AuditWriter, record_for
from asrtop.control.drain_words import streams_clause
from asrtop.control.drift import ready_again, undone_line
from asrtop.control.journal import Journal, Operation, about, missing_line, pending_warning
from asrtop.control.model import (
    GUARD_INTERRUPTED,
    GUARD_READ_ONLY,
    STATE_ACTIONS,
    Action,
    ActionResult,
    BalancerOutcome,
    BatchPlan,
    Outcome,
    Plan,
    Refusal,
    exit_code_for,
)
from asrtop.control.oplock import LockTimeout, action_lock, lock_path
from asrtop.control.rollout_store import holder
from asrtop.control.signals import SignalHold
from asrtop.agentstatus import AgentStatus
from asrtop.fleet import AgentReading, FleetSnapshot, NodeView
from asrtop.modelfiles import diff_files
from asrtop.sources import FleetSource
from asrtop.sources.live import LiveFleetSource

ProgressCallback = Callable[[int | None, float], None]  # (in-flight now or None if unknown, seconds waited)
DRAIN_POLL_SECONDS = 0.5
MODEL_FILES_TIMEOUT = 3.0  # the model guard names the differing files when the agents answer this fast
# The model guard's second look at a node whose agent missed the snapshot's round (a round waits 0.8 x refresh)
SECOND_LOOK_TIMEOUT = 3.0
WARNED = "warned"  # _send: the change took, with a warning (NotPersisted)


@dataclass(frozen=True)
class _Target:
    """One balancer's part in an action: which server to change, or why it cannot be changed."""

    balancer: Balancer
    server: str | None = None  # ServerState.name on that balancer
    before: ServerState | None = None
    problem: str | None = None  # cannot change it: unreachable, refused the read, no such server
    problem_kind: str | None = None  # "unreachable" | "rejected" | "missing"
    noop: bool = False  # already in the wanted state
    agent: bool | None = None  # what set_state does to the agent check: False pauses, True resumes, None leaves it


@dataclass(frozen=True)
class _Prepared:
    plan: Plan
    targets: tuple[_Target, ...] = ()
    forced: bool = False  # force overrode a guardrail refusal


class Controller:
    """Actions across ALL configured balancers: plan, apply (concurrently), read back, audit, wait drained.

    `source` gives the snapshots plans are made from (default: the balancers alone, no agents); pass the
    agent-backed LiveFleetSource so `wait_drained` also follows the agent's in-flight count and the model
    guard can name the files that differ. `audit` defaults to an AuditLog at config.audit_log, `journal` (the
    intent journal of multi-step changes) to the one beside it. `read_only` (or config.read_only) refuses
    every action here, whatever the UI shows. SIGINT/SIGTERM/SIGHUP are held from sending to the audit line.
    """

    def __init__(self, config: ClusterConfig, balancers: Sequence[Balancer], source: FleetSource | None = None,
                 audit: AuditWriter | None = None, read_only: bool = False, journal: Journal | None = None):
        self.config = config
        self.balancers = list(balancers)
        self.source: FleetSource = source if source is not None else LiveFleetSource(config, None, self.balancers)
        self.audit: AuditWriter = audit if audit is not None else AuditLog(config.audit_log)
        self.journal = journal if journal is not None else Journal.beside(self.audit.path)
        self.read_only = read_only or config.read_only
        self.redeliver_signals = True  # False: the caller delivers ActionResult.signal (the CLI prints first)
        self.on_lock_wait: Callable[[str], None] | None = None  # one line, when another action holds the lock
        # one line, when the model guard asks slow agents once more (the console's modal says "checking" itself)
        self.on_second_look: Callable[[str], None] | None = None
        self.rollout_id: str | None = None  # set by the rollout engine: that rollout's own actions pass its hold

    # -- plan -----------------------------------------------------------------------------------------

    @overload
    async def plan(self, action: Action, force: bool = False) -> Plan: ...

    @overload
    async def plan(self, action: Sequence[Action], force: bool = False) -> BatchPlan: ...

    async def plan(self, action: Action | Sequence[Action], force: bool = False) -> Plan | BatchPlan:
        """What `apply` would do now; refusals set when it would refuse. Changes nothing, audits nothing.
        A list of actions gives a BatchPlan: each one's plan plus the guardrail over all of them at once."""
        if isinstance(action, Action):
            return (await self._prepare(action, force)).plan
        return await self._plan_batch(tuple(action), force)

    async def _plan_batch(self, actions: tuple[Action, ...], force: bool) -> BatchPlan:
        snap = await self.source.snapshot()
        if not self.read_only:  # each plan is refused at once: nothing to look at again
            snap = await self._second_look(snap, actions)
        plans = await asyncio.gather(*(self._prepare(a, force, snap) for a in actions))
        refused = None if force or self.read_only else rules.batch_refusal(snap, actions, self.config.min_ready)
        return BatchPlan(tuple(p.plan for p in plans), (refused,) if refused else (),
                         rules.together(snap, actions) if len(actions) > 1 else "")

    async def _prepare(self, action: Action, force: bool, snap: FleetSnapshot | None = None) -> _Prepared:
        def refuse(outcome: Outcome, why: str, targets: Sequence[_Target] = (), guard: str | None = None
                   ) -> _Prepared:
            return _Prepared(Plan(action, "", (Refusal(outcome, why, guard),)), tuple(targets))

        if self.read_only:
            return refuse("refused", f"refused: {rules.read_only_line(rules.describe(action))}", guard=GUARD_READ_ONLY)
        bad = rules.validate(action, self.balancers)
        if bad:
            return refuse("bad-input", bad)
        held = holder(self.audit.path)  # a running rollout holds the nodes it took out until it readies them
        if held is not None and action.node in held.nodes and held.id != self.rollout_id:
            return refuse("refused", f"refused: {rules.describe(action)}: {held.holds(action.node)}")
        snap = snap if snap is not None else await self._second_look(await self.source.snapshot(), (action,))
        failed = {r.name for r in snap.balancers if not r.reachable}
        # The snapshot keeps a failed read as text only: read those once more, typed, to classify them.
        retry = [b for b in self.balancers if b.name in failed]
        retried = dict(zip((b.name for b in retry), await asyncio.gather(*(_read_servers(b) for b in retry))))
        try:
            view = snap.node(action.node)
        except KeyError:
            view = None
        pending = about(self.journal.unfinished(), action.node)  # interrupted changes (asrtop recover)
        if view is None and retry and len(retry) == len(self.balancers) and \
                all(isinstance(r, Exception) for r in retried.values()):
            return refuse(*rules.unreadable([(n, _kind_of(e), rules.one_line(e, n))
                                             for n, e in retried.items() if isinstance(e, Exception)]))
        if view is None and pending:
            return refuse("bad-input", missing_line(pending, action.node))
        if view is None:
            return refuse("bad-input", rules.unknown_node(action.node, [n.name for n in snap.nodes]))
        targets: list[_Target] = []
        seen = {r.name: r.servers for r in snap.balancers}  # what each balancer has (for a missing server)
        for b in self.balancers:
            res = retried.get(b.name)
            if isinstance(res, Exception):
                targets.append(_Target(b, problem=rules.one_line(res, b.name), problem_kind=_kind_of(res)))
                continue
            server = view.servers.get(b.name)
            if server is None and isinstance(res, list):  # failed in the snapshot, read on the retry
                server, seen[b.name] = next((s for s in res if view.config.matches(s)), None), tuple(res)
            if server is None:
                gone = [g for g in pending if any(op.balancer == b.name for op in g)]
                targets.append(_Target(b, problem=rules.no_server(view.config, seen.get(b.name, ())) + (
                    f" ({missing_line(gone, action.node)})" if gone else ""), problem_kind="missing"))
                continue
            agent = _agent_change(b, server, action)
            targets.append(_Target(b, server.name, server, noop=rules.took(action, server, b.kind) and agent is None,
                                   agent=agent))
        if all(t.problem_kind == "missing" for t in targets) and pending:
            return refuse("bad-input", missing_line(pending, action.node), targets)
        if all(t.problem_kind == "missing" for t in targets):
            return refuse("bad-input", rules.on_no_balancer(view.config, [(b.name, seen.get(b.name, ()))
                                                                          for b in self.balancers]), targets)
        if all(t.problem is not None for t in targets):
            return refuse(*rules.unreadable([(t.balancer.name, t.problem_kind or "rejected", t.problem or "")
                                             for t in targets]), targets)
        changes = tuple(rules.change_line(action, t.balancer.name, t.balancer.kind, t.before, t.problem, t.noop,
                                          t.agent) for t in targets)
        guards = await self._guards(snap, action, force) + tuple(  # a half-done change: recover it first
            Refusal("refused", f"refused: {pending_warning(g)}", GUARD_INTERRUPTED, "to act anyway")
            for g in pending)
        warning = rules.model_warning(snap, action)
        # a drain of a node that carries live streams lasts until they end: said before it is confirmed
        streams = streams_clause(view) if action.kind == "drain" else None
        notes = await asyncio.gather(*(asyncio.to_thread(_plan_notes, t.balancer, t.before, action)
                                       for t in targets if t.problem is None and t.before is not None))
        plan = Plan(action, rules.consequence(snap, action), () if force else guards, changes,
                    ((streams,) if streams else ()) + ((warning,) if warning else ())
                    + tuple(pending_warning(g) for g in pending)
                    + tuple(n for found in notes for n in found), rules.node_line(snap, action))
        return _Prepared(plan, tuple(targets), forced=force and bool(guards))

    async def _second_look(self, snap: FleetSnapshot, actions: Sequence[Action]) -> FleetSnapshot:
        """The snapshot with the agents that gave no answer in its round asked once more (SECOND_LOOK_TIMEOUT),
        when an action would put its node in rotation: slow agents must not let a node on the wrong model past
        the model guard, neither its own (its digest unknown) nor the others' (the majority taken from the few
        that answered). With cluster.model_sha256 pinned only those nodes' own agents matter. A second miss
        stays unknown, with its reason, and the plan says so (rules.model_warning)."""
        going_in = [snap.node(a.node) for a in actions if rules.puts_in_rotation(a) and snap.has(a.node)]
        if not going_in:
            return snap
        missed = list({id(n): n for n in (going_in if snap.model_sha256 else snap.nodes)
                       if n.status is None and n.config.agent}.values())
        if not missed:
            return snap
        if self.on_second_look is not None:
            self.on_second_look(rules.second_look_line([n.name for n in missed], SECOND_LOOK_TIMEOUT))
        answers = await asyncio.gather(*(self.source.agent_status(n.config.agent or "", SECOND_LOOK_TIMEOUT)
                                         for n in missed))
        looked = {}
        for n, got in zip(missed, answers):
            url = n.config.agent or ""
            if isinstance(got, AgentStatus):
                looked[id(n)] = replace(n, agent=AgentReading(url, got, time.time()), stale=False)
            else:
                looked[id(n)] = replace(n, agent=AgentReading(url, None, None, got))
        return replace(snap, nodes=tuple(looked.get(id(n), n) for n in snap.nodes))

    async def _guards(self, snap: FleetSnapshot, action: Action, force: bool) -> tuple[Refusal, ...]:
        """The guardrails that refuse this action now (min_ready, the model guard); force overrides them."""
        out = []
        if rules.takes_out(action):
            r = rules.min_ready_refusal(snap, (action.node,), self.config.min_ready)
            if r:
                out.append(r)
        if rules.model_refusal(snap, action) is not None:
            files = None if force else await self._differing_files(snap, action.node)
            out.append(rules.model_refusal(snap, action, files))
        return tuple(r for r in out if r is not None)

    async def _differing_files(self, snap: FleetSnapshot, node: str) -> list | str | None:
        """The node's model files against a fresh target node's, when both agents answer in time."""
        mine = snap.node(node)
        ref = next((n for n in snap.nodes if n.model_digest == snap.target_digest and n.config.agent
                    and not n.stale), None)
        if mine.config.agent is None or ref is None:
            return None
        try:
            theirs, ours = await asyncio.wait_for(asyncio.gather(
                self.source.model_files(ref.config.agent), self.source.model_files(mine.config.agent)),
                MODEL_FILES_TIMEOUT)
        except asyncio.TimeoutError:
            return f"the agents did not list their files within {MODEL_FILES_TIMEOUT:g} s"
        if isinstance(theirs, str) or isinstance(ours, str):
            return theirs if isinstance(theirs, str) else ours
        return diff_files(theirs, ours)

    # -- apply ----------------------------------------------------------------------------------------

    async def apply(self, action: Action, force: bool = False, dry_run: bool = False) -> ActionResult:
        """Send to every balancer at once, read each back, audit; never raises for operator errors.

        Serialised with every other asrtop process sharing the audit log (asrtop.control.oplock), so two
        operators' conflicting actions cannot interleave per balancer and leave an HA pair disagreeing."""
        if dry_run or self.read_only:
            return await self._apply(action, force, dry_run)
        try:
            async with action_lock(lock_path(self.audit.path), on_wait=self.on_lock_wait) as locked:
                return await self._apply(action, force, dry_run, locked)
        except LockTimeout as e:
            return self._audited(ActionResult(action, "refused", f"refused: {e}", (), exit_code_for("refused")),
                                 force, dry_run)

    async def apply_batch(self, actions: Sequence[Action], force: bool = False) -> tuple[ActionResult, ...]:
        """Several actions, one after the other under one lock; refused together when the guardrail over all
        of them refuses (each one audited). Without that refusal each action still passes its own rules."""
        actions = tuple(actions)
        if self.read_only:
            return tuple([await self._apply(a, force, False) for a in actions])
        try:
            async with action_lock(lock_path(self.audit.path), on_wait=self.on_lock_wait) as locked:
                if not force:
                    together = rules.batch_refusal(await self.source.snapshot(), actions, self.config.min_ready)
                    if together is not None:
                        return tuple(self._audited(ActionResult(a, together.outcome, together.hinted(), (),
                                                                exit_code_for(together.outcome)), force, False)
                                     for a in actions)
                return tuple([await self._apply(a, force, False, locked) for a in actions])
        except LockTimeout as e:
            return tuple(self._audited(ActionResult(a, "refused", f"refused: {e}", (), exit_code_for("refused")),
                                       force, False) for a in actions)

    async def _apply(self, action: Action, force: bool, dry_run: bool, locked: bool = False) -> ActionResult:
        prep = await self._prepare(action, force)
        plan = prep.plan
        hold = SignalHold(self.redeliver_signals)  # from the first command sent to the audit line
        ops: list[Operation] = []  # the journal's operations of a multi-step change
        with nullcontext() if plan.refusals or dry_run else hold:
            if plan.refusals:
                outcome = plan.refusal_outcome or "refused"
                res = ActionResult(action, outcome, plan.refusal or "", _untouched(prep.targets, "not sent"),
                                   exit_code_for(outcome), plan)
            elif dry_run:
                msg = f"dry run, nothing changed: {rules.describe(action)}: {plan.consequence}"
                res = ActionResult(action, "dry-run", msg, _untouched(prep.targets, None), exit_code_for("dry-run"),
                                   plan)
            else:
                res = await self._execute(action, prep, hold, ops)
            if hold.pending is not None:
                res = rules.signalled(res, hold.pending, hold.name or "")
            if prep.forced:
                res = replace(res, forced=True, message=f"{res.message} (forced)")
            res = self._audited(res, force, dry_run)
            if ops:  # the journal: audited, then emptied when every operation in it is (a few small
                self.journal.audited(ops, locked)  # writes: no thread hop, measured cheaper inline)
            return res

    async def _execute(self, action: Action, prep: _Prepared, hold: SignalHold | None = None,
                       ops: list[Operation] | None = None) -> ActionResult:
        todo = [t for t in prep.targets if t.problem is None and not t.noop]
        journaled = action.kind == "backup" and ops is not None
        aid = self.journal.new_action_id() if journaled else None
        recorders = [self.journal.begin(action.kind, action.node, action.value, t.balancer.name, t.server or "",
                                        hold, aid) if journaled and isinstance(t.balancer, RecoversChanges) else None
                     for t in todo]
        if ops is not None:
            ops.extend(r for r in recorders if r is not None)
        sent = await asyncio.gather(*(_send(t.balancer, t.server or "", action, r) for t, r in zip(todo, recorders)))
        accepted = [t for t, err in zip(todo, sent) if err is None or err[0] == WARNED]
        back = dict(zip((t.balancer.name for t in accepted),
                        await asyncio.gather(*(_read_servers(t.balancer) for t in accepted))))
        outcomes: dict[str, BalancerOutcome] = {}
        kinds: dict[str, str] = {}  # changed | already | unreachable | rejected | missing | disagrees
        for t, err in zip(todo, sent):
            name = t.balancer.name
            if err is not None and err[0] != WARNED:
                kinds[name], outcomes[name] = err[0], BalancerOutcome(name, False, err[1], t.before)
                continue
            res = back[name]
            after = None if isinstance(res, Exception) else next((s for s in res if s.name == t.server), None)
            if isinstance(res, Exception):
                error = f"sent, but the read-back failed: {rules.one_line(res, name)}"
            elif after is None:
                error = f"sent, but the read-back has no server {t.server}"
            elif not rules.took(action, after, t.balancer.kind):
                error = f"sent, but the read-back shows {rules.field_of(action, after)}, not {rules.wanted(action)}"
            elif t.agent is not None and after.agent_enabled is not t.agent:
                error = f"sent, but the read-back shows the agent check {rules.agent_word(after.agent_enabled)}"
            else:
                error = None
            kinds[name] = "changed" if error is None else "disagrees"
            outcomes[name] = BalancerOutcome(name, error is None, error, t.before, after, err[1] if err else None)
        for t in prep.targets:
            name = t.balancer.name
            if name in outcomes:
                continue
            if t.noop:
                kinds[name], outcomes[name] = "already", BalancerOutcome(name, True, None, t.before, t.before)
            else:
                kinds[name] = t.problem_kind or "rejected"
                outcomes[name] = BalancerOutcome(name, False, t.problem, t.before)
        ordered = tuple(outcomes[b.name] for b in self.balancers)
        outcome, message = rules.summarize(action, ordered, kinds)
        return ActionResult(action, outcome, message, ordered, exit_code_for(outcome), prep.plan)

    def _audited(self, res: ActionResult, force: bool, dry_run: bool) -> ActionResult:
        try:
            self.audit.append(record_for(res, force=force, dry_run=dry_run))
        except AuditError as e:  # the balancers may have changed already: say so, never hide the result
            return replace(res, message=f"{res.message} (WARNING: {e})")
        return res

    # -- a drain's cutoff (asrtop.control.cutoff) ---------------------------------------------------------

    def cut_refusal(self) -> str | None:
        """Why a drain's cutoff cannot be honoured here (a balancer that cannot cut one server: nginx)."""
        return cutoff.refusal(self.balancers)

    async def cut_open(self, node: str, after: float, say: Callable[[str], None]) -> cutoff.CutResult:
        """End what is still open on the drained `node` through every balancer; `say` gets the announcement
        ("cutting 2 streams still open on node-3 after 120 s") before anything is sent. Audited."""
        if self.read_only:
            return cutoff.CutResult("refused", f"refused: {rules.read_only_line(f'cut {node}')}", None, None,
                                    exit_code_for("refused"))
        return await cutoff.cut_open(self, node, after, say)

    # -- wait until drained ---------------------------------------------------------------------------

    async def in_flight(self, node: str) -> int | None:
        """The node's in-flight figure (asrtop.fleet.NodeView.in_flight), None when unknown."""
        try:
            return (await self.source.snapshot()).node(node).in_flight
        except KeyError:
            return None

    async def wait_drained(self, node: str, timeout: float, on_progress: ProgressCallback | None = None,
                           interval: float = DRAIN_POLL_SECONDS,
                           on_oldest: Callable[[float | None], None] | None = None,
                           on_node: Callable[[NodeView | None, float], None] | None = None) -> bool:
        """True once `node` has nothing in flight and no live stream; False at `timeout` seconds. Polls every
        `interval`. Unknown in flight (None) never counts as empty; streams the agent does not report leave the
        in-flight count to decide. `on_oldest` gets the oldest in-flight request's age (None when no agent
        knows it); `on_node` the node's view and the seconds waited (streams and their ages: DrainWatch).
        Raises DrainUndone (one line: which balancer, who most likely)
        as soon as a balancer shows the node ready again: an agent check, a reload, another tool."""
        start, since = time.monotonic(), time.time()
        while True:
            snap = await self.source.snapshot()
            try:
                view = snap.node(node)
            except KeyError:
                view = None
            again = ready_again(view) if view is not None else None
            if again is not None:
                raise DrainUndone(await self._undone(node, *again, since))
            n = view.in_flight if view is not None else None
            waited = time.monotonic() - start
            if on_oldest is not None:  # before on_progress: a progress line can show it
                on_oldest(view.oldest_in_flight_seconds if view is not None else None)
            if on_node is not None:
                on_node(view, waited)
            if on_progress is not None:
                on_progress(n, waited)
            if n == 0 and not (view is not None and view.streams_open):
                return True
            if waited >= timeout:
                return False
            await asyncio.sleep(max(0.0, min(interval, timeout - waited)))

    async def _undone(self, node: str, balancer: str, server: ServerState, since: float) -> str:
        b = next((x for x in self.balancers if x.name == balancer), None)
        started = await asyncio.to_thread(b.started_at) if isinstance(b, ReportsStartTime) else None
        # Start_time_sec has 1 s resolution: only a start in a later second than the wait's counts (no false
        # "restarted" for a process that started just before the drain)
        restarted = started if started is not None and started >= since else None
        return undone_line(node, balancer, server, restarted)


class DrainUndone(Exception):
    """A drain that `wait_drained` followed was undone: str() is one line naming the balancer and the likely
    cause (`drain --wait` exits 6 with it: asrtop.exitcodes.DRAIN_UNDONE)."""


def _plan_notes(b: Balancer, server: ServerState, action: Action) -> list[str]:
    """What the balancer says about this change before it is made (AddsPlanNotes), "name: note" each."""
    if not isinstance(b, AddsPlanNotes):
        return []
    try:
        return [f"{b.name}: {n}" for n in b.plan_notes(server, action.kind, action.value)]
    except Exception as e:  # a note must never stop a plan
        return [f"{b.name}: cannot tell ({type(e).__name__}: {e})"]


def _agent_change(b: Balancer, server: ServerState, action: Action) -> bool | None:
    """What the action does to the server's agent check on this balancer (PausesAgentChecks)."""
    if action.kind not in STATE_ACTIONS or not isinstance(b, PausesAgentChecks):
        return None
    return b.agent_change(server, STATE_ACTIONS[action.kind])


def _kind_of(e: BaseException) -> str:
    return "unreachable" if isinstance(e, BalancerUnreachable) else "rejected"


def _untouched(targets: Sequence[_Target], why: str | None) -> tuple[BalancerOutcome, ...]:
    """Per-balancer lines of an action that sent nothing: refused (why given), or a dry run (ok = could go)."""
    return tuple(BalancerOutcome(t.balancer.name, why is None and t.problem is None, t.problem or why, t.before)
                 for t in targets)


async def _read_servers(b: Balancer) -> list[ServerState] | Exception:
    try:
        return await asyncio.to_thread(b.servers)
    except Exception as e:  # classified by the caller; an adapter bug is reported, not raised
        return e


def _call(b: Balancer, server: str, action: Action, recorder: StepRecorder | None = None) -> None:
    if action.kind in STATE_ACTIONS:
        b.set_state(server, STATE_ACTIONS[action.kind])
    elif action.kind == "weight":
        b.set_weight(server, int(action.value))  # type: ignore[arg-type]  (validated: an int)
    elif recorder is not None and isinstance(b, RecoversChanges):  # journaled, step by step
        b.set_backup(server, bool(action.value), recorder=recorder)
    else:
        b.set_backup(server, bool(action.value))


async def _send(b: Balancer, server: str, action: Action, recorder: StepRecorder | None = None
                ) -> tuple[str, str] | None:
    """None when the balancer accepted the change, else (unreachable|rejected|interrupted, one line), or
    (WARNED, one line) when it took the change but could not keep it across a reload."""
    try:
        await asyncio.to_thread(_call, b, server, action, recorder)
    except StepInterrupted as e:
        return "interrupted", rules.one_line(e, b.name)
    except NotPersisted as e:
        return WARNED, rules.one_line(e, b.name)
    except BalancerUnreachable as e:
        return "unreachable", rules.one_line(e, b.name)
    except BalancerError as e:  # refused, unsupported
        return "rejected", rules.one_line(e, b.name)
    except Exception as e:  # an adapter bug: report it by balancer, never a traceback
        return "rejected", f"{type(e).__name__}: {rules.one_line(e, b.name)}"
    return None
