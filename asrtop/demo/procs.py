"""Child processes of the demo cluster that cannot outlive it.

Three layers, because each covers a way the parent can go:
- normal exit, Ctrl+C, SIGTERM handled by the caller: `stop_all` (SIGTERM, short grace, SIGKILL, reap);
- the parent killed outright (SIGKILL, OOM): PR_SET_PDEATHSIG=SIGKILL in every child (Linux);
- and the same for what PDEATHSIG cannot do (a temp dir and unix socket left behind, a grandchild):
  a watchdog process that holds a pipe from the parent; EOF on it means the parent is gone, and it
  kills the recorded process groups and removes the temp dir. It is idempotent with `stop_all`.

Every child runs in its own session (own process group), so a terminal's Ctrl+C reaches only the
parent, which then stops the children in order.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Sequence

PR_SET_PDEATHSIG = 1


def _pdeathsig(parent_pid: int):
    """preexec_fn: SIGKILL this child when the thread that forked it dies (Linux only; a no-op elsewhere)."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            except (OSError, AttributeError):
                pass
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)

    return setup


def spawn(argv: Sequence[str], log: Path, env: dict | None = None, cwd: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start argv in its own session with PDEATHSIG, stdout+stderr to `log`.

    PDEATHSIG is tied to the forking *thread*: call this from a thread that lives as long as the cluster
    (the main thread in the CLI and in pytest)."""
    out = open(log, "ab", buffering=0)
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_pdeathsig(os.getpid()), env=env, cwd=cwd,
                                close_fds=True)
    finally:
        out.close()


def stop_all(procs: Sequence[subprocess.Popen], grace: float = 1.0) -> None:
    """SIGTERM every process group, wait up to `grace` s in total, SIGKILL the rest, reap all."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        _signal_group(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in live:
        if p.poll() is None:
            _signal_group(p.pid, signal.SIGKILL)
    for p in procs:
        try:
            p.wait(2.0)
        except subprocess.TimeoutExpired:
            pass
        # the group may hold a grandchild that outlived its leader
        _signal_group(p.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Watchdog:
    """The parent's end of the watchdog pipe: tell it each child's process group as it starts."""

    def __init__(self, workdir: Path, log: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asrtop.demo.watchdog", str(workdir)], stdin=subprocess.PIPE,
            stdout=open(log, "ab", buffering=0), stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        self._pipe: IO[bytes] | None = self.proc.stdin

    def watch(self, pid: int) -> None:
        if self._pipe is not None and self.proc.poll() is None:
            try:
                self._pipe.write(f"{pid}\n".encode())
                self._pipe.flush()
            except OSError:  # the watchdog died: the other two layers still hold
                self._pipe = None

    def forget(self, pid: int) -> None:
        """The parent reaped it: its pid may be reused, so the watchdog must never signal it."""
        self.watch(-pid)

    def close(self, timeout: float = 2.0) -> None:
        """Closing the pipe is the signal: the watchdog cleans (nothing left, normally) and exits."""
        if self._pipe is not None:
            try:
                self._pipe.close()
            except OSError:
                pass
            self._pipe = None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
