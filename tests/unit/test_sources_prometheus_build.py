"""PrometheusSource's pure half: series -> AgentStatus agrees with the agent's own /v1/status body."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asrtop.agentstatus import parse_status
from asrtop.sources.prometheus import instance_of_url
from asrtop.sources.prometheus_queries import DETAIL_SERIES, FAST_SERIES, QUERIES, STATIC_SERIES
from asrtop.sources.prometheus_build import (
    REQUESTS_5XX,
    REQUESTS_SUM,
    UNKNOWN,
    build_status,
    build_status_reusing,
    counters_of,
    detail_part,
    group_by_instance,
    model_reading,
    model_state_of,
)
from asrtop.traffic import ERRORS_5XX
from support.sources_synth import SynthNode


def vector(text: str, instance: str) -> list[dict]:
    """The exposition as Prometheus' instant-query result would carry it (labels + instance/job)."""
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append({"metric": {"__name__": s.name, "instance": instance, "job": "asr", **s.labels},
                        "value": [1700000000.0, repr(float(s.value))]})
    return out


def test_status_from_metrics_matches_status_body():
    node = SynthNode("gpu-7", index=7, model_state="ok", in_flight=5, load1=2.25)
    by_inst = group_by_instance(vector(node.metrics_text(), "127.0.0.1:9001"))
    got = build_status("gpu-7", by_inst["127.0.0.1:9001"])
    want = parse_status(node.status_body())
    assert got.node == want.node
    assert got.agent_version == want.agent_version
    assert got.gpu_source == want.gpu_source
    assert got.model.sha256 == want.model.sha256 and got.model.state == "ok"
    assert got.model.files == want.model.files and got.model.bytes == want.model.bytes
    assert [d.path for d in got.model.dirs] == [d.path for d in want.model.dirs]
    assert got.host.cpu_ratio == want.host.cpu_ratio and got.host.load1 == want.host.load1
    assert got.host.memory_total_bytes == want.host.memory_total_bytes
    assert got.asr.up is True and got.asr.in_flight == 5 and got.asr.in_flight_source == "proxy"
    assert got.asr.requests.by_class == dict(want.asr.requests.by_class)
    assert got.asr.requests.total == want.asr.requests.total
    (g,), (w,) = got.gpus, want.gpus
    for f in ("index", "uuid", "name", "utilization_ratio", "memory_used_bytes", "memory_total_bytes",
              "temperature_celsius", "power_watts", "power_limit_watts"):
        assert getattr(g, f) == getattr(w, f), f
    assert [(p.pid, p.gpu_memory_bytes) for p in g.processes] == [(p.pid, p.gpu_memory_bytes) for p in w.processes]


@pytest.mark.parametrize("state", ["ok", "hashing", "missing", "error"])
def test_model_state_is_the_series_with_value_one(state):
    node = SynthNode("n", model_state=state)
    got = build_status("n", group_by_instance(vector(node.metrics_text(), "h:1"))["h:1"])
    assert got.model.state == state


def test_unavailable_values_are_none_not_zero():
    text = ('asr_node_info{node="n",agent_version="1",gpu_source="none"} 1\n'
            "asr_host_cpu_ratio NaN\n")
    got = build_status("n", group_by_instance(vector(text, "h:1"))["h:1"])
    assert got.host.cpu_ratio is None and got.host.load1 is None
    assert got.gpus == () and got.asr.requests is None and got.asr.in_flight is None
    assert got.model.state == "missing" and got.model.sha256 is None


def test_instance_of_url():
    assert instance_of_url("http://127.0.0.1:10860") == "127.0.0.1:10860"
    assert instance_of_url("http://127.0.0.1:10860/") == "127.0.0.1:10860"
    assert instance_of_url("http://node-a") == "node-a:80"
    assert instance_of_url("https://[::1]:9/x") == "[::1]:9"
    assert instance_of_url(None) is None and instance_of_url("http://:bad") is None


def test_a_handful_of_queries_not_one_per_node():
    assert len(QUERIES) <= 8
    assert not any("node=" in q for q in QUERIES.values())


def test_per_round_series_plus_cached_detail_part_build_the_same_status():
    """The source builds from the per-round series and detail_part() of the instance's (cached) details: its slow
    gauges and static facts."""
    node = SynthNode("gpu-3", index=3, model_state="hashing", in_flight=4, load1=1.5)
    metrics = group_by_instance(vector(node.metrics_text(), "h:1"))["h:1"]
    metrics[REQUESTS_SUM] = [({"instance": "h:1"}, float(sum(node.requests.values())))]
    detail_names = {f"asr_{n}" for n in f"{DETAIL_SERIES}|{STATIC_SERIES}".split("|")}
    details = {k: v for k, v in metrics.items() if k in detail_names}
    fast = {k: v for k, v in metrics.items() if k not in detail_names}
    assert details and fast
    got = build_status("gpu-3", fast, 5.0, model_reading(metrics), detail_part(details))
    assert got == build_status("gpu-3", metrics, 5.0)
    assert got.gpus[0].name == "NVIDIA A10" and got.gpus[0].utilization_ratio is not None


def _bump(metrics: dict, name: str) -> None:
    metrics[name] = [(labels, value + 1.0) for labels, value in metrics[name]]


@pytest.mark.parametrize("name, changed", [
    ("asr_host_cpu_ratio", "host"), ("asr_gpu_utilization_ratio", "gpus"), ("asr_gpu_memory_used_bytes", "gpus"),
    ("asr_service_in_flight_requests", "asr"), (REQUESTS_SUM, "asr"), ("asr_request_duration_seconds_sum", "asr"),
    ("asr_audio_seconds_total", "asr"), ("asr_service_up", "asr"), ("asr_streams_open", "asr"),
    ("asr_stream_oldest_seconds", "asr")])
def test_a_new_scrape_reuses_the_sub_readings_whose_series_stayed_and_rebuilds_the_changed_one(name, changed):
    """Each round rebuilds the status (a new scrape time) but hands on the host, GPU and service readings whose
    per-round series and details did not change; any change of a series they show builds that one anew, with
    the new figure, and the whole status equals one built from scratch."""
    node = SynthNode("gpu-3", index=3, in_flight=4, load1=1.5)
    text = node.metrics_text() + "asr_streams_open 2\nasr_stream_oldest_seconds 30\n"
    metrics = group_by_instance(vector(text, "h:1"))["h:1"]
    metrics[REQUESTS_SUM] = [({"instance": "h:1"}, 42.0)]
    del metrics["asr_agent_last_collect_timestamp_seconds"]  # not among the per-round series: the scrape time
    part, model = detail_part(metrics), model_reading(metrics)
    first, reused = build_status_reusing("gpu-3", metrics, 5.0, model, part)
    again, reused_again = build_status_reusing("gpu-3", metrics, 7.0, model, part, reused)
    assert again.collected_at == 7.0 and (again.host, again.gpus, again.asr) == (first.host, first.gpus, first.asr)
    assert again.host is first.host and again.gpus is first.gpus and again.asr is first.asr
    assert reused_again is reused  # not an equal new one: an object more per node and round for the GC
    _bump(metrics, name)
    after, _ = build_status_reusing("gpu-3", metrics, 9.0, model, part, reused_again)
    assert after == build_status("gpu-3", metrics, 9.0, model, part) != build_status("gpu-3", metrics, 7.0, model, part)
    for sub in ("host", "gpus", "asr"):
        assert (getattr(after, sub) is getattr(first, sub)) == (sub != changed), sub
    other_part = detail_part(metrics)  # new details: nothing is handed on
    fresh, _ = build_status_reusing("gpu-3", metrics, 11.0, model, other_part, reused_again)
    assert fresh.host is not first.host and fresh.asr is not first.asr


def test_model_state_of_the_per_round_series():
    assert model_state_of([({"state": "ok"}, 1.0)]) == "ok"
    assert model_state_of([({"state": "ok"}, 0.0), ({"state": "error"}, 1.0)]) == "error"
    assert model_state_of([({"state": "ok"}, 0.0)]) is UNKNOWN  # left "ok": looked up with the node's details
    assert model_state_of([]) is None



def test_request_counters_of_each_scrape():
    """The per-round series carry each scrape's request counters (the sum over classes, the 5xx sum, latency
    and audio totals): asrtop.traffic's window turns them into rates, as for the agents polled directly."""
    node = SynthNode("gpu-1", requests={"2xx": 40, "4xx": 2})
    metrics = group_by_instance(vector(node.metrics_text(), "h:1"))["h:1"]
    metrics[REQUESTS_SUM] = [({"instance": "h:1"}, 42.0)]
    assert counters_of(metrics, 7.0) == (7.0, 42, 0, 610.2, 5400.5)  # no 5xx series: none so far
    metrics[REQUESTS_5XX] = [({"instance": "h:1", "class": "5xx"}, 3.0)]
    assert counters_of(metrics, 7.0)[ERRORS_5XX] == 3
    assert counters_of(metrics, None) is None  # no scrape time: no span to divide by
    del metrics[REQUESTS_SUM]
    assert counters_of(metrics, 7.0) is None  # the agent counts no requests (no --proxy)
    fast = {f"asr_{n}" for n in FAST_SERIES.split("|")}
    assert {"asr_request_duration_seconds_sum", "asr_audio_seconds_total"} <= fast  # every round, with the total


def test_live_streams_come_every_round_and_are_unknown_without_a_stream_port():
    """An agent with a stream port exports asr_streams_open and the oldest age: the Prometheus source shows them
    as the agents' own answers do (the console's strm column, the header's count, a drain's stream words)."""
    info = 'asr_node_info{node="n",agent_version="1",gpu_source="none"} 1\n'
    text = info + "asr_streams_open 4\nasr_stream_oldest_seconds 723.5\n"
    got = build_status("n", group_by_instance(vector(text, "h:1"))["h:1"]).asr.streams
    assert (got.open, got.oldest_seconds) == (4, 723.5)
    none_open = build_status("n", group_by_instance(vector(info + "asr_streams_open 0\n", "h:1"))["h:1"]).asr.streams
    assert (none_open.open, none_open.oldest_seconds) == (0, None)
    assert build_status("n", group_by_instance(vector(info, "h:1"))["h:1"]).asr.streams is None
    fast = {f"asr_{n}" for n in FAST_SERIES.split("|")}
    assert {"asr_streams_open", "asr_stream_oldest_seconds"} <= fast  # every round, not a tenth of the nodes


@pytest.mark.parametrize("name, label, value, changed", [
    ("asr_service_in_flight_requests", "source", "connections", "asr"),
    ("asr_gpu_utilization_ratio", "gpu", "1", "gpus")])
def test_a_series_whose_labels_changed_rebuilds_its_sub_reading(name, label, value, changed):
    """The per-round inputs are compared with their labels: the same figure under other labels (the in-flight
    count's source, a GPU's index) is a change, shown as the status built from scratch shows it."""
    node = SynthNode("gpu-3", index=3)
    metrics = group_by_instance(vector(node.metrics_text(), "h:1"))["h:1"]
    del metrics["asr_agent_last_collect_timestamp_seconds"]
    part, model = detail_part(metrics), model_reading(metrics)
    first, reused = build_status_reusing("gpu-3", metrics, 5.0, model, part)
    metrics[name] = [({**labels, label: value}, v) for labels, v in metrics[name]]
    after, _ = build_status_reusing("gpu-3", metrics, 7.0, model, part, reused)
    assert after == build_status("gpu-3", metrics, 7.0, model, part)
    assert getattr(after, changed) != getattr(first, changed)
