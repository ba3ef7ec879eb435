"""PrometheusSource's pure half: series -> AgentStatus agrees with the agent's own /v1/status body."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asrtop.agentstatus import parse_status
from asrtop.sources.prometheus import QUERIES, build_status, group_by_instance, instance_of_url
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
