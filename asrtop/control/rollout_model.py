"""PURE rollout model: stages, the plan, events and the state file's content. No I/O (rollout.py does it).

A rollout takes nodes out batch by batch (--max-unavailable), and for each node runs STAGES in order:

    drain -> wait (in flight to 0) -> hook (the operator's upgrade command) -> health (agent: ASR up, model
    hashed with the target digest) -> canary (one known clip straight to the node) -> ready (+ ramp)

The state (RolloutState) is written atomically beside the audit log after every stage; `asrtop rollout
--resume`, a reopened console and `asrtop status` read it. Events (RolloutEvent) are what the CLI prints
(one line each on a pipe, `--json` one object per line) and what the console's progress panel shows.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from asrtop.control import rollout_paths
from asrtop.control.model import Refusal

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

# Where a rollout's files live, here as before; defined in a light module of their own, which is all that
# `asrtop status` loads when there is no rollout.
STATE_FILE, LOCK_FILE, LOG_DIR = rollout_paths.STATE_FILE, rollout_paths.LOCK_FILE, rollout_paths.LOG_DIR
state_path, lock_file, hook_log = rollout_paths.state_path, rollout_paths.lock_file, rollout_paths.hook_log


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


def short(digest: str | None) -> str:
    return digest[:12] if digest else "unknown"


def target_words(target: str | None, source: str) -> str:
    """ "1a2b3c4d5e6f (--expect-model)" or what the first upgraded node will decide."""
    if target is None:
        return "whatever the first upgraded node reports; every later node must match it"
    return f"{short(target)} ({source})"


def node_facts(n: PlannedNode) -> str:
    """ "backup, weight 3, 0 in flight, model 1a2b3c4d5e6f" """
    parts = (["backup"] if n.backup else []) + [f"weight {n.weight if n.weight is not None else '?'}",
                                                 f"{'?' if n.in_flight is None else n.in_flight} in flight",
                                                 f"model {short(n.digest)}"]
    return ", ".join(parts)


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
        s = self.settings
        at_once = f"{s.max_unavailable} at a time" if s.max_unavailable > 1 else "one at a time"
        out = [f"rollout of {len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}, {at_once} "
               f"(--max-unavailable {s.max_unavailable}), in this order:"]
        width = max((len(n.name) for n in self.nodes), default=0)
        for i, n in enumerate(self.nodes, 1):
            out.append(f"  {i}. {n.name:<{width}}  {node_facts(n)}")
        if s.max_unavailable > 1:
            out.append("batches: " + "  ".join("[" + ", ".join(b) + "]" for b in self.batches))
        out.append(f"target model: {target_words(self.target, self.target_source)}")
        if self.capacity:
            out.append(f"capacity: {self.capacity}")
        out.append("per node: " + " -> ".join(STAGE_WORDS[st] for st in STAGES))
        out.append(f"hook: {shlex.join(s.hook) if s.hook else '(none)'}  (never run by a shell; output to "
                   f"{LOG_DIR}/ beside the audit log)")
        ref = repr(s.canary_text) if s.canary_text else "the first node verified sets it"
        out.append(f"canary: {s.canary or 'the clip asrtop ships'} ({s.canary_api} API) straight to the node, "
                   f"reference transcript: {ref}, real-time factor at most {s.max_rtf:g}")
        ramp = f", ramp {s.ramp:g} s" if s.ramp > 0 else ""
        out.append(f"timeouts: drain {s.drain_timeout:g} s, hook {s.hook_timeout:g} s, health "
                   f"{s.health_timeout:g} s{ramp}")
        out += [f"note: {n}" for n in self.notes]
        out += [r.line for r in self.refusals]
        return out

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
    hook_pid: int | None = None  # the hook running now (its process group): a resume waits for it to end

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
    exit_code: int | None = None  # the "end" event: the exit code the CLI returns

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RolloutEvent":
        """An event as `--json` wrote it (unknown keys ignored; a missing one takes its default)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**{"at": 0.0, "rollout": "", "kind": "", **known})

    def line(self) -> str:
        """One line for a log or a pipe: "node-3 hook: ok, 4.2 s" (the same wording in every front end)."""
        where = " ".join(p for p in (self.node, self.stage) if p)
        return f"{where}: {self.message}" if where else self.message


def seconds_words(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def progress_words(in_flight: int | None, elapsed: float | None, eta: float | None,
                   oldest: float | None = None) -> str:
    """The wait's figures: "4 in flight, 12 s, about 8 s left" (a rollout's wait and `drain --wait` alike)."""
    parts = [f"{'?' if in_flight is None else in_flight} in flight"]
    if oldest is not None:
        parts.append(f"oldest {seconds_words(oldest)}")
    if elapsed is not None:
        parts.append(f"waited {seconds_words(elapsed)}")
    if eta is not None and in_flight:
        parts.append(f"about {seconds_words(eta)} left")
    return ", ".join(parts)


def command(config_path: Path | None, rest: str) -> str:
    """An asrtop command line to copy: with --config when the cluster file has a path."""
    import shlex

    return f"asrtop --config {shlex.quote(str(config_path))} {rest}" if config_path else f"asrtop {rest}"


def resume_or_abort(config_path: Path | None) -> str:
    """How to go on with an unfinished rollout (the CLI's refusal and the console's panel say the same)."""
    return (f"continue it with `{command(config_path, 'rollout --resume')}` or end it with "
            f"`{command(config_path, 'rollout --abort')}`")


def stop_lines(node: str, stage: str, reason: str, config_path: Path | None) -> list[str]:
    """The stop message: node, stage, reason, then the exact commands to go on with."""
    redo = "drain" if STAGES.index(stage) < STAGES.index("hook") else "hook"
    return [f"rollout stopped at {node}, stage {stage}: {reason}",
            f"  {node} stays out of rotation; every other node is as the rollout left it",
            f"  retry the {stage} stage and go on:  {command(config_path, 'rollout --resume')}",
            f"  redo {node} from its {redo}:  {command(config_path, f'rollout --resume --from {redo}')}",
            f"  put {node} back as it was:  {command(config_path, f'ready {node}')} && "
            f"{command(config_path, 'rollout --abort')}"]
