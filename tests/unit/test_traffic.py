"""asrtop.traffic: request rates, 5xx and mean latency from an agent's cumulative counters over a window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asrtop.agentstatus import parse_status
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.fleet import AgentReading, AgentTraffic, BalancerReading, merge
from asrtop.traffic import (AT, ERRORS_5XX, REQUESTS, SECOND_SAMPLE_MAX_WAIT, CounterSample, counter_rate,
                            counter_sample, second_sample_wait, slide, traffic)
from support.sources_synth import SynthNode


def sample(at: float, requests: int, errors: int = 0, latency: float | None = 0.0,
           audio: float | None = 0.0) -> CounterSample:
    return (at, requests, errors, latency, audio)


def test_rates_and_mean_latency_over_the_window():
    w = slide((), sample(100.0, 50, 1, 40.0, 300.0))
    assert traffic(w) is None  # one sample spans no time
    w = slide(w, sample(104.0, 58, 3, 52.0, 340.0))
    t = traffic(w)
    assert t.request_rate == pytest.approx(2.0) and t.errors_5xx_rate == pytest.approx(0.5)
    assert t.response_seconds == pytest.approx(12.0 / 8) and t.audio_rate == pytest.approx(10.0)
    assert t.window_seconds == pytest.approx(4.0)


def test_nothing_finished_is_zero_rate_and_unknown_latency():
    w = slide(slide((), sample(1.0, 7, 0, 9.0)), sample(3.0, 7, 0, 9.0))
    t = traffic(w)
    assert t.request_rate == 0.0 and t.errors_5xx_rate == 0.0
    assert t.response_seconds is None  # nothing finished: not 0 s


def test_window_keeps_about_ten_seconds_of_samples():
    w: tuple = ()
    for i in range(30):
        w = slide(w, sample(float(i), i * 2))
    assert w[0][AT] == 19.0 and w[-1][AT] == 29.0  # the newest sample at least 10 s older is the base
    assert traffic(w).request_rate == pytest.approx(2.0)


def test_same_collection_twice_adds_nothing_and_restart_starts_anew():
    w = slide(slide((), sample(1.0, 10)), sample(2.0, 12))
    assert slide(w, sample(2.0, 12)) is w  # the agent has not collected since the last poll
    assert slide(w, sample(3.0, 4)) == (sample(3.0, 4),)  # agent restarted: totals went down
    assert slide(w, sample(1.5, 13)) == (sample(1.5, 13),)  # its clock went back
    assert slide(w, None) == ()  # it stopped counting


def test_counter_sample_from_a_status():
    node = SynthNode("a", requests={"2xx": 10, "5xx": 2}, collected_at=50.0)
    assert counter_sample(parse_status(node.status_body())) == (50.0, 12, 2, 610.2, 5400.5)
    node.requests = {"2xx": 10}
    assert counter_sample(parse_status(node.status_body()))[ERRORS_5XX] == 0  # no 5xx class yet: none so far
    body = node.status_body()
    body["asr"]["requests"] = None  # an agent without --proxy counts nothing
    assert counter_sample(parse_status(body)) is None


def test_counter_rate():
    assert counter_rate(10, 16, 2.0) == 3.0
    assert counter_rate(10, 4, 2.0) is None and counter_rate(None, 4, 2.0) is None and counter_rate(1, 2, 0) is None


steps = st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(-3, 20), st.integers(0, 3),
                           st.floats(0.0, 50.0)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_never_negative_and_counts_what_finished_since_the_base(deltas):
    """Whatever the agent sends (time standing still, totals going down on a restart), the rates are never
    negative, the latency is None or a mean of finished requests, and rate x span is what finished."""
    w: tuple = ()
    at, total, errors, lat = 1000.0, 0, 0, 0.0
    for dt, dn, de, dl in deltas:
        at += dt
        if dn < 0:  # a restart: the agent counts from zero again
            total, errors, lat = 0, 0, 0.0
        else:
            total, errors, lat = total + dn, errors + min(de, dn), lat + (dl if dn else 0.0)
        w = slide(w, sample(at, total, errors, lat, lat / 2))
        assert w and w[-1][AT] == at
        t = traffic(w)
        if t is None:
            continue
        assert t.request_rate >= 0 and t.errors_5xx_rate >= 0 and t.audio_rate >= 0
        assert t.errors_5xx_rate <= t.request_rate
        assert t.request_rate * t.window_seconds == pytest.approx(w[-1][REQUESTS] - w[0][REQUESTS])
        if w[-1][REQUESTS] == w[0][REQUESTS]:
            assert t.response_seconds is None
        else:
            assert t.response_seconds is not None and t.response_seconds >= 0
        # the base is the newest sample at least a window older, so the span never shrinks below it
        assert len(w) == 2 or w[1][AT] > at - 10.0


def test_one_shot_status_waits_for_a_second_sample_only_where_agents_count():
    cfg = NodeConfig("a", agent="http://127.0.0.1:1", address="127.0.0.1:9")
    body = SynthNode("a", collected_at=10.0).status_body()

    def snap(traffic=None, balancer_rate=None, interval=1.0, proxy=True):
        b = {**body, "interval_seconds": interval}
        if not proxy:
            b["asr"] = {**b["asr"], "requests": None}
        reading = AgentReading(cfg.agent, parse_status(b), 10.0, traffic=traffic)
        server = ServerState("a", "127.0.0.1", 9, 1, False, AdminState.READY, Health.UP, 0, 0, balancer_rate)
        return merge([cfg], {"a": reading}, [BalancerReading("b", "nginx", (server,))], 10.0)

    assert second_sample_wait(snap()) == pytest.approx(1.15)  # one agent interval, and a little
    assert second_sample_wait(snap(interval=30.0)) == SECOND_SAMPLE_MAX_WAIT  # a status must stay quick
    assert second_sample_wait(snap(traffic=AgentTraffic(1.0, 0.0, 1.0, 1.0, 1.0))) is None  # has its rates
    assert second_sample_wait(snap(balancer_rate=2.0)) is None  # HAProxy counts them
    assert second_sample_wait(snap(proxy=False)) is None  # nobody counts them: waiting would not help


def test_a_windows_samples_are_untracked_once_a_collection_has_seen_them():
    """A window keeps a sample per poll for WINDOW_SECONDS (~11 a node at the default refresh: 11,000 at 1,000
    nodes, alive from one full collection of the console to the next). Instances of a NamedTuple class are walked
    by every collection; plain tuples of numbers are untracked at the collector's first look."""
    import gc

    node = SynthNode("a", requests={"2xx": 10, "5xx": 2}, collected_at=50.0)
    w: tuple = ()
    for i in range(12):
        node.collected_at += 1.0
        node.requests = {"2xx": 10 + i, "5xx": 2}
        w = slide(w, counter_sample(parse_status(node.status_body())))
    assert len(w) == 11 and traffic(w).request_rate == pytest.approx(1.0)
    gc.collect()
    assert not [s for s in w if gc.is_tracked(s)]
