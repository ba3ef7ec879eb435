"""PURE request arithmetic over an agent's cumulative counters (its in-path proxy's `asr.requests`).

The agent counts every request it proxies, for ever; what an operator wants is how many finish per
second now, how many fail, and how long they take. Those are differences between two samples of the
counters divided by the time between them (the agent's `collected_at`, when it took the counters).

The span is a sliding window of recent samples, WINDOW_SECONDS long, not one poll: an ASR request lasts
seconds (the seed's nginx allows 300 s), so a node with a few slots finishes one now and then, and a
1-poll window reads 0, 1, 0, 2 req/s and blanks the latency on every quiet poll. Ten seconds is ten
polls at the default refresh: long enough to be steady, short enough that a node going bad shows within
the time an operator looks at the screen. No I/O here: AgentPoller keeps the windows.
"""

from __future__ import annotations

from asrtop.agentstatus import AgentStatus
from asrtop.fleet import REQUESTS_FROM_AGENT, REQUESTS_FROM_BALANCER, AgentTraffic, FleetSnapshot

WINDOW_SECONDS = 10.0
# `asrtop status` takes one snapshot: where only agents count requests it samples them once more, one agent
# collection interval later (capped: the command must stay quick), so their counters span some time.
SECOND_SAMPLE_MAX_WAIT = 2.0
_DEFAULT_AGENT_INTERVAL = 1.0  # asrtop-agent --interval default, for an agent that does not say

REQUESTS_SOURCE_WORDS = {  # said in `status` and the node detail: where a node's request figures come from
    REQUESTS_FROM_BALANCER: "counted by the balancer",
    REQUESTS_FROM_AGENT: "counted by the node's agent (the balancer counts no requests)",
}


# The agent's request counters as collected at a time (wall time): (at, finished requests of every status class,
# 5xx answers, latency summed over the finished requests in seconds or None, audio transcribed in seconds or None).
# A plain tuple, read by the indexes below: the windows keep one per poll for WINDOW_SECONDS (~11 a node at the
# default refresh, 11,000 at 1,000 nodes), and the cyclic collector stops tracking a tuple of numbers at its first
# look, never an instance of a NamedTuple class, which every later collection walks again.
CounterSample = tuple[float, int, int, "float | None", "float | None"]
AT, REQUESTS, ERRORS_5XX, LATENCY_SUM, AUDIO_SECONDS = range(5)


def counter_sample(status: AgentStatus) -> CounterSample | None:
    """The counters of one status; None when the agent counts no requests (no --proxy) or gave no time."""
    req = status.asr.requests
    if req is None or req.total is None or status.collected_at is None:
        return None
    return (status.collected_at, req.total, req.by_class.get("5xx", 0), req.latency_sum_seconds,
            req.audio_seconds_total)


def _went_back(old: float | None, new: float | None) -> bool:
    return old is not None and new is not None and new < old


def restarted(old: CounterSample, new: CounterSample) -> bool:
    """A counter went down or time went back: the agent restarted (or another one answers)."""
    return (new[AT] < old[AT] or new[REQUESTS] < old[REQUESTS] or new[ERRORS_5XX] < old[ERRORS_5XX]
            or _went_back(old[LATENCY_SUM], new[LATENCY_SUM]) or _went_back(old[AUDIO_SECONDS], new[AUDIO_SECONDS]))


def slide(window: tuple[CounterSample, ...], new: CounterSample | None,
          seconds: float = WINDOW_SECONDS) -> tuple[CounterSample, ...]:
    """The window after `new` arrived: oldest first, its first sample the newest one at least `seconds` older
    than `new` (so the span is about `seconds` once that much time has passed). A restart starts it anew."""
    if new is None:
        return ()
    if not window or restarted(window[-1], new):
        return (new,)
    if new[AT] == window[-1][AT]:
        return window  # no collection since the last poll: nothing new
    out = (*window, new)
    cut = new[AT] - seconds
    start = 0
    while start + 1 < len(out) - 1 and out[start + 1][AT] <= cut:
        start += 1
    return out[start:]


def counter_rate(old: float | None, new: float | None, seconds: float) -> float | None:
    """(new - old) / seconds; None when either is unknown, no time passed, or the counter went back."""
    if old is None or new is None or seconds <= 0 or new < old:
        return None
    return (new - old) / seconds


def traffic(window: tuple[CounterSample, ...]) -> AgentTraffic | None:
    """Rates over the window's span; None until two samples span time. Mean latency is the latency summed
    by the requests that finished in the window over their count: None (never 0) when none finished."""
    if len(window) < 2:
        return None
    old, new = window[0], window[-1]
    span = new[AT] - old[AT]
    if span <= 0 or restarted(old, new):
        return None
    done = new[REQUESTS] - old[REQUESTS]
    latency = None
    if done > 0 and old[LATENCY_SUM] is not None and new[LATENCY_SUM] is not None:
        latency = (new[LATENCY_SUM] - old[LATENCY_SUM]) / done
    return AgentTraffic(
        request_rate=done / span,
        errors_5xx_rate=(new[ERRORS_5XX] - old[ERRORS_5XX]) / span,
        response_seconds=latency,
        audio_rate=counter_rate(old[AUDIO_SECONDS], new[AUDIO_SECONDS], span),
        window_seconds=span,
    )


def second_sample_wait(snap: FleetSnapshot) -> float | None:
    """Seconds to wait before sampling the agents again so that a one-shot report has rates; None when no
    node needs it (a balancer counts its requests, it has rates already, or its agent counts nothing)."""
    intervals = [(v.status.interval_seconds if v.status is not None else None) or _DEFAULT_AGENT_INTERVAL
                 for v in snap.nodes if v.requests_source == REQUESTS_FROM_AGENT and v.request_rate is None]
    if not intervals:
        return None
    # the next collection lands within one interval of the first poll; a little more for collecting itself
    return min(SECOND_SAMPLE_MAX_WAIT, max(intervals) * 1.1 + 0.05)
