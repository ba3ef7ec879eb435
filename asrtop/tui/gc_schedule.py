"""The console's full garbage collections, at the point of its refresh cycle where the least is alive.

Left to itself, Python runs a full (generation 2) collection when an allocation finds a quarter more objects
promoted since the last one. In the console that is every few seconds, and mostly in the refresh thread while
it builds the next snapshot: the UI's snapshot and the new one are both alive then, and the collection walks
them with the render caches, holding the GIL: 25-60 ms at 1,000 nodes, the longest the UI loop was blocked
(tests/benchmarks/bench_tui_end_to_end.py). Most of what the console allocates dies by reference counting.

So the console's process (run_tui) takes full collections over after its first refresh: the automatic ones are
turned off (generation 2's threshold set out of reach; the young generations are collected as before, generation
1 more often: GEN1_EVERY) and one runs every FULL_EVERY refreshes, just before a poll starts, when the last
refresh was applied and painted and only the snapshot on screen is alive. Off in tests, which run many apps in
one process: `take_over` and `give_back` save and restore the thresholds.

Refreshes leave next to nothing for a full collection. Textual's self-referring strips and cleared cache rings
were ~300 objects a refresh at 1,000 nodes; asrtop.tui.textual_internals removes both, and
tests/tui/test_textual_internals.py checks that 30 refreshes leave none of what a paint makes. Polling
the real demo cluster, 40 refreshes left 238 (Textual's restyling: the virtual nodes it builds for component
styles; finished workers): a few thousand objects by the next collection. A full collection at 1,000 nodes
walks ~35,000 live objects, a 15-35 ms block of the UI loop, whatever it finds. What leaves more is what the
operator opens and closes (a screen, a dialog): so one runs soon after a screen is closed (`soon`, from
AsrtopApp.pop_screen: the screen under it is repainted whole then anyway), and otherwise every FULL_EVERY
refreshes (5 minutes at the default 1 s).
"""

from __future__ import annotations

import gc

# Refreshes between full collections when no screen closed. Each walks every live object (~35,000 at 1,000 nodes:
# 15-35 ms of CPU on a 2-core VM) whatever it finds; refreshes alone leave nothing for it (see above).
FULL_EVERY = 300
# Generation 1 is collected every this many generation-0 collections (Python's default: 10). A refresh builds
# ~25,000 objects that live until the next one (the snapshot): each survives generation 0, and with 10 a
# generation-1 collection walked up to ~17,000 of them at once, 4-10 ms with the GIL held (p95 8.5 ms, max 10-12
# ms at 1,000 nodes), often inside a screen update; with 2 it walks a fifth of that (p95 2.5-3.9, max 5.5-7.3
# ms), and young collections cost less in all: 8-11 ms of CPU a refresh instead of 13-16 (5 alternated runs of
# 20 refreshes each, bench_tui_end_to_end's app, gc callbacks timing each collection).
GEN1_EVERY = 2
_OUT_OF_REACH = 1 << 30


def freeze_long_lived(collect: bool = True) -> None:
    """What is alive now out of the collector's sight for good (gc.freeze), collected once first unless the caller
    just did: the console's process after its first refresh (asrtop.tui.app_refresh), and the benchmarks that run
    as it does."""
    if collect:
        gc.collect()
    gc.freeze()


class FullCollections:
    def __init__(self, every: int | None = None):
        self.every = FULL_EVERY if every is None else every
        self.saved: tuple[int, int, int] | None = None  # the thresholds before take_over; None: not taken over
        self.runs = 0  # full collections run here
        self._since = 0

    @property
    def active(self) -> bool:
        return self.saved is not None

    def take_over(self) -> None:
        if self.saved is None:
            self.saved = gc.get_threshold()
            gc.set_threshold(self.saved[0], GEN1_EVERY, _OUT_OF_REACH)

    def give_back(self) -> None:
        if self.saved is not None:
            gc.set_threshold(*self.saved)
            self.saved = None

    def soon(self) -> None:
        """A full collection at the next quiet point (something the operator closed left its cycles)."""
        self._since = max(self._since, self.every - 1)

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
