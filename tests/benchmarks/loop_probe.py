"""How long something held an asyncio loop: a task on it sleeps `step` at a time, and how late it wakes is how long
something else held the loop (on a loaded host the lateness also counts the time the OS ran other processes)."""

from __future__ import annotations

import asyncio
import time


class LoopProbe:
    """Start it on the running loop; take() gives the longest lateness since the last take()."""

    def __init__(self, step: float = 0.002) -> None:
        self.step = step
        self.longest = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.step)
            self.longest = max(self.longest, time.perf_counter() - t - self.step)

    def take(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest

    def stop(self) -> None:
        self._task.cancel()
