"""systemd's `Restart=on-failure` for the demo's simulated nodes, so a crash loop looks as it does on a host.

A node process that exits on its own (a crash, a crash loop) is started again RESTART_SEC after it was seen
gone, on the same port and model dir, as often as it takes (no start limit: the demo wants the loop visible;
systemd's StartLimitBurst would give up after 5 starts in 10 s). The agent beside it sees a new pid each time.
A node stopped on purpose (DemoCluster.kill_node) is left down.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

RESTART_SEC = 1.0  # systemd's RestartSec
POLL = 0.1


class NodeRestarter:
    """A thread that watches `exited()` (indexes of nodes whose process ended and that should run) and calls
    `respawn(i)` once each has been down RESTART_SEC."""

    def __init__(self, exited: Callable[[], list[int]], respawn: Callable[[int], None],
                 restart_sec: float = RESTART_SEC, on_error: Callable[[str], None] | None = None):
        self.exited, self.respawn, self.restart_sec = exited, respawn, restart_sec
        self.on_error = on_error
        self._down_since: dict[int, float] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="asrtop-demo-restarter", daemon=True)

    def start(self) -> "NodeRestarter":
        self.thread.start()
        return self

    def stop(self) -> None:
        """No restart begins after this returns."""
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            now = time.monotonic()
            down = set(self.exited())
            self._down_since = {i: t for i, t in self._down_since.items() if i in down}
            for i in sorted(down):
                since = self._down_since.setdefault(i, now)
                if now - since >= self.restart_sec and not self._stop.is_set():
                    del self._down_since[i]
                    try:
                        self.respawn(i)
                    except Exception as e:  # a failed start is tried again after the next back-off
                        if self.on_error:
                            self.on_error(f"restart of node {i + 1} failed: {e}")
