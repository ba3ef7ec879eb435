"""PURE: what a drain says about live streams, worded once for `asrtop drain`, its --wait, and the console.

A stream (a FunASR WebSocket session) lasts as long as the call: minutes, often tens of minutes. A drain lets
it finish, so "drain and wait until empty" lasts as long as the longest live stream, and the operator must
read that before confirming. The figures come from the node's agent (NodeView.streams_open and
.oldest_stream_seconds); a node whose agent reports no streams gets no stream words at all (unknown is not 0).

How long until empty: no stream arrives after the drain, so the open count only falls; the rate it fell at
since its highest reading (streams ending per second) says how long the rest would take at that rate
(asrtop.control.eta.estimate). Until one stream has ended there is no rate and no estimate, and the words say
so with the oldest stream's age instead of making one up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from asrtop.control.eta import estimate
from asrtop.fleet import FleetSnapshot, NodeView
from asrtop.fleet_wording import plural
from asrtop.timewords import age_words, short_span


def streams_clause(node: NodeView) -> str | None:
    """ "node-3 carries 4 live streams, the oldest 12 min: the drain lasts until they end"; None when the node
    carries none or its agent reports no streams."""
    n = node.streams_open
    if not n:
        return None
    oldest = node.oldest_stream_seconds
    age = f", the oldest {age_words(oldest)}" if oldest is not None else ""
    they = "they end" if n > 1 else "it ends"
    return f"{node.name} carries {plural(n, 'live stream')}{age}: the drain lasts until {they}"


def empty_line(node: str) -> str:
    """A followed drain has ended: nothing in flight, no live stream (`drain --wait` and the console)."""
    return f"{node} is empty: safe to upgrade"


def open_streams(snap: FleetSnapshot, nodes: Iterable[str]) -> int | None:
    """Live streams on these nodes now (what a cutoff would cut if nothing ended); None when no agent of theirs
    reports streams (unknown, not 0). The console's drain dialog and `drain --cutoff` both announce it."""
    counts = [snap.node(n).streams_open for n in nodes if snap.has(n)]
    return sum(c for c in counts if c) if any(c is not None for c in counts) else None


def cutoff_clause(cutoff: float, open_now: int | None) -> str:
    """The drain's confirmation announces its cutoff: "streams still open after 120 s will be cut (4 open now)"."""
    now = "open now unknown: the agent reports no streams" if open_now is None else f"{open_now} open now"
    return f"streams still open after {cutoff:g} s will be cut ({now})"


def cutting_line(node: str, cutoff: float, streams: int | None, requests: int | None) -> str:
    """Said before anything is cut: "cutting 2 streams still open on node-3 after 120 s" (and the requests the
    balancer still counts beside them, which the cut ends too)."""
    what = plural(streams, "stream") if streams is not None else "the sessions"
    also = f" and {plural(requests, 'request')}" if requests else ""
    return f"cutting {what}{also} still open on {node} after {cutoff:g} s"


def cut_split(node: NodeView) -> tuple[int | None, int | None]:
    """(streams, other requests) a cut would end now: the agent's stream count, and what the balancers count
    beyond it (in flight includes the streams' sessions); streams None when the agent reports none."""
    streams, total = node.streams_open, node.in_flight
    if streams is None:
        return None, total
    return streams, None if total is None else max(0, total - streams)


NGINX_CUT = ("nginx cannot cut the streams of one server; a reload with worker_shutdown_timeout ends open "
             "connections on every server")


def cutoff_refusal(balancers: list[tuple[str, str, bool]]) -> str | None:
    """Why a cutoff cannot be honoured (balancers: (name, kind, can cut one server's sessions)); None: it can.
    "ngx: nginx cannot cut the streams of one server; ... (a cutoff works with HAProxy balancers only)" """
    cannot = [(name, kind) for name, kind, can in balancers if not can]
    if not cannot:
        return None
    names = ", ".join(name for name, _ in cannot)
    why = NGINX_CUT if all(kind == "nginx" for _, kind in cannot) else "it cannot end one server's sessions"
    return f"{names}: {why} (a cutoff works with HAProxy balancers only)"


@dataclass(frozen=True)
class DrainProgress:
    """One look at a draining node: what is left and the estimate to empty (DrainWatch.add makes them)."""

    node: str
    in_flight: int | None
    streams: int | None  # None: the agent reports no streams
    oldest_stream: float | None
    oldest_request: float | None
    waited: float
    eta: float | None  # seconds to empty at the rate it fell so far; None: no estimate
    streams_ended: int = 0  # streams that ended since the drain began (the estimate's basis)
    cut_in: float | None = None  # seconds until a cutoff ends what is still open

    @property
    def empty(self) -> bool:
        """Nothing in flight and no live stream (unknown in flight is never empty; unknown streams: the in-flight
        count decides, as before streams were known)."""
        return self.in_flight == 0 and not self.streams

    def eta_words(self) -> str:
        if self.empty:
            return ""
        if self.streams:
            if self.eta is None:
                oldest = (f" (the oldest is {age_words(self.oldest_stream)} old)" if self.oldest_stream is not None
                          else "")
                return f"no estimate until a stream ends{oldest}"
            return (f"about {age_words(self.eta)} left at the rate streams ended so far "
                    f"({self.streams_ended} in {age_words(self.waited)})")
        return f"about {age_words(self.eta)} left" if self.eta is not None else ""

    def line(self) -> str:
        """ "4 live streams (oldest 12 min), 0 requests in flight, waited 30 s, no estimate until a stream ends" """
        parts = []
        if self.streams is not None:
            oldest = (f" (oldest {age_words(self.oldest_stream)})" if self.streams and self.oldest_stream is not None
                      else "")
            parts.append(f"{plural(self.streams, 'live stream')}{oldest}")
        requests = "?" if self.in_flight is None else str(self._requests())
        in_flight = f"{requests} in flight" if self.streams is None else f"{requests} other in flight"
        if self.oldest_request is not None and self.streams is None:
            in_flight += f", oldest {age_words(self.oldest_request)}"
        parts += [in_flight, f"waited {age_words(self.waited)}"]
        if self.eta_words():
            parts.append(self.eta_words())
        if self.cut_in is not None and not self.empty:
            parts.append(f"cut in {age_words(self.cut_in)}")
        return ", ".join(parts)

    def short(self) -> str:
        """The console's header: "4 streams, oldest 12m, ~3m left" or "2 left"."""
        if self.streams:
            eta = f", ~{short_span(self.eta)} left" if self.eta is not None else ""
            cut = f", cut in {short_span(self.cut_in)}" if self.cut_in is not None else ""
            return f"{plural(self.streams, 'stream')}, oldest {short_span(self.oldest_stream)}{eta}{cut}"
        return f"{'?' if self.in_flight is None else self.in_flight} left"

    def _requests(self) -> int:
        """In flight beyond the streams (the balancers count a stream's session among them)."""
        assert self.in_flight is not None
        return self.in_flight if self.streams is None else max(0, self.in_flight - self.streams)


@dataclass
class DrainWatch:
    """Follows one drain: feed it the node at each look; it keeps the counts seen to estimate the time to empty.
    `cutoff`: seconds after the drain began when what is still open will be cut (None: never)."""

    node: str
    cutoff: float | None = None
    _streams: list[tuple[float, int]] = field(default_factory=list)
    _in_flight: list[tuple[float, int]] = field(default_factory=list)
    last: DrainProgress | None = None

    def add(self, waited: float, view: NodeView | None) -> DrainProgress:
        n = view.in_flight if view is not None else None
        streams = view.streams_open if view is not None else None
        if n is not None:
            self._in_flight.append((waited, n))
        if streams is not None:
            self._streams.append((waited, streams))
        if streams:
            eta = estimate(self._streams)
        else:
            eta = estimate(self._in_flight)
        peak = max((s for _, s in self._streams), default=0)
        self.last = DrainProgress(
            self.node, n, streams, view.oldest_stream_seconds if view is not None else None,
            view.oldest_in_flight_seconds if view is not None else None, waited, eta,
            max(0, peak - (streams or 0)),
            None if self.cutoff is None else max(0.0, self.cutoff - waited))
        return self.last
