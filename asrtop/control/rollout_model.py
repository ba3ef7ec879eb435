"""PURE rollout model: stages, the plan, events and the state file's content. No I/O (rollout.py does it).

A rollout takes nodes out batch by batch (--max-unavailable), and for each node runs STAGES in order:

    drain -> wait (in flight to 0) -> hook (the operator's upgrade command) -> health (agent: ASR up, model
    hashed with the target digest) -> canary (one known clip straight to the node) -> ready (+ ramp)

The state (RolloutState) is written atomically beside the audit log after every stage; `asrtop rollout
--resume`, a reopened console and `asrtop status` read it. Events (RolloutEvent) are what the CLI prints
(one line each on a pipe, `--json` one object per line) and what the console's progress panel shows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, NamedTuple, get_args

from asrtop.control.model import Refusal

if TYPE_CHECKING:
    from asrtop.config import RolloutConfig

Stage = Literal["drain", "wait", "hook", "health", "canary", "ready"]
STAGES: tuple[str, ...] = get_args(Stage)
# How each stage reads in a line, a panel or a plan.
STAGE_WORDS: dict[str, str] = {"drain": "drain on every balancer", "wait": "wait until empty",
                               "hook": "run the hook", "health": "wait for the agent: ASR up, model digest",
                               "canary": "canary request", "ready": "ready on every balancer"}

NodeStatus = Literal["pending", "running", "ok", "failed"]  # a node's current stage's status; "ok" after ready = done
RolloutStatus = Literal["running", "stopped", "done", "aborted"]
ROLLOUT_STATUSES: tuple[str, ...] = get_args(RolloutStatus)
EventKind = Literal["plan", "start", "progress", "ok", "failed", "info", "end"]

TARGET_FROM_FLAG = "--expect-model"
TARGET_FROM_CONFIG = "cluster.model_sha256"
TARGET_FROM_FIRST = "the first node upgraded"  # no digest given: every later node must match the first one's

STATE_FILE = "rollout.json"  # beside the audit log
LOCK_FILE = "rollout.lock"  # held (flock) by the process running the rollout, for its whole run
LOG_DIR = "rollout-logs"  # per-node hook output: <audit dir>/rollout-logs/<rollout id>/<node>.log


def state_path(audit_path: str | Path) -> Path:
    return Path(audit_path).with_name(STATE_FILE)


def lock_file(audit_path: str | Path) -> Path:
    return Path(audit_path).with_name(LOCK_FILE)


def hook_log(audit_path: str | Path, rollout_id: str, node: str) -> Path:
    return Path(audit_path).with_name(LOG_DIR) / rollout_id / f"{node}.log"


@dataclass(frozen=True)
class RolloutSettings:
    """Everything a rollout was started with (kept in the state file, so --resume needs no flags)."""

    hook: tuple[str, ...]  # argv template: {node} {server} {address} {host} {agent}
    expect_model: str | None = None  # the target digest from --expect-model
    max_unavailable: int = 1
    canary: str | None = None  # WAV path; None: the clip asrtop ships (asrtop/control/canary.wav)
    canary_text: str | None = None  # reference transcript; None: the first node verified sets it
    canary_api: str = "openai"
    max_rtf: float = 1.0
    drain_timeout: float = 600.0
    hook_timeout: float = 600.0
    health_timeout: float = 120.0
    ramp: float = 0.0

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["hook"] = list(self.hook)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RolloutSettings":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["hook"] = tuple(known.get("hook") or ())
        return cls(**known)


@dataclass(frozen=True)
class PlannedNode:
    name: str
    backup: bool | None
    weight: int | None  # the weight it had before (ready restores it; the ramp climbs to it)
    in_flight: int | None
    digest: str | None  # the model digest it runs now
    address: str | None
    agent: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PlannedNode":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout would do: the nodes in order, the batches, the target, the capacity left, the hook.
    `refusals` non-empty: it would not start (bad input, min_ready over a batch, another rollout running)."""

    nodes: tuple[PlannedNode, ...]
    batches: tuple[tuple[str, ...], ...]
    settings: RolloutSettings
    target: str | None  # the digest every node must run after the hook; None: TARGET_FROM_FIRST
    target_source: str  # TARGET_FROM_FLAG | TARGET_FROM_CONFIG | TARGET_FROM_FIRST
    capacity: str = ""  # "while a batch is out, 2 of 3 primaries stay ready (min_ready 1)"
    notes: tuple[str, ...] = ()  # e.g. "nginx-a cannot ramp weights: node-2 gets weight 3 at once"
    refusals: tuple[Refusal, ...] = ()

    @property
    def refusal(self) -> str | None:
        return "; ".join(r.line for r in self.refusals) or None

    def lines(self) -> list[str]:
        """The plan as an operator reads it: the CLI's --dry-run and the console's confirmation."""
        raise NotImplementedError  # rollout engine helper: one wording for both front ends

    def as_json(self) -> dict[str, Any]:
        return {"nodes": [n.as_json() for n in self.nodes], "batches": [list(b) for b in self.batches],
                "settings": self.settings.as_json(), "target": self.target, "target_source": self.target_source,
                "capacity": self.capacity, "notes": list(self.notes)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RolloutPlan":
        return cls(tuple(PlannedNode.from_json(n) for n in d.get("nodes", [])),
                   tuple(tuple(b) for b in d.get("batches", [])), RolloutSettings.from_json(d.get("settings", {})),
                   d.get("target"), str(d.get("target_source", TARGET_FROM_FIRST)), str(d.get("capacity", "")),
                   tuple(d.get("notes", [])))


@dataclass(frozen=True)
class NodeProgress:
    """Where one node is: the last stage started and how it went."""

    stage: str | None = None  # None: not started
    status: str = "pending"  # NodeStatus
    detail: str = ""  # the last one-line message (why it failed, the in-flight count, the digest seen)
    started_at: float | None = None  # the node's first stage
    finished_at: float | None = None  # ready done (or failed)

    @property
    def done(self) -> bool:
        return self.stage == "ready" and self.status == "ok"


@dataclass(frozen=True)
class RolloutState:
    """The state file: written atomically after every stage; enough to resume after a crash."""

    id: str  # e.g. "20261201T051203Z-4f2a"
    user: str  # who started it (user@host)
    pid: int  # the process running it now (the lock tells whether it still runs)
    started_at: float
    updated_at: float
    status: str  # RolloutStatus
    plan: RolloutPlan
    nodes: Mapping[str, NodeProgress] = field(default_factory=dict)
    target: str | None = None  # the digest verified so far (the plan's, or the first node's)
    reference_text: str | None = None  # the canary transcript every node must give
    stopped: Mapping[str, str] | None = None  # {"node", "stage", "reason"} when status is "stopped"

    def progress(self, node: str) -> NodeProgress:
        return self.nodes.get(node, NodeProgress())

    def with_node(self, node: str, **changes: Any) -> "RolloutState":
        return replace(self, nodes={**self.nodes, node: replace(self.progress(node), **changes)})

    def as_json(self) -> dict[str, Any]:
        return {"schema": 1, "id": self.id, "user": self.user, "pid": self.pid, "started_at": self.started_at,
                "updated_at": self.updated_at, "status": self.status, "plan": self.plan.as_json(),
                "nodes": {n: asdict(p) for n, p in self.nodes.items()}, "target": self.target,
                "reference_text": self.reference_text, "stopped": dict(self.stopped) if self.stopped else None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RolloutState":
        return cls(str(d["id"]), str(d.get("user", "")), int(d.get("pid", 0)), float(d.get("started_at", 0)),
                   float(d.get("updated_at", 0)), str(d.get("status", "stopped")),
                   RolloutPlan.from_json(d.get("plan", {})),
                   {n: NodeProgress(**p) for n, p in (d.get("nodes") or {}).items()}, d.get("target"),
                   d.get("reference_text"), d.get("stopped"))


@dataclass(frozen=True)
class RolloutEvent:
    """One thing that happened: a stage started, progressed, passed or failed; the plan; the end."""

    at: float  # unix time
    rollout: str  # RolloutState.id
    kind: str  # EventKind
    node: str | None = None
    stage: str | None = None
    message: str = ""  # one line, the same in every front end
    in_flight: int | None = None  # wait: the node's in-flight figure
    oldest_seconds: float | None = None  # wait: the oldest in-flight request's age, when the agent knows it
    eta_seconds: float | None = None  # wait: estimated time to empty
    elapsed: float | None = None  # seconds since the stage (progress) or the rollout (end) started

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# -- What the CLI and the console both say about a rollout's state (one wording, here) -------------------------

NO_HOOK = ("no upgrade hook: set hook in the [rollout] table of the cluster file "
           "(an argv template, e.g. hook = \"ssh {host} sudo /opt/asr/upgrade.sh\")")
INTERRUPTED = "interrupted"  # the state says running, but no process holds the rollout lock (killed, crashed)


def settings_from_config(rollout: "RolloutConfig", **overrides: Any) -> RolloutSettings:
    """The cluster file's [rollout] table as settings; overrides (the CLI's flags) win where not None."""
    base: dict[str, Any] = {
        "hook": tuple(rollout.hook), "canary": str(rollout.canary) if rollout.canary else None,
        "canary_text": rollout.canary_text, "canary_api": rollout.canary_api, "max_rtf": rollout.max_rtf,
        "max_unavailable": rollout.max_unavailable, "drain_timeout": rollout.drain_timeout,
        "hook_timeout": rollout.hook_timeout, "health_timeout": rollout.health_timeout, "ramp": rollout.ramp}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return RolloutSettings(**base)


def duration_text(seconds: float | None) -> str:
    """'45s', '3m05s', '1h02m'; '' when unknown."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def node_elapsed(p: NodeProgress, now: float) -> float | None:
    """Seconds since the node's first stage, up to its end (or now while it is in progress)."""
    if p.started_at is None:
        return None
    return max(0.0, (p.finished_at if p.finished_at is not None else now) - p.started_at)


def rollout_status(state: RolloutState, alive: bool | None = None) -> str:
    """The state's status, or INTERRUPTED when it says running but `alive` (a process holds the lock) is False."""
    return INTERRUPTED if state.status == "running" and alive is False else state.status


class ProgressRow(NamedTuple):
    node: str
    stage: str  # the stage it is at ('' before its first)
    status: str  # pending | running | ok | failed | done (ready passed) | interrupted (its process is gone)
    detail: str  # the engine's last line for it (in flight + estimate, the reason it failed), else the stage's words
    elapsed: str


def progress_rows(state: RolloutState, now: float, alive: bool | None = None) -> list[ProgressRow]:
    """One row per node, in the plan's order."""
    rows = []
    running = rollout_status(state, alive) == "running"
    for node in state.plan.nodes:
        p = state.progress(node.name)
        status = "done" if p.done else INTERRUPTED if p.status == "running" and not running else p.status
        detail = p.detail or (STAGE_WORDS.get(p.stage or "", "") if p.status == "running" else "")
        rows.append(ProgressRow(node.name, p.stage or "", status, detail, duration_text(node_elapsed(p, now))))
    return rows


def nodes_done(state: RolloutState) -> int:
    return sum(1 for n in state.plan.nodes if state.progress(n.name).done)


def summary_line(state: RolloutState, now: float, alive: bool | None = None) -> str:
    """'rollout ID running: 1 of 4 nodes done, target 366146d0aa12 (cluster.model_sha256); by alice@bastion
    since 05:12:03 (1m12s)'."""
    status = rollout_status(state, alive)
    if status == "stopped" and state.stopped:
        status = f"stopped at {state.stopped.get('node', '?')} ({state.stopped.get('stage', '?')})"
    end = now if state.status == "running" else state.updated_at
    since = time.strftime("%H:%M:%S", time.localtime(state.started_at))
    target = state.target or state.plan.target
    where = f"{target[:12]} ({state.plan.target_source})" if target else TARGET_FROM_FIRST
    return (f"rollout {state.id} {status}: {nodes_done(state)} of {len(state.plan.nodes)} nodes done, "
            f"target {where}; by {state.user} since {since} ({duration_text(end - state.started_at)})")


def stop_lines(state: RolloutState, alive: bool | None = None, cli: str = "asrtop") -> list[str]:
    """Why it is not running, and the exact commands to go on: the CLI's exit-8 message and the console's panel.
    `cli`: how the operator calls asrtop (with --config FILE where the cluster file is not a default one)."""
    status = rollout_status(state, alive)
    if status == INTERRUPTED:
        return [f"no asrtop process runs it now (killed or crashed): `{cli} rollout --resume` continues it, "
                f"`{cli} rollout --abort` ends it"]
    if status != "stopped":
        return []
    if not state.stopped:  # created, not started yet (or stopped between nodes)
        return [f"not running: `{cli} rollout --resume` starts it, `{cli} rollout --abort` ends it"]
    node, stage = state.stopped.get("node", "?"), state.stopped.get("stage", "?")
    return [f"stopped at {node}, stage {stage}: {state.stopped.get('reason', '')}".rstrip(": "),
            f"retry the {stage}: `{cli} rollout --resume`",
            f"redo the upgrade of {node}: `{cli} rollout --resume --from hook`",
            f"put {node} back as it was: `{cli} ready {node}`, then `{cli} rollout --abort`"]
