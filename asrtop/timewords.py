"""PURE: how asrtop writes a time span and a time of day: the problems' one-line texts, stream ages, drain waits."""

from __future__ import annotations

from datetime import datetime, timezone


def span(seconds: float, seconds_below: float = 60) -> str:
    """'45 s', '12 min', '2 h 05 min', '3 d 4 h': the two largest units, never more. A span shorter than
    `seconds_below` keeps its seconds ('2 min 5 s')."""
    s = max(0, int(seconds))
    if 60 <= s < seconds_below:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def age_words(seconds: float | None) -> str:
    """A stream's age or a drain's wait: '45 s', '2 min 5 s' (a wait's first minutes tick in seconds), '12 min',
    '1 h 05 min'; '?' when unknown."""
    return "?" if seconds is None else span(seconds, seconds_below=600)


def short_span(seconds: float | None) -> str:
    """The same span for a narrow column: '45s', '3m', '1h05m', '2d'; '—' when unknown (a one-shot check)."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def clock(t: float) -> str:
    """'10:31:02 UTC' (the audit log's and the drift notes' time of day)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S UTC")


def since(t: float, now: float) -> str:
    """The time of day within the last day, else the date too: '10:31:02 UTC', '2026-11-30 10:31 UTC'."""
    return clock(t) if now - t < 86400 else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
