"""The console's RolloutStarter (asrtop.control.seams): the rollout engine under the cluster file's [rollout]
settings, plus the one thing the console adds, starting `asrtop rollout --resume --json` DETACHED (its own
session, output to a log beside the audit log) so the rollout goes on when the console closes or its SSH
session drops. The console then only reads the state file, which the engine rewrites after every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol, Sequence

from asrtop.control.oplock import held
from asrtop.control.rollout_model import LOG_DIR, RolloutEvent, RolloutPlan, RolloutSettings, RolloutState, lock_file, state_path

LAUNCH_LOG = "console-run.log"  # <audit dir>/rollout-logs/<rollout id>/console-run.log
TAIL_BYTES = 8192  # the end of the log holds the rollout's last event


class RolloutEngineLike(Protocol):
    """What this module uses of asrtop.control.rollout.RolloutEngine."""

    async def plan(self, nodes: Sequence[str], settings: RolloutSettings) -> RolloutPlan: ...

    def create(self, plan: RolloutPlan) -> RolloutState: ...

    def current(self) -> RolloutState | None: ...


def launch_log(audit_path: str | Path, rollout_id: str) -> Path:
    return Path(audit_path).with_name(LOG_DIR) / rollout_id / LAUNCH_LOG


def resume_argv(config_path: str | Path | None) -> list[str]:
    config = ["--config", str(Path(config_path).resolve())] if config_path is not None else []
    return [sys.executable, "-m", "asrtop.cli", *config, "rollout", "--resume", "--json"]


def last_line(log: Path) -> str:
    """How the run ended: the message of its last "end" event (--json), else its last line of output."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError as e:
        return f"cannot read {log}: {e.strerror or e}"
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    ends = [e for e in events if e.get("kind") == "end" and e.get("message")]
    if ends:
        return str(ends[-1]["message"])
    if events:  # killed before its end: where it was
        return "it stopped before its end; last event: " + RolloutEvent.from_json(events[-1]).line()
    return lines[-1].strip() if lines else "no output"


class DetachedRollout:
    def __init__(self, engine: RolloutEngineLike, settings: RolloutSettings, config_path: str | Path | None,
                 audit_path: str | Path, settings_error: str | None = None):
        self.engine = engine
        self._settings = settings
        self.settings_error = settings_error  # the [rollout] table cannot be used as it is (one line)
        self.config_path = Path(config_path) if config_path is not None else None
        self.audit_path = Path(audit_path)
        self.state_file = state_path(audit_path)
        self._stamp: tuple[int, int, int] | None = None
        self._state: RolloutState | None = None
        self._proc: subprocess.Popen | None = None
        self._log: Path | None = None
        self.argv = resume_argv(config_path)  # what launch() starts (tests start something harmless)

    @property
    def settings(self) -> RolloutSettings:
        return self._settings

    async def plan(self, nodes: Sequence[str]) -> RolloutPlan:
        if self.settings_error:
            raise ValueError(self.settings_error)
        return await self.engine.plan(list(nodes), self._settings)

    def create(self, plan: RolloutPlan) -> RolloutState:
        return self.engine.create(plan)

    def launch(self, state: RolloutState) -> Path:
        log = launch_log(self.audit_path, state.id)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:  # the child keeps its own descriptor; ours closes here
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        self._log = log
        return log

    def current(self) -> RolloutState | None:
        """Parsed again only when the file changed (the engine replaces it atomically: a new inode)."""
        try:
            st = os.stat(self.state_file)
        except FileNotFoundError:
            self._stamp = self._state = None
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._state = self.engine.current()
            self._stamp = stamp
        return self._state

    def alive(self) -> bool:
        """The rollout lock is held: a flock test on one file, nothing parsed (rollout.holder also reads the
        state file to say who)."""
        return held(lock_file(self.audit_path))

    def finished(self) -> tuple[int, str] | None:
        if self._proc is None or self._proc.poll() is None or self._log is None:
            return None
        code, self._proc = self._proc.returncode, None
        return code, last_line(self._log)  # code < 0: killed by that signal
