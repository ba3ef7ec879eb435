"""asrtop.tui.gc_schedule: generation 2 is collected only when the console says so, every FULL_EVERY refreshes
or at the next one after `soon`; cyclic garbage that reached generation 2 waits for it and is then freed;
generation 1 is collected every GEN1_EVERY young collections; the thresholds come back."""

from __future__ import annotations

import gc
import weakref

from asrtop.tui.gc_schedule import GEN1_EVERY, FullCollections


class Node:
    pass


def old_cycle() -> weakref.ref:
    """A reference cycle that lived long enough to be promoted to generation 2, then became garbage."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect(1)  # survivors of a generation-1 collection go to generation 2
    return weakref.ref(a)


def test_old_cycles_wait_for_the_scheduled_collection_which_frees_them():
    before = gc.get_threshold()
    full = FullCollections(every=3)
    gen2 = []
    hook = lambda phase, info: gen2.append(1) if phase == "start" and info["generation"] == 2 else None  # noqa: E731
    gc.callbacks.append(hook)
    try:
        full.take_over()
        assert gc.get_threshold()[:2] == (before[0], GEN1_EVERY) and gc.get_threshold()[2] > 10**6
        dead = old_cycle()
        junk = [[Node()] for _ in range(200_000)]  # many young collections, and promotions to generation 2
        del junk
        assert dead() is not None and gen2 == []  # no full collection of the interpreter's own
        assert [full.refreshed(), full.refreshed()] == [False, False] and dead() is not None
        assert full.refreshed() is True and dead() is None and len(gen2) == 1 and full.runs == 1
    finally:
        gc.callbacks.remove(hook)
        full.give_back()
    assert gc.get_threshold() == before and not full.active


def test_not_taken_over_it_never_collects():
    full = FullCollections(every=1)
    assert full.refreshed() is False and full.runs == 0


def test_soon_runs_one_at_the_next_refresh_then_the_count_starts_again():
    before = gc.get_threshold()
    full = FullCollections(every=300)
    try:
        full.take_over()
        assert [full.refreshed() for _ in range(5)] == [False] * 5
        full.soon()
        assert full.refreshed() is True and full.runs == 1
        assert [full.refreshed() for _ in range(299)] == [False] * 299 and full.refreshed() is True
        full.soon()
        full.soon()  # asked twice before a refresh: still one
        assert [full.refreshed(), full.refreshed()] == [True, False] and full.runs == 3
    finally:
        full.give_back()
    assert gc.get_threshold() == before
