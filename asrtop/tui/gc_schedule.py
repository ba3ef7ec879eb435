"""The console's full garbage collections, at the point of its refresh cycle where the least is alive.

Left to itself, Python runs a full (generation 2) collection when an allocation finds a quarter more objects
promoted since the last one. In the console that is every few seconds, and mostly in the refresh thread while
it builds the next snapshot: the UI's snapshot and the new one are both alive then, and the collection walks
them with the render caches, holding the GIL: 25-60 ms at 1,000 nodes, the longest the UI loop was blocked
(tests/benchmarks/bench_tui_end_to_end.py). Most of what the console allocates dies by reference counting; what
needs the collector is mostly Textual's cleared render caches (rings of linked lists).

So the console's process (run_tui) takes full collections over after its first refresh: the automatic ones are
turned off (generation 2's threshold set out of reach; the young generations are collected as before) and one
runs every FULL_EVERY refreshes, just before a poll starts, when the last refresh was applied and painted and
only the snapshot on screen is alive. Off in tests, which run many apps in one process: `take_over` and
`give_back` save and restore the thresholds.
"""

from __future__ import annotations

import gc

# Refreshes between full collections. At 1,000 nodes one finds 200-1,200 unreachable objects after 4 refreshes
# (bench_tui_end_to_end, gc.collect's count) but walks every live one (~36,000: 18-20 ms of CPU on a 2-core VM),
# so its cost is per run, not per garbage: every 15 refreshes it is ~1.3 ms of CPU a second instead of ~4.7, and
# the garbage waiting for it stays a few thousand objects (under a megabyte).
FULL_EVERY = 15
_OUT_OF_REACH = 1 << 30


class FullCollections:
    def __init__(self, every: int = FULL_EVERY):
        self.every = every
        self.saved: tuple[int, int, int] | None = None  # the thresholds before take_over; None: not taken over
        self.runs = 0  # full collections run here
        self._since = 0

    @property
    def active(self) -> bool:
        return self.saved is not None

    def take_over(self) -> None:
        if self.saved is None:
            self.saved = gc.get_threshold()
            gc.set_threshold(self.saved[0], self.saved[1], _OUT_OF_REACH)

    def give_back(self) -> None:
        if self.saved is not None:
            gc.set_threshold(*self.saved)
            self.saved = None

    def refreshed(self) -> bool:
        """Called once per refresh at the quiet point; runs a full collection when one is due (True)."""
        if self.saved is None:
            return False
        self._since += 1
        if self._since < self.every:
            return False
        self._since = 0
        gc.collect()
        self.runs += 1
        return True
