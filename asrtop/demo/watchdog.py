"""Watchdog of the demo cluster (started by asrtop.demo.procs.Watchdog; stdlib only, starts fast).

    python -m asrtop.demo.watchdog WORKDIR

stdin carries "PID" (watch this process group) and "-PID" (reaped by the parent, forget it) lines. EOF
means the parent is gone or done: SIGTERM, then SIGKILL, every group still watched, and remove WORKDIR
(only if it carries the demo's marker file, so a wrong argument can never delete anything else).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

MARKER = ".asrtop-demo"


def _kill(pgids: set[int], sig: int) -> set[int]:
    alive = set()
    for g in pgids:
        try:
            os.killpg(g, sig)
            alive.add(g)
        except (ProcessLookupError, PermissionError):
            pass
    return alive


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    workdir = argv[0] if argv else None
    pgids: set[int] = set()
    for line in sys.stdin.buffer:
        word = line.strip()
        if word.startswith(b"-") and word[1:].isdigit():
            pgids.discard(int(word[1:]))
        elif word.isdigit():
            pgids.add(int(word))
    alive = _kill(pgids, signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = _kill(alive, 0)
    _kill(alive, signal.SIGKILL)
    if workdir and os.path.isfile(os.path.join(workdir, MARKER)):
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
