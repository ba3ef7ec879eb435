"""FleetHistory: ring order, wrap-around, unavailable as None, derived request rate, pruning."""

from __future__ import annotations

import pytest

from asrtop.agentstatus import parse_status
from asrtop.config import NodeConfig
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.fleet import AgentReading, AgentTraffic, BalancerReading, merge
from asrtop.history import FleetHistory
from support.sources_synth import SynthNode


def snap(t: float, nodes: dict[str, SynthNode | None], stale: set[str] = frozenset()):
    cfgs, readings = [], {}
    for name, sn in nodes.items():
        cfgs.append(NodeConfig(name, agent=f"http://127.0.0.1:1/{name}"))
        if sn is not None:
            sn.collected_at = t
            fetched = t - 100 if name in stale else t
            readings[name] = AgentReading(cfgs[-1].agent, parse_status(sn.status_body()), fetched)
    return merge(cfgs, readings, (), t, 1.0)


def test_series_oldest_first_and_wraps():
    h = FleetHistory(capacity=4)
    a = SynthNode("a")
    for i in range(6):
        a.in_flight = i
        h.record(snap(1000.0 + i, {"a": a}))
    assert len(h) == 4
    assert h.series("a", "in_flight") == [2.0, 3.0, 4.0, 5.0]
    assert h.timestamps() == [1002.0, 1003.0, 1004.0, 1005.0]
    assert h.last("a", "in_flight") == 5.0


def test_unavailable_is_none_not_zero():
    h = FleetHistory(capacity=10)
    a = SynthNode("a")
    h.record(snap(1.0, {"a": a, "b": None}))  # b has an agent configured but no reading yet
    h.record(snap(2.0, {"a": a, "b": None}, stale={"a"}))
    assert h.series("b", "gpu_util") == [None, None]
    assert h.series("b", "in_flight") == [None, None]
    util = h.series("a", "gpu_util")
    assert util[0] == pytest.approx(0.62) and util[1] is None  # stale: not a current reading
    assert h.series("a", "gpu_mem")[0] == pytest.approx(9 / 24)


def test_nginx_node_history_fills_from_the_agents_window():
    """No balancer counts this node's requests (nginx): req/s and 5xx/s are the agent's rates over the
    poller's window (AgentTraffic), from the first snapshot that has them; unknown stays None."""
    h = FleetHistory(capacity=10)
    cfg = NodeConfig("a", agent="http://127.0.0.1:1/a")
    status = parse_status(SynthNode("a", requests={"2xx": 100, "5xx": 4}).status_body())
    for t, traffic in ((10.0, None), (11.0, AgentTraffic(2.5, 0.5, 1.8, 20.0, 10.0)),
                       (12.0, AgentTraffic(1.0, 0.0, None, 8.0, 10.0))):
        h.record(merge([cfg], {"a": AgentReading(cfg.agent, status, t, traffic=traffic)}, (), t, 1.0))
    assert h.series("a", "req_rate") == [None, 2.5, 1.0]
    assert h.series("a", "err_rate") == [None, 0.5, 0.0]
    assert h.fleet_series("req_rate") == [None, 2.5, 1.0]


def test_balancer_counted_node_keeps_the_balancers_figures():
    """HAProxy counts the node's requests: its rate is the history's; 5xx/s is the change of its 5xx total
    between snapshots (a counter that goes back, e.g. a reload, gives no rate, never a negative one)."""
    h = FleetHistory(capacity=10)
    cfg = NodeConfig("a", agent="http://127.0.0.1:1/a", address="127.0.0.1:9")
    status = parse_status(SynthNode("a", requests={"2xx": 100, "5xx": 50}).status_body())
    for t, rate, errors in ((10.0, 3.0, 7), (12.0, 4.0, 11), (13.0, 4.0, 2)):
        server = ServerState("a", "127.0.0.1", 9, 1, False, AdminState.READY, Health.UP, 0, 0, rate, 500, errors)
        h.record(merge([cfg], {"a": AgentReading(cfg.agent, status, t, traffic=AgentTraffic(9.0, 9.0))},
                       [BalancerReading("hx", "haproxy", (server,))], t, 1.0))
    assert h.series("a", "req_rate") == [3.0, 4.0, 4.0]
    assert h.series("a", "err_rate") == [None, 2.0, None]


def test_fleet_totals_sum_counts_and_average_ratios():
    h = FleetHistory(capacity=3)
    a, b = SynthNode("a", in_flight=2, gpu_util=0.2), SynthNode("b", in_flight=5, gpu_util=0.6)
    h.record(snap(1.0, {"a": a, "b": b}))
    assert h.fleet_series("in_flight") == [7.0]
    assert h.fleet_series("gpu_util")[0] == pytest.approx(0.4)


def test_nodes_gone_for_a_whole_window_are_dropped():
    h = FleetHistory(capacity=3)
    a, b = SynthNode("a"), SynthNode("b")
    h.record(snap(1.0, {"a": a, "b": b}))
    h.record(snap(2.0, {"a": a}))
    assert h.series("b", "in_flight") == [3.0, None]
    for t in (3.0, 4.0, 5.0):
        h.record(snap(t, {"a": a}))
    assert h.nodes() == ("a",) and h.series("b", "in_flight") == []


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        FleetHistory(0)


def test_a_sample_is_each_metrics_definition_over_a_mixed_fleet():
    """record's one pass (issue 17) writes what each metric means: GPUs without a reading left out of the mean,
    a stale or absent agent unavailable (NaN), the balancers' figures where they count; fleet totals summed or
    averaged over the nodes that report the metric."""
    from asrtop.agentstatus import AgentStatus, AsrReading, GpuReading, HostReading, ModelReading
    from asrtop.history import ASR_UP_NO_PID

    def status(name, gpus, in_flight, pid):
        return AgentStatus(name, "0.1.0", 10.0, 1.0, HostReading(memory_used_bytes=7 * 2**30), "nvml", None,
                           gpus, AsrReading(up=True, in_flight=in_flight, pid=pid, process_rss_bytes=2**31),
                           ModelReading("ok", "ab" * 32, 1, 1, None, ()), {})

    def gpu(i, util, used, total):
        return GpuReading(i, f"g{i}", "A10", util, used, total, None, None, None)

    gpus = (gpu(0, 0.5, 6 * 2**30, 24 * 2**30), gpu(1, None, 2**30, None), gpu(2, 0.25, None, 24 * 2**30),
            gpu(3, 0.9, 2 * 2**30, 8 * 2**30))
    cfgs = [NodeConfig(f"n{i}", agent=f"http://127.0.0.1:1/n{i}") for i in range(5)]
    readings = {"n0": AgentReading("a", status("n0", gpus, 4, 99), 10.0),
                "n1": AgentReading("a", status("n1", (), None, None), 10.0),
                "n2": AgentReading("a", status("n2", gpus[:1], 2, 7), 1.0),  # stale
                "n3": AgentReading("a", status("n3", gpus[1:2], 0, 5), 10.0)}
    servers = tuple(ServerState(f"n{i}", "127.0.0.1", 10095 + i, 1, False, AdminState.READY, Health.UP, 3 + i, i % 2,
                                2.5 * i, 10, i, 0.1 * (i + 1)) for i in range(4))
    snap_ = merge(cfgs, readings, (BalancerReading("hx", "haproxy", servers),), 10.0, 1.0)
    h = FleetHistory(capacity=4)
    h.record(snap_)
    nan = None
    want = {
        "n0": dict(in_flight=4, gpu_util=(0.5 + 0.25 + 0.9) / 3, gpu_mem=8 / 32, load=4, rss_bytes=2**31,
                   host_mem_bytes=7 * 2**30, asr_process=99.0, queued=0, req_rate=0.0, response_s=0.1),
        "n1": dict(in_flight=5, gpu_util=nan, gpu_mem=nan, load=5, asr_process=ASR_UP_NO_PID, queued=1),
        "n2": dict(in_flight=5, gpu_util=nan, gpu_mem=nan, load=5, rss_bytes=nan, asr_process=nan, req_rate=5.0),
        "n3": dict(in_flight=7, gpu_util=nan, gpu_mem=nan, load=0, asr_process=5.0, response_s=0.4),
        "n4": dict(in_flight=nan, gpu_util=nan, load=nan, req_rate=nan, queued=nan, response_s=nan),
    }
    for node, metrics in want.items():
        for metric, value in metrics.items():
            assert h.last(node, metric) == (None if value is None else pytest.approx(value)), (node, metric)
    assert h.fleet_series("in_flight") == [21.0]
    assert h.fleet_series("queued") == [2.0]
    assert h.fleet_series("req_rate") == [pytest.approx(0 + 2.5 + 5.0 + 7.5)]
    assert h.fleet_series("gpu_util") == [pytest.approx((0.5 + 0.25 + 0.9) / 3)]  # n0 the only one reporting
    assert h.fleet_series("response_s") == [pytest.approx((0.1 + 0.2 + 0.3 + 0.4) / 4)]
