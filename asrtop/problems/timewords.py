"""PURE: how the problems rules write a time span and a time of day in their one-line texts."""

from __future__ import annotations

from datetime import datetime, timezone


def span(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min', '3 d 4 h': the two largest units, never more."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


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
