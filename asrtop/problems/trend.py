"""PURE maths for the trend rules: the recent samples of a history and least-squares fits over them.

Budget (issue 14): every rule over 1,000 nodes with 10 minutes of history in <= 10 ms of CPU per refresh.
So a window is read as a float32 slice of FleetHistory's rings (copied in C, NaN = unavailable), thinned to
at most MAX_POINTS evenly spaced samples (the newest always kept), and summed with C-level builtins; a
Python loop runs only over a window with gaps. Any other HistoryView (a history built from Prometheus for
`asrtop check`) is read through series()/timestamps() the slow, one-shot way.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from operator import mul
from typing import NamedTuple, Sequence

from asrtop.history import FleetHistory

NAN = float("nan")
MAX_POINTS = 30  # samples a fit reads per window: 1 in 4 at 1 s over 2 minutes
MIN_POINTS = 6  # fewer valid samples than this: no judgement
MIN_COVER = 0.5  # a window judged only once the history covers this share of it (no verdict on a fresh console)
LOAD_COLLINEAR = 0.9  # load and time this correlated (r**2): growth cannot be told from load


class Recent:
    """The samples of a history's last `seconds`, thinned to MAX_POINTS: times as seconds since the first."""

    def __init__(self, history, seconds: float):
        self.history = history
        fast = isinstance(history, FleetHistory)
        times = history.times_tail(len(history)) if fast else history.timestamps()
        self.total = len(times)
        first = bisect_left(times, times[-1] - seconds) if times else 0
        self.n = self.total - first  # samples in the window
        self.step = max(1, math.ceil(self.n / MAX_POINTS))
        self.offset = (self.n - 1) % self.step if self.n else 0  # so that the newest sample is kept
        self.times = times[first:]  # every sample's time in the window, oldest first
        picked = list(self.times)[self.offset::self.step]
        self.xs = [t - picked[0] for t in picked] if picked else []
        self.span = self.xs[-1] if self.xs else 0.0
        self.covered = self.span >= MIN_COVER * seconds
        self.sx = sum(self.xs)
        self.sxx = sum(map(mul, self.xs, self.xs))
        self._fast = fast
        self._read: dict[tuple[str, str], Sequence[float] | None] = {}  # values() already read (rules share)

    def values(self, node: str, metric: str) -> Sequence[float] | None:
        """The node's metric at the window's samples (NaN = unavailable); None when the history lacks it.
        The same sequence to every rule asking (read-only)."""
        key = (node, metric)
        got = self._read.get(key, self)
        if got is self:
            got = self._read[key] = (self.history.tail(node, metric, self.n, self.step) if self._fast
                                     else self._picked(self.history.series(node, metric)))
        return got

    def since(self, node: str, metric: str, after: float) -> tuple[Sequence[float], Sequence[float]]:
        """(times, values) of every sample in the window newer than `after`, unthinned (a crash loop's
        restarts are single samples); values NaN = unavailable, () when the history lacks the node."""
        k = len(self.times) - bisect_right(self.times, after)
        if k <= 0:
            return (), ()
        if self._fast:
            values = self.history.tail(node, metric, k)
            return self.times[-k:], values if values is not None else ()
        series = self.history.series(node, metric)
        if not series:
            return (), ()
        tail = [NAN if v is None else float(v) for v in series[-k:]]
        return self.times[-k:], [NAN] * (k - len(tail)) + tail

    def fleet(self, metric: str, nodes: Sequence[str]) -> Sequence[float]:
        """The metric summed over the fleet at the window's samples (NaN where no node reported it)."""
        if self._fast:
            return self.history.fleet_tail(metric, self.n, self.step)
        out = [NAN] * len(self.xs)
        for name in nodes:
            for i, v in enumerate(self._picked(self.history.series(name, metric)) or ()):
                if v == v:
                    out[i] = v if out[i] != out[i] else out[i] + v
        return out

    def _picked(self, series: list) -> list[float] | None:
        if not series:
            return None
        s = [NAN if v is None else float(v) for v in series[-self.n:]] if self.n else []
        s = [NAN] * (self.n - len(s)) + s  # a series shorter than the timestamps is aligned at the newest end
        return s[self.offset::self.step]


_shared: list = [None, -1, {}]  # the FleetHistory, its count when read, window seconds -> Recent


def recent(history, seconds: float) -> Recent:
    """Recent(history, seconds), one per window and per sample recorded in a FleetHistory: the rules of one
    evaluation with the same window (the three leaks; error-rate and slow-node) share it and the samples it
    read (the same nodes' load or request rate). Any other history: a new one each time."""
    if not isinstance(history, FleetHistory):
        return Recent(history, seconds)
    held = _shared
    if held[0] is not history or held[1] != history.count:
        held = [history, history.count, {}]
        _shared[:] = held
    r = held[2].get(seconds)
    if r is None:
        r = held[2][seconds] = Recent(history, seconds)
    return r


class Fit(NamedTuple):
    slope: float  # per second, net of the load when a load was given (what the load does not explain)
    raw_slope: float  # per second, plain
    load_rise: float  # the load's own fitted change over the span (0.0 without a load)
    confounded: bool  # the load rose with time: growth cannot be told from load
    span: float  # seconds between the first and the last valid sample
    last: float  # the newest valid value
    points: int


def valid_mean(ys: Sequence[float]) -> tuple[float, int]:
    """(mean, count) over the valid (non-NaN) values; (NaN, 0) when none."""
    s = sum(ys)
    if s == s:
        return (s / len(ys), len(ys)) if len(ys) else (NAN, 0)
    ok = [y for y in ys if y == y]
    return (sum(ok) / len(ok), len(ok)) if ok else (NAN, 0)


def fit(recent: Recent, ys: Sequence[float], loads: Sequence[float] | None = None) -> Fit | None:
    """Least squares of ys over time (and over the load, when given: the partial slope over time is growth
    the load does not explain). None with fewer than MIN_POINTS valid samples."""
    return fit_points(recent.xs, ys, loads, recent.sx, recent.sxx)


def halves(recent: Recent, ys: Sequence[float], loads: Sequence[float] | None = None) -> tuple:
    """The fits of the older and the newer half of the window (a steady growth grows in both)."""
    mid = len(recent.xs) // 2
    older = fit_points(recent.xs[:mid], ys[:mid], loads[:mid] if loads is not None else None)
    newer = fit_points(recent.xs[mid:], ys[mid:], loads[mid:] if loads is not None else None)
    return older, newer


def fit_points(xs: Sequence[float], ys: Sequence[float], loads: Sequence[float] | None = None,
               sx: float | None = None, sxx: float | None = None) -> Fit | None:
    if sx is None or sxx is None:
        sx, sxx = sum(xs), sum(map(mul, xs, xs))
    sy = sum(ys)
    sl = sum(loads) if loads is not None else 0.0
    if sy != sy or sl != sl:  # gaps: keep the samples where every series is known (rare; a Python loop)
        keep = [i for i, y in enumerate(ys) if y == y and (loads is None or loads[i] == loads[i])]
        xs = [xs[i] for i in keep]
        ys = [ys[i] for i in keep]
        loads = [loads[i] for i in keep] if loads is not None else None
        sx, sxx, sy = sum(xs), sum(map(mul, xs, xs)), sum(ys)
        sl = sum(loads) if loads is not None else 0.0
    n = len(ys)
    if n < MIN_POINTS:
        return None
    cxx = sxx - sx * sx / n
    if cxx <= 0:
        return None
    cxy = sum(map(mul, xs, ys)) - sx * sy / n
    raw = cxy / cxx
    slope, load_rise, confounded = raw, 0.0, False
    if loads is not None:
        cll = sum(map(mul, loads, loads)) - sl * sl / n
        if cll > 1e-9 * n:  # a load that moves: take out what it explains
            cxl = sum(map(mul, xs, loads)) - sx * sl / n
            cly = sum(map(mul, loads, ys)) - sl * sy / n
            load_rise = cxl / cxx * (xs[-1] - xs[0])
            r2 = cxl * cxl / (cxx * cll)
            if r2 > LOAD_COLLINEAR:
                confounded = cxl > 0
            else:
                slope = (cll * cxy - cxl * cly) / (cxx * cll - cxl * cxl)
    return Fit(slope, raw, load_rise, confounded, xs[-1] - xs[0], ys[-1], n)


def duration_words(seconds: float) -> str:
    """`45 s`, `2 min`, `1 h 5 min`, `3 d 4 h`: a span as a finding's text says it."""
    s = max(0, int(round(seconds)))
    if s < 90:
        return f"{s} s"
    m = int(round(s / 60))
    if m < 90:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"
