"""PURE rules that need history: memory leaks, a slow node, errors, the fleet's queue, a crash loop.

Each per-node trend is judged once per PERIOD seconds, a slice of the fleet per refresh (a rotating cursor),
and its verdict re-found at every refresh until the next judgement: with 1,000 nodes a refresh judges ~33
of them (issue 14's budget: every rule, 1,000 nodes, 10 minutes of history, <= 10 ms CPU per refresh). A
one-shot evaluation (`asrtop check`, fresh memory) judges every node at once. Durations (raise/clear) are
the tracker's; see engine.py.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from operator import mul
from typing import Callable, Iterable

from asrtop.fleet import NodeView
from asrtop.history import ASR_DOWN
from asrtop.problems.engine import Rule, RuleContext
from asrtop.problems.model import Finding, Severity
from asrtop.problems.trend import Recent, duration_words, fit, halves, valid_mean
from asrtop.problems.trend import recent as shared_recent

PERIOD = 30.0  # seconds between two judgements of one node's trend (adds at most this to a time-to-raise)
MB = 1e6  # leak_min_mb_per_s and the texts count MB as 10**6 bytes
LEAK_CRITICAL_S = 600.0  # a leak that fills its memory within 10 minutes is critical, later a warning
LOAD_FLAT = 0.5  # the load's fitted change (requests in flight) over the window below which it is "flat"
RATE_WINDOW = 60.0  # seconds over which the 5xx share, a node's latency/RTF and the queue's growth are taken
ERROR_MIN_ANSWERS = 20.0  # answers in RATE_WINDOW below which a 5xx share means nothing
SLOW_MIN_NODES = 3  # judged nodes needed for a fleet median
QUEUE_MIN_RISE = 5.0  # requests the fleet's queue must have grown by over RATE_WINDOW


def _per_node(ctx: RuleContext, window: Callable[[RuleContext], float],
              judge: Callable[[Recent, NodeView, RuleContext], object], need_cover: bool = True
              ) -> dict[str, object]:
    """The current verdict of every node (judge's result; None = nothing to say), judging a slice per refresh.

    memory: "verdicts" name -> result, "cursor" the next node to judge, "at" the last evaluation's time."""
    mem = ctx.memory
    nodes = ctx.snapshot.nodes
    verdicts: dict = mem.setdefault("verdicts", {})
    if not nodes or ctx.history is None:
        return {}
    first = "at" not in mem
    elapsed = max(0.0, ctx.now - mem.get("at", ctx.now))
    mem["at"] = ctx.now
    count = len(nodes) if first else min(len(nodes), max(1, math.ceil(len(nodes) * elapsed / PERIOD)))
    recent = shared_recent(ctx.history, window(ctx))
    cursor = mem.get("cursor", 0) % len(nodes)
    for k in range(count):
        n = nodes[(cursor + k) % len(nodes)]
        verdicts[n.name] = judge(recent, n, ctx) if recent.covered or not need_cover else None
    mem["cursor"] = (cursor + count) % len(nodes)
    if len(verdicts) > len(nodes):  # nodes gone from the fleet
        names = {n.name for n in nodes}
        for name in [k for k in verdicts if k not in names]:
            del verdicts[name]
    return verdicts


def _findings(verdicts: dict) -> Iterable[Finding]:
    return (f for f in verdicts.values() if f is not None)


# --- memory leaks -------------------------------------------------------------------------------------------

def _fresh(n: NodeView):
    return None if n.stale else n.status


def _gpu_total(n: NodeView) -> float | None:
    st = _fresh(n)
    if st is None:
        return None
    total = sum(g.memory_total_bytes for g in st.gpus if g.memory_used_bytes is not None and g.memory_total_bytes)
    return float(total) or None


def _host(n: NodeView) -> tuple[float | None, float | None]:
    st = _fresh(n)
    if st is None or st.host.memory_total_bytes is None:
        return None, None
    used = st.host.memory_used_bytes
    return float(st.host.memory_total_bytes), None if used is None else float(used)


def _leak_rule(rule_id: str, title: str, metric: str, what: str, room: Callable[[NodeView, float], tuple],
               then: str, steady: bool = False) -> Rule:
    """A leak: memory rising by >= leak_min_mb_per_s over leak_window, net of what the node's load explains
    (the partial least-squares slope over time, the load being the agent's in-flight requests), and not while
    the load rises with it. CRITICAL when the memory is full within LEAK_CRITICAL_S at that rate, else
    WARNING. `room(node, last)` -> (bytes per unit of the metric, bytes left, what fills up). `steady`: the
    growth must hold in both halves of the window too (host memory: every process on the host shares it, and
    one that starts or loads something is a step, not a leak)."""

    def judge(recent: Recent, n: NodeView, ctx: RuleContext) -> Finding | None:
        ys = recent.values(n.name, metric)
        if ys is None:
            return None
        loads = recent.values(n.name, "load")
        if loads is not None and valid_mean(loads)[1] < len(loads) // 2:
            loads = None  # load mostly unknown: judge the memory alone rather than not at all
        f = fit(recent, ys, loads)
        if f is None or f.confounded:
            return None
        scale, left, full_what = room(n, f.last)
        if scale is None:
            return None
        least = ctx.settings.leak_min_mb_per_s * MB
        rate = f.slope * scale
        if rate < least:
            return None
        if steady and not all(h is not None and h.slope * scale >= least for h in halves(recent, ys, loads)):
            return None
        load = "while its load is flat" if abs(f.load_rise) < LOAD_FLAT else "beyond what its load explains"
        text = f"{what}: +{rate / MB:.0f} MB/s over {duration_words(f.span)} {load}"
        severity = Severity.WARNING
        if left is not None:
            eta = max(0.0, left) / rate
            text += f"; {full_what} full in {duration_words(eta)}"
            if eta <= LEAK_CRITICAL_S:
                severity = Severity.CRITICAL
        return Finding(rule_id, n.name, severity, text, f"asrtop drain {n.name}, then {then}")

    def find(ctx: RuleContext) -> Iterable[Finding]:
        return _findings(_per_node(ctx, lambda c: c.settings.leak_window, judge))

    return Rule(rule_id, title, find, raise_after=lambda s: s.leak_for, clear_after=lambda s: s.clear_after,
                needs_history=True)


def _gpu_room(n: NodeView, last: float) -> tuple:
    total = _gpu_total(n)
    return (None, None, "") if total is None else (total, total * (1.0 - last), "its GPU memory")


def _rss_room(n: NodeView, last: float) -> tuple:
    total, used = _host(n)
    return 1.0, None if total is None or used is None else total - used, "its host memory"


def _host_room(n: NodeView, last: float) -> tuple:
    total, _ = _host(n)
    return 1.0, None if total is None else total - last, "its memory"


GPU_MEMORY_LEAK = _leak_rule("gpu-memory-leak", "GPU memory leak", "gpu_mem", "leaks GPU memory", _gpu_room,
                             "restart its ASR service")
PROCESS_MEMORY_LEAK = _leak_rule("process-memory-leak", "ASR process memory leak", "rss_bytes",
                                 "leaks memory in its ASR process", _rss_room, "restart its ASR service")
HOST_MEMORY_LEAK = _leak_rule("host-memory-leak", "host memory leak", "host_mem_bytes", "leaks host memory",
                              _host_room, "find what grows on its host", steady=True)


# --- errors -------------------------------------------------------------------------------------------------

def _error_judge(recent: Recent, n: NodeView, ctx: RuleContext) -> Finding | None:
    """The 5xx share of the answers over RATE_WINDOW (needs ERROR_MIN_ANSWERS answers): >=
    error_ratio_critical CRITICAL, >= error_ratio_warning WARNING."""
    errs, reqs = recent.values(n.name, "err_rate"), recent.values(n.name, "req_rate")
    if errs is None or reqs is None:
        return None
    pairs = [(e, r) for e, r in zip(errs, reqs) if e == e and r == r] if sum(errs) != sum(errs) or \
        sum(reqs) != sum(reqs) else None
    e_sum, r_sum, count = (sum(errs), sum(reqs), len(reqs)) if pairs is None else \
        (sum(p[0] for p in pairs), sum(p[1] for p in pairs), len(pairs))
    if count < 2 or r_sum <= 0:
        return None
    answers = r_sum / count * recent.span
    share = min(1.0, e_sum / r_sum)
    s = ctx.settings
    if answers < ERROR_MIN_ANSWERS or share < s.error_ratio_warning:
        return None
    severity = Severity.CRITICAL if share >= s.error_ratio_critical else Severity.WARNING
    text = (f"answers {share:.0%} of requests with 5xx over the last {duration_words(recent.span)} "
            f"({share * answers:.0f} of {answers:.0f})")
    return Finding("error-rate", n.name, severity, text, f"asrtop drain {n.name}")


ERROR_RATE = Rule("error-rate", "5xx answers",
                  lambda ctx: _findings(_per_node(ctx, lambda c: RATE_WINDOW, _error_judge)),
                  raise_after=lambda s: s.errors_for, clear_after=lambda s: s.clear_after, needs_history=True)


# --- a slow node --------------------------------------------------------------------------------------------

def _speed(recent: Recent, n: NodeView, ctx: RuleContext) -> tuple[float, float | None, float] | None:
    """(mean latency, RTF or None, answers) over RATE_WINDOW, weighted by the answers; None: too few answers."""
    lat, req = recent.values(n.name, "response_s"), recent.values(n.name, "req_rate")
    if lat is None or req is None:
        return None
    aud = recent.values(n.name, "audio_rate")
    busy = sum(map(mul, lat, req))  # processing seconds per wall second, summed over the samples
    reqs, audio, count = sum(req), sum(aud) if aud is not None else math.nan, len(req)
    if busy != busy or reqs != reqs:  # gaps: the samples where latency and rate are both known
        rows = [(la, r, a) for la, r, a in zip(lat, req, aud or [math.nan] * len(lat)) if la == la and r == r]
        busy, reqs, count = sum(la * r for la, r, _ in rows), sum(r for _, r, _ in rows), len(rows)
        audio = sum(a for _, _, a in rows)
    if count < 2 or reqs <= 0:
        return None
    answers = reqs / count * recent.span
    if answers < ctx.settings.slow_min_requests:
        return None
    rtf = busy / audio if audio == audio and audio > 0 else None  # NaN: some sample lacks the audio figure
    return busy / reqs, rtf, answers


def _slow(ctx: RuleContext) -> Iterable[Finding]:
    """Latency (or, where every judged node knows its audio, the real-time factor: processing seconds per audio
    second, the same work whatever the clips' lengths) >= slow_factor x the fleet's median, with at least
    slow_min_requests answers in RATE_WINDOW and SLOW_MIN_NODES nodes judged. WARNING."""
    verdicts = _per_node(ctx, lambda c: RATE_WINDOW, _speed)
    named = [(k, v) for k, v in verdicts.items() if v is not None]
    if len(named) < SLOW_MIN_NODES:
        return
    rtfs = [v[1] for _, v in named]
    use_rtf = None not in rtfs
    figure = rtfs if use_rtf else [v[0] for _, v in named]
    median = statistics.median(figure)
    if median <= 0:
        return
    limit = ctx.settings.slow_factor * median
    for i in [i for i, value in enumerate(figure) if value >= limit]:  # the fleet's nodes, compared in one go
        (name, speed), value = named[i], figure[i]
        said = (f"RTF {value:.2f}, {value / median:.1f}x the fleet's median {median:.2f}" if use_rtf else
                f"answers in {value:.2f} s, {value / median:.1f}x the fleet's median {median:.2f} s")
        yield Finding("slow-node", name, Severity.WARNING,
                      f"is slow: {said} ({speed[2]:.0f} requests in {duration_words(RATE_WINDOW)})",
                      f"asrtop drain {name}")


SLOW_NODE = Rule("slow-node", "slow node", _slow, raise_after=lambda s: s.slow_for,
                 clear_after=lambda s: s.clear_after, needs_history=True)


# --- the fleet's queue --------------------------------------------------------------------------------------

def _queue(ctx: RuleContext) -> Iterable[Finding]:
    """The requests queued at the balancers, summed over the fleet, grew by >= QUEUE_MIN_RISE over RATE_WINDOW
    (least squares) and some are still queued. WARNING."""
    if ctx.history is None:
        return
    recent = shared_recent(ctx.history, RATE_WINDOW)
    if not recent.covered:
        return
    f = fit(recent, recent.fleet("queued", [n.name for n in ctx.snapshot.nodes]))
    if f is None or f.slope * f.span < QUEUE_MIN_RISE or f.last <= 0:
        return
    yield Finding("queue-growing", None, Severity.WARNING,
                  f"The fleet's queue grows: +{f.slope:.1f} requests/s over the last {duration_words(f.span)}, "
                  f"{f.last:.0f} queued now.")


QUEUE_GROWING = Rule("queue-growing", "the fleet's queue grows", _queue, raise_after=lambda s: s.queue_for,
                     clear_after=lambda s: s.clear_after, needs_history=True)


# --- a crash loop -------------------------------------------------------------------------------------------

def restarted(before: float, after: float) -> bool:
    """Two known asr_process readings (history.asr_process): another pid, or down -> up."""
    return (before > 0 and after > 0 and before != after) or (before == ASR_DOWN and after != ASR_DOWN)


def _crash_judge(recent: Recent, n: NodeView, ctx: RuleContext) -> Finding | None:
    """Reads the samples since this node's last judgement (every one: a restart may be a single sample) and
    keeps [last known reading, restart times, judged until] in ctx.memory["restarts"][node]."""
    s = ctx.settings
    state = ctx.memory.setdefault("restarts", {}).get(n.name)
    if state is None:
        state = ctx.memory["restarts"][n.name] = [None, deque(), ctx.now - s.crash_loop_window]
    times, values = recent.since(n.name, "asr_process", state[2])
    last, restarts = state[0], state[1]
    if last is None or values.count(last) != len(values):  # else one reading throughout (counted in C)
        for t, v in zip(times, values):
            if v == v:
                if last is not None and restarted(last, v):
                    restarts.append(t)
                last = v
    state[0], state[2] = last, max(state[2], times[-1] if len(times) else state[2])
    while restarts and restarts[0] < ctx.now - s.crash_loop_window:
        restarts.popleft()
    if len(restarts) < s.crash_loop_restarts:
        return None
    return Finding("crash-loop", n.name, Severity.CRITICAL,
                   f"crash-loops: its ASR process restarted {len(restarts)} times in the last "
                   f"{duration_words(s.crash_loop_window)}", f"asrtop drain {n.name}")


def _crash_loop(ctx: RuleContext) -> Iterable[Finding]:
    """The ASR process restarted (pid changed, or down -> up) >= crash_loop_restarts times within
    crash_loop_window. CRITICAL: it serves, dies and comes back. Judged from the history (so `check` with a
    Prometheus history judges it too)."""
    verdicts = _per_node(ctx, lambda c: c.settings.crash_loop_window, _crash_judge, need_cover=False)
    names = ctx.memory.get("restarts", {})
    if len(names) > len(verdicts):
        for name in [k for k in names if k not in verdicts]:
            del names[name]
    return _findings(verdicts)


CRASH_LOOP = Rule("crash-loop", "crash loop", _crash_loop, clear_after=lambda s: s.clear_after,
                  needs_history=True)

TREND_RULES: tuple[Rule, ...] = (GPU_MEMORY_LEAK, PROCESS_MEMORY_LEAK, HOST_MEMORY_LEAK, SLOW_NODE, ERROR_RATE,
                                 QUEUE_GROWING, CRASH_LOOP)
