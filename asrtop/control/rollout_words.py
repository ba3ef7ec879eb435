"""PURE: a rollout's state file in words, for whoever shows it (the console's progress panel; `asrtop status`
could too): the summary line, one row per node, and how to go on when it is not running. The stop message is
the engine's own (rollout_model.stop_lines, what `asrtop rollout` prints on exit 8), so both front ends say the same.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

from asrtop.control.rollout_model import (STAGE_WORDS, STAGES, NodeProgress, RolloutState, resume_or_abort, stop_lines,
                                          target_words)

# The console takes no hook on the keyboard: argv templates belong in the cluster file, reviewed.
NO_HOOK = ("no upgrade hook: set hook in the [rollout] table of the cluster file (an argv template, e.g. "
           "hook = \"ssh {host} sudo /opt/asr/upgrade.sh\"), then press U again")
INTERRUPTED = "interrupted"  # the state says running, but no process holds the rollout lock (killed, crashed)


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
    detail: str  # the engine's last line for it (in flight and estimate, why it failed), else the stage's words
    elapsed: str


def progress_rows(state: RolloutState, now: float, alive: bool | None = None) -> list[ProgressRow]:
    """One row per node, in the plan's order."""
    running = rollout_status(state, alive) == "running"
    rows = []
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
    stop = state.stopped or {}
    if status == "stopped" and stop.get("node"):
        status = f"stopped at {stop['node']} ({stop.get('stage') or '?'})"
    elif status == "stopped" and not state.nodes:
        status = "not started yet"
    end = now if state.status == "running" else state.updated_at
    since = time.strftime("%H:%M:%S", time.localtime(state.started_at))
    return (f"rollout {state.id} {status}: {nodes_done(state)} of {len(state.plan.nodes)} nodes done, target "
            f"{target_words(state.target or state.plan.target, state.plan.target_source)}; by {state.user} since "
            f"{since} ({duration_text(end - state.started_at)})")


def go_on_lines(state: RolloutState, alive: bool | None, config_path: Path | None) -> list[str]:
    """How to go on with a rollout that is not running: a stage that failed gets the engine's stop message
    (without its first line, which the summary and the node's row already say); an interrupted or not yet
    started one the commands to continue or end it. [] while it runs or once it ended."""
    status = rollout_status(state, alive)
    stop = state.stopped or {}
    if status == "stopped" and stop.get("node") and stop.get("stage") in STAGES:
        return [line.strip() for line in stop_lines(stop["node"], stop["stage"], stop.get("reason", ""),
                                                    config_path)[1:]]
    if status not in ("stopped", INTERRUPTED):
        return []
    why = ("no asrtop process runs it now (killed or crashed)" if status == INTERRUPTED
           else stop.get("reason") or "not running")
    return [f"{why}: {resume_or_abort(config_path)}"]


def status_lines(state: RolloutState | None, alive: bool | None, config_path: Path | None, now: float) -> list[str]:
    """`asrtop status`: a rollout running, stopped or interrupted, and how to go on; [] when there is none or it
    ended (done, aborted)."""
    if state is None or state.status not in ("running", "stopped"):
        return []
    return [summary_line(state, now, alive)] + go_on_lines(state, alive, config_path)


def status_json(state: RolloutState | None, alive: bool | None) -> dict | None:
    """`asrtop status --json`'s "rollout": the same facts as status_lines, None when there is none to show."""
    if state is None or state.status not in ("running", "stopped"):
        return None
    return {"id": state.id, "status": rollout_status(state, alive), "user": state.user,
            "started_at": state.started_at, "nodes": len(state.plan.nodes), "nodes_done": nodes_done(state),
            "target": state.target or state.plan.target, "stopped": dict(state.stopped) if state.stopped else None}
