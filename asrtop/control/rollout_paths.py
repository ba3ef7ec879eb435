"""Where a rollout's files live, beside the audit log: its state, its lock, its hooks' logs.

Apart from asrtop.control.rollout_model (which re-exports these) so that `asrtop status` can see there is no
rollout without loading the rollout model.
"""

from __future__ import annotations

from pathlib import Path

STATE_FILE = "rollout.json"  # beside the audit log
LOCK_FILE = "rollout.lock"  # held (flock) by the process running the rollout, for its whole run
LOG_DIR = "rollout-logs"  # per-node hook output: <audit dir>/rollout-logs/<rollout id>/<node>.log


def state_path(audit_path: str | Path) -> Path:
    return Path(audit_path).with_name(STATE_FILE)


def lock_file(audit_path: str | Path) -> Path:
    return Path(audit_path).with_name(LOCK_FILE)


def hook_log(audit_path: str | Path, rollout_id: str, node: str) -> Path:
    return Path(audit_path).with_name(LOG_DIR) / rollout_id / f"{node}.log"
