"""How fast this host runs pure Python right now, for benchmarks whose budgets are in milliseconds.

This 2-core VM's speed moves between runs minutes apart (by a quarter), and between sessions by 2-2.5x
(this loop took 13-16 ms in the fast phases, 34-39 ms in the slow ones): a benchmark prints it before
and after its runs so that its figures can be compared with those of another run."""

from __future__ import annotations

import time


def host_speed() -> float:
    """CPU seconds of a fixed pure-Python workload, best of 5 (lower is faster)."""
    def work() -> int:
        total = 0
        for i in range(300_000):
            total += i * i % 7
        return total

    best = float("inf")
    for _ in range(5):
        c = time.thread_time()
        work()
        best = min(best, time.thread_time() - c)
    return best


def host_speed_line(before: float, after: float) -> str:
    return (f"host speed (a fixed pure-Python loop, best of 5): {before * 1000:.1f} ms before, {after * 1000:.1f} ms "
            "after (lower is faster; compare runs by it)")
