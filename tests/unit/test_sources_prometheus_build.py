"""PrometheusSource's pure half: series -> AgentStatus agrees with the agent's own /v1/status body."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asrtop.agentstatus import parse_status
from asrtop.sources.prometheus import DETAIL_SERIES, QUERIES, instance_of_url
from asrtop.sources.prometheus_build import (
    AUDIO_RATE,
    ERRORS_5XX_RATE,
    REQUEST_RATE,
    REQUESTS_SUM,
    RESPONSE_SECONDS,
    UNKNOWN,
    agent_traffic,
    build_status,
    detail_part,
    group_by_instance,
    model_reading,
    model_state_of,
)
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
    """The source builds from the per-round series and detail_part() of the instance's (cached) details."""
    node = SynthNode("gpu-3", index=3, model_state="hashing", in_flight=4, load1=1.5)
    metrics = group_by_instance(vector(node.metrics_text(), "h:1"))["h:1"]
    metrics[REQUESTS_SUM] = [({"instance": "h:1"}, float(sum(node.requests.values())))]
    detail_names = {f"asr_{n}" for n in DETAIL_SERIES.split("|")}
    details = {k: v for k, v in metrics.items() if k in detail_names}
    fast = {k: v for k, v in metrics.items() if k not in detail_names}
    assert details and fast
    got = build_status("gpu-3", fast, 5.0, model_reading(metrics), detail_part(details))
    assert got == build_status("gpu-3", metrics, 5.0)
    assert got.gpus[0].name == "NVIDIA A10" and got.gpus[0].utilization_ratio is not None


def test_model_state_of_the_per_round_series():
    assert model_state_of([({"state": "ok"}, 1.0)]) == "ok"
    assert model_state_of([({"state": "ok"}, 0.0), ({"state": "error"}, 1.0)]) == "error"
    assert model_state_of([({"state": "ok"}, 0.0)]) is UNKNOWN  # left "ok": looked up with the node's details
    assert model_state_of([]) is None


def test_request_figures_from_the_traffic_query_answer():
    """The traffic query's series (what Prometheus answers: NaN latency when nothing finished, no 5xx series
    for an agent that never answered one) become AgentTraffic; no series: the agent counts nothing."""
    def answer(**values: str) -> dict:
        rows = [{"metric": {"__name__": name, "asrtop": name, "instance": "h:1"}, "value": [1.0, v]}
                for name, v in values.items()]
        return group_by_instance(rows).get("h:1", {})

    t = agent_traffic(answer(**{REQUEST_RATE: "2.5", ERRORS_5XX_RATE: "0.5", RESPONSE_SECONDS: "1.8",
                                AUDIO_RATE: "25"}), 10.0)
    assert (t.request_rate, t.errors_5xx_rate, t.response_seconds, t.audio_rate, t.window_seconds) == \
        (2.5, 0.5, 1.8, 25.0, 10.0)
    quiet = agent_traffic(answer(**{REQUEST_RATE: "0", RESPONSE_SECONDS: "NaN", AUDIO_RATE: "0"}), 10.0)
    assert (quiet.request_rate, quiet.errors_5xx_rate, quiet.response_seconds) == (0.0, 0.0, None)
    assert agent_traffic(answer(), 10.0) is None
