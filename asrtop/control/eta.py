"""PURE: how long until a drained node is empty, from how its in-flight count has fallen so far.

No new request arrives after a drain, so the count only falls; the rate it fell at since its highest
reading (requests finishing per second) says how long the rest will take. Before it has fallen at all
there is no rate, and no estimate (None): unknown is not zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DrainEstimate:
    """Feed it (seconds, in-flight) readings; `eta` is the estimated seconds to empty, or None."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, at: float, in_flight: int | None) -> float | None:
        if in_flight is not None:
            self.samples.append((at, in_flight))
        return self.eta

    @property
    def eta(self) -> float | None:
        return estimate(self.samples)


def estimate(samples: list[tuple[float, int]]) -> float | None:
    """Seconds to empty: the count now over the rate it fell at since its peak; 0 when empty, None when it
    has not fallen yet (or rose: requests still arriving, e.g. a drain undone)."""
    if not samples:
        return None
    t_now, n_now = samples[-1]
    if n_now <= 0:
        return 0.0
    peak = max(n for _, n in samples)
    peak_at = max(t for t, n in samples if n == peak)  # the last time the highest count was seen
    if n_now >= peak or t_now <= peak_at:
        return None
    rate = (peak - n_now) / (t_now - peak_at)
    return n_now / rate
