"""The trend rules (asrtop.problems.rules_trend) on synthetic histories: each fires only after its duration,
clears only after its own, and a noisy series crossing a threshold raises once and clears once."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from hypothesis import given, settings as hsettings, strategies as st

from asrtop.agentstatus import parse_status
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig, ProblemsConfig
from asrtop.fleet import AgentReading, AgentTraffic, BalancerReading, merge
from asrtop.history import FleetHistory
from asrtop.problems import rules
from asrtop.problems.rules_trend import PERIOD
from asrtop.problems.trend import Recent, duration_words, fit, recent
from support.sources_synth import SynthNode

GIB = 2**30
DEFAULTS = ProblemsConfig()


@dataclass
class N:
    """One node's readings at a sample; the test changes them between samples."""

    gpu: float = 9 * GIB
    load: int = 2
    rss: float = 5 * GIB
    host: float = 21 * GIB
    latency: float = 0.5
    req: float = 10.0
    err: float = 0.0
    audio: float = 120.0
    pid: int = 4242
    up: bool = True
    queued: int | None = None


class Sim:
    """A few nodes sampled every second into a FleetHistory and a tracker over every rule."""

    def __init__(self, count: int = 4, settings: ProblemsConfig = DEFAULTS, history: int = 600):
        self.nodes = {f"node-{i}": N() for i in range(count)}
        self.cfgs = [NodeConfig(name, agent=f"http://127.0.0.1:1/{name}") for name in self.nodes]
        self.base = {c.name: parse_status(SynthNode(c.name, i).status_body()) for i, c in enumerate(self.cfgs)}
        self.history = FleetHistory(history)
        self.tracker = rules.tracker(settings)
        self.t = 1_000_000.0
        self.log: list[tuple[float, tuple]] = []  # (time, problem keys) after every sample

    def snapshot(self):
        readings, servers = {}, []
        for c in self.cfgs:
            v, b = self.nodes[c.name], self.base[c.name]
            gpu = replace(b.gpus[0], memory_used_bytes=int(v.gpu), memory_total_bytes=80 * GIB)
            asr = replace(b.asr, in_flight=v.load, process_rss_bytes=int(v.rss), pid=v.pid, up=v.up)
            st = replace(b, gpus=(gpu,), asr=asr, host=replace(b.host, memory_used_bytes=int(v.host),
                                                                memory_total_bytes=64 * GIB), collected_at=self.t)
            traffic = AgentTraffic(v.req, v.err, v.latency, v.audio, 10.0)
            readings[c.name] = AgentReading(c.agent, st, self.t, traffic=traffic)
            if v.queued is not None:
                servers.append(ServerState(c.name, "127.0.0.1", None, 1, False, AdminState.READY, Health.UP,
                                           0, v.queued))
        balancers = (BalancerReading("hx", "haproxy", tuple(servers), None, self.t),) if servers else ()
        return merge(self.cfgs, readings, balancers, self.t, 1.0)

    def step(self, seconds: int = 1, change=None):
        for _ in range(seconds):
            if change is not None:
                change(self)
            s = self.snapshot()
            self.history.record(s)
            problems = self.tracker.update(s, self.history)
            self.log.append((self.t, problems))
            self.t += 1.0
        return self.log[-1][1]

    def first(self, rule: str, node: str | None = None, raised: bool = True):
        """The first time (since the log began) when the rule's problem is raised (or, raised=False, gone)."""
        for t, problems in self.log:
            if any(p.rule == rule and p.node == node for p in problems) == raised:
                return t
        return None

    def raised(self, rule: str):
        return [p for p in self.log[-1][1] if p.rule == rule]


def leak(node: str, per_s: float, attr: str = "gpu"):
    def change(sim: Sim):
        v = sim.nodes[node]
        setattr(v, attr, getattr(v, attr) + per_s)
    return change


def test_gpu_leak_raised_after_leak_for_with_figures_and_cleared_after_clear_after():
    sim = Sim()
    sim.step(200)
    assert sim.raised("gpu-memory-leak") == []
    start = sim.t
    sim.step(150, leak("node-0", 50e6))
    [p] = sim.raised("gpu-memory-leak")
    assert p.node == "node-0" and p.raised_at - p.since >= DEFAULTS.leak_for  # not before its duration
    assert p.raised_at - p.since <= DEFAULTS.leak_for + 1  # and at once after it
    assert p.raised_at - start <= 90  # issue 14's budget at default settings
    assert p.text.startswith("leaks GPU memory: +50 MB/s over 2 min while its load is flat; its GPU memory full in")
    assert p.action == "asrtop drain node-0, then restart its ASR service"
    stopped = sim.t
    sim.step(400)  # the leak stops (restarted service would drop it; flat memory is enough)
    gone = next(t for t, ps in sim.log if t >= stopped and not any(q.rule == "gpu-memory-leak" for q in ps))
    last_true = max(t for t, ps in sim.log if any(q.rule == "gpu-memory-leak" for q in ps))
    assert gone - stopped >= DEFAULTS.clear_after and sim.raised("gpu-memory-leak") == []
    assert gone == last_true + 1


def test_memory_that_follows_load_is_no_leak():
    """The demo's GPU memory: 1.5 GiB per request in flight. Load rising for minutes is not a leak."""
    sim = Sim()

    def ramp(s: Sim):
        for v in s.nodes.values():
            v.load = min(40, int((s.t - 1_000_000) / 15))
            v.gpu = 6 * GIB + 1.5 * GIB * v.load
    sim.step(600, ramp)
    assert all(p.rule != "gpu-memory-leak" for _, ps in sim.log for p in ps)


def test_leak_severity_critical_when_full_within_ten_minutes():
    sim = Sim(count=3)
    sim.nodes["node-1"].gpu = 78 * GIB  # 2 GiB left: full in under a minute at 50 MB/s
    sim.step(130)
    sim.step(120, leak("node-1", 50e6))
    [p] = sim.raised("gpu-memory-leak")
    assert p.severity.word == "CRITICAL" and "full in" in p.text


def test_process_and_host_memory_leaks():
    sim = Sim(count=3)
    sim.step(130)
    sim.step(130, lambda s: (leak("node-2", 20e6, "rss")(s), leak("node-1", 20e6, "host")(s)))
    [rss] = sim.raised("process-memory-leak")
    [host] = sim.raised("host-memory-leak")
    assert rss.node == "node-2" and rss.text.startswith("leaks memory in its ASR process: +20 MB/s")
    assert "its host memory full in" in rss.text
    assert host.node == "node-1" and host.text.startswith("leaks host memory: +20 MB/s")
    assert host.action == "asrtop drain node-1, then find what grows on its host"


def test_error_rate_warning_then_critical_after_errors_for():
    sim = Sim()
    sim.step(70)
    start = sim.t
    sim.step(70, lambda s: setattr(s.nodes["node-3"], "err", 1.0))  # 10% of 10 answers/s
    [p] = sim.raised("error-rate")
    assert p.severity.word == "WARNING" and p.raised_at - p.since >= DEFAULTS.errors_for
    assert p.since - start <= PERIOD + 30  # seen within a judgement period once the share passes 5%
    assert p.text.startswith("answers 10% of requests with 5xx over the last 60 s")
    sim.step(90, lambda s: setattr(s.nodes["node-3"], "err", 5.0))
    [p] = sim.raised("error-rate")
    assert p.severity.word == "CRITICAL"  # severity follows; the problem is the same (not re-raised)
    assert sim.first("error-rate", "node-3") < p.raised_at + 1
    sim.step(200, lambda s: setattr(s.nodes["node-3"], "err", 0.0))
    assert sim.raised("error-rate") == []


def test_error_rate_needs_enough_answers():
    sim = Sim()
    sim.step(200, lambda s: (setattr(s.nodes["node-0"], "req", 0.2), setattr(s.nodes["node-0"], "err", 0.2)))
    assert sim.raised("error-rate") == []  # 12 answers in a minute: too few to judge


def test_slow_node_by_real_time_factor():
    sim = Sim(count=5)
    sim.step(70)
    sim.step(120, lambda s: setattr(s.nodes["node-2"], "latency", 2.0))  # 4x the others' 0.5 s
    [p] = sim.raised("slow-node")
    assert p.node == "node-2" and p.raised_at - p.since >= DEFAULTS.slow_for
    assert p.text.startswith("is slow: RTF 0.17, 4.0x the fleet's median 0.04")
    sim.step(150, lambda s: setattr(s.nodes["node-2"], "latency", 0.5))
    assert sim.raised("slow-node") == []


def test_slow_node_same_work_is_not_slow():
    """Longer clips take longer: latency 4x the median with 4x the audio per request is the same RTF."""
    sim = Sim(count=5)
    sim.step(200, lambda s: (setattr(s.nodes["node-2"], "latency", 2.0),
                             setattr(s.nodes["node-2"], "audio", 480)))
    assert sim.raised("slow-node") == []


def test_queue_growing():
    sim = Sim(count=3)
    for v in sim.nodes.values():
        v.queued = 0
    sim.step(70)
    sim.step(130, lambda s: setattr(s.nodes["node-0"], "queued", int((s.t - 1_000_070) / 4)))
    [p] = sim.raised("queue-growing")
    assert p.node is None and p.raised_at - p.since >= DEFAULTS.queue_for
    assert p.text.startswith("The fleet's queue grows: +0.2 requests/s over the last 60 s")


def test_crash_loop_counts_restarts_in_window():
    sim = Sim(count=2)
    sim.step(30)
    for k in range(3):
        sim.step(1, lambda s: setattr(s.nodes["node-1"], "up", False))
        sim.step(20, lambda s: (setattr(s.nodes["node-1"], "up", True), setattr(s.nodes["node-1"], "pid", 5000 + k)))
        if k < 2:
            assert sim.raised("crash-loop") == []
    sim.step(int(PERIOD))
    [p] = sim.raised("crash-loop")
    assert p.node == "node-1" and p.severity.word == "CRITICAL"
    assert p.text == "crash-loops: its ASR process restarted 3 times in the last 10 min"
    sim.step(600)  # the restarts age out of crash_loop_window
    assert sim.raised("crash-loop") == []


def test_rules_with_one_window_share_its_samples_until_the_next_sample():
    sim = Sim(count=1)
    sim.step(10)
    shared = recent(sim.history, 60.0)
    assert recent(sim.history, 60.0) is shared and recent(sim.history, 120.0) is not shared
    assert shared.values("node-0", "load") is shared.values("node-0", "load")  # read once for every rule
    sim.step(1)
    newer = recent(sim.history, 60.0)
    assert newer is not shared and newer.n == shared.n + 1  # a new sample: a new window
    assert recent(FleetHistory(600), 60.0) is not newer  # another history


def test_crash_loop_from_history_in_one_shot():
    """`check` with a history (Prometheus): the restarts are read from it, no earlier evaluations needed."""
    sim = Sim(count=2)
    sim.step(10)
    for pid in (10, 11, 12):
        sim.step(5, lambda s: setattr(s.nodes["node-0"], "pid", pid))
    one = rules.check(sim.snapshot(), sim.history, DEFAULTS)
    assert [(p.rule, p.node) for p in one.problems] == [("crash-loop", "node-0")]
    assert {r.id for r in rules.check(sim.snapshot(), None, DEFAULTS).not_evaluated} >= {
        "gpu-memory-leak", "crash-loop", "slow-node", "error-rate", "queue-growing"}


def test_no_verdict_on_a_short_history():
    sim = Sim()
    sim.step(50, leak("node-0", 500e6))  # under half of leak_window covered: no judgement yet
    assert sim.raised("gpu-memory-leak") == []


def test_settings_reach_the_rules_with_min_ready():
    s = rules.RuleSettings(DEFAULTS, min_ready=3)
    assert s.min_ready == 3 and s.leak_window == DEFAULTS.leak_window
    assert rules.tracker(DEFAULTS, 2).settings.min_ready == 2


def test_generic_history_view_gives_the_same_fit():
    """A HistoryView that is not a FleetHistory (series/timestamps only, as from Prometheus) fits the same."""
    sim = Sim(count=2)
    sim.step(200, leak("node-0", 30e6))

    class Plain:
        def series(self, node, metric):
            return sim.history.series(node, metric)

        def timestamps(self):
            return sim.history.timestamps()

    fast, slow = Recent(sim.history, 120), Recent(Plain(), 120)
    a = fit(fast, fast.values("node-0", "gpu_mem"), fast.values("node-0", "load"))
    b = fit(slow, slow.values("node-0", "gpu_mem"), slow.values("node-0", "load"))
    assert a.slope == b.slope and a.slope * 80 * GIB > 29e6


def test_gaps_are_skipped_not_zero():
    sim = Sim(count=1)
    sim.step(150, leak("node-0", 30e6))
    r = Recent(sim.history, 120)
    ys = list(r.values("node-0", "gpu_mem"))
    ys[3] = ys[10] = float("nan")
    f = fit(r, ys, None)
    assert f.points == len(ys) - 2 and 29e6 < f.slope * 80 * GIB < 31e6


def test_duration_words():
    assert [duration_words(s) for s in (5, 89, 120, 5400, 7300, 200000)] == [
        "5 s", "89 s", "2 min", "1 h 30 min", "2 h 2 min", "2 d 7 h"]


# --- no flapping: a noisy series crossing the threshold raises once and clears once ---------------------------

@hsettings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10**6), noise=st.floats(0.0, 0.6))
def test_noisy_error_share_raises_once_and_clears_once(seed, noise):
    rng = random.Random(seed)
    sim = Sim(count=3, history=300)

    def errors(high: bool):
        def change(s: Sim):
            share = (0.15 if high else 0.0) + rng.uniform(-noise, noise) * 0.1
            s.nodes["node-0"].err = max(0.0, share) * 10.0
        return change
    sim.step(60, errors(False))
    sim.step(150, errors(True))
    sim.step(200, errors(False))
    keys = [any(p.rule == "error-rate" for p in ps) for _, ps in sim.log]
    flips = sum(1 for a, b in zip(keys, keys[1:]) if a != b)
    assert keys[-1] is False and flips == 2  # raised once, cleared once


@hsettings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10**6), jitter=st.floats(0.0, 200e6))
def test_noisy_leak_raises_once_and_clears_once(seed, jitter):
    rng = random.Random(seed)
    sim = Sim(count=2, history=300)

    def change(leaking: bool):
        def f(s: Sim):
            v = s.nodes["node-0"]
            v.load = max(0, min(8, v.load + rng.choice((-1, 0, 1))))
            base = getattr(s, "_leaked", 0.0) + (40e6 if leaking else 0.0)
            s._leaked = base
            v.gpu = 6 * GIB + 1.5 * GIB * v.load + base + rng.uniform(-jitter, jitter)
        return f
    sim.step(130, change(False))
    sim.step(180, change(True))
    sim.step(250, change(False))
    keys = [any(p.rule == "gpu-memory-leak" for p in ps) for _, ps in sim.log]
    flips = sum(1 for a, b in zip(keys, keys[1:]) if a != b)
    assert keys[-1] is False and flips == 2


def test_host_memory_step_is_no_leak_but_steady_growth_is():
    """Another process starting on the host (a step of 1 GB) is no leak; growth in both halves of the window is."""
    sim = Sim(count=2)
    sim.step(130)
    sim.nodes["node-0"].host += 1e9
    sim.step(150)
    assert all(p.rule != "host-memory-leak" for _, ps in sim.log for p in ps)
    sim.step(200, leak("node-0", 8e6, "host"))
    assert [p.node for p in sim.raised("host-memory-leak")] == ["node-0"]


def test_history_records_the_trend_metrics():
    sim = Sim(count=1)
    sim.nodes["node-0"].up = False
    sim.step(1)
    sim.nodes["node-0"].up = True
    sim.step(1)
    h = sim.history
    assert h.series("node-0", "rss_bytes") == [5 * GIB] * 2
    assert h.series("node-0", "host_mem_bytes") == [21 * GIB] * 2
    assert h.series("node-0", "load") == [2.0, 2.0] and h.series("node-0", "response_s") == [0.5, 0.5]
    assert h.series("node-0", "audio_rate") == [120.0, 120.0] and h.series("node-0", "queued") == [None, None]
    assert h.series("node-0", "asr_process") == [0.0, 4242.0]  # down, then up with its pid
    assert list(h.tail("node-0", "rss_bytes", 1)) == [5 * GIB] and len(h.times_tail(5)) == 2
    assert FleetHistory.for_seconds(600, 1.0).capacity == 600 and FleetHistory.for_seconds(600, 2.0).capacity == 300


def test_tails_match_series_across_the_ring_wrap():
    sim = Sim(count=2, history=50)
    sim.step(73, leak("node-1", 10e6, "rss"))
    h = sim.history
    full = h.series("node-1", "rss_bytes")
    for n in (1, 7, 23, 49, 50, 80):
        assert list(h.tail("node-1", "rss_bytes", n)) == full[-n:]
        assert list(h.times_tail(n)) == h.timestamps()[-n:]
    assert len(full) == 50 and abs(full[-1] - full[0] - 49 * 10e6) < 1e3  # float32: 1 part in 16 million


def test_thinned_tails_keep_the_newest_across_the_wrap():
    sim = Sim(count=1, history=50)
    sim.step(73, leak("node-0", 10e6, "rss"))
    h = sim.history
    full = h.series("node-0", "rss_bytes")
    for n in (1, 7, 23, 49, 50):
        for step in (1, 2, 3, 4, 7):
            want = full[-n:][(n - 1) % step::step]
            assert list(h.tail("node-0", "rss_bytes", n, step)) == want and want[-1] == full[-1]
