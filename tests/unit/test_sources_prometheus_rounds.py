"""PrometheusSource's rounds against canned answers (no Prometheus): what a round asks for and what it keeps
between rounds.

FakePrometheus answers the source's queries from SynthNodes' expositions: the per-round range queries as
matrices of one sample scraped at the fleet's current scrape time, the others as vectors of the series they
name (of the instances their `instance=~` names and the classes their `class=~` names; other PromQL, such as
the exceptions', gets no series)."""

from __future__ import annotations

import gc
import json
import re

from prometheus_client.parser import text_string_to_metric_families

from asrtop.config import NodeConfig
from asrtop.sources.prometheus import PrometheusSource
from support.sources_synth import SynthNode

_NAMES = re.compile(r'__name__=~"asr_\(([^)]*)\)"')
_INSTANCES = re.compile(r'instance=~"([^"]*)"')
_CLASSES = re.compile(r'class=~"([^"]*)"')  # as Prometheus: "" matches a series without the label


class FakePrometheus:
    """The series of `nodes` (instance 127.0.0.1:<9000 + index>), all scraped at `self.scraped`."""

    def __init__(self, nodes: list[SynthNode]):
        self.scraped = 1_000.0
        self.series = []  # (labels, value)
        self.answered: dict[str, int] = {}  # query -> series in its last answer
        for node in nodes:
            for fam in text_string_to_metric_families(node.metrics_text()):
                for s in fam.samples:
                    labels = {"__name__": s.name, "instance": f"127.0.0.1:{9000 + node.index}", "job": "asr",
                              **s.labels}
                    self.series.append((dict(sorted(labels.items())), repr(float(s.value))))

    def answer(self, promql: str) -> bytes:
        names = {f"asr_{n}" for part in _NAMES.findall(promql) for n in part.split("|")}
        instances, classes = _INSTANCES.search(promql), _CLASSES.search(promql)
        chosen = [(labels, v) for labels, v in self.series if labels["__name__"] in names
                  and (instances is None or re.fullmatch(instances.group(1), labels["instance"]))
                  and (classes is None or re.fullmatch(classes.group(1), labels.get("class", "")))]
        self.answered[promql] = len(chosen)
        if promql.endswith("]"):  # a per-round range query
            result = [{"metric": labels, "values": [[self.scraped, v]]} for labels, v in chosen]
            kind = "matrix"
        else:
            result = [{"metric": labels, "value": [self.scraped, v]} for labels, v in chosen]
            kind = "vector"
        return json.dumps({"status": "success", "data": {"resultType": kind, "result": result}},
                          separators=(",", ":")).encode()


def source_of(fake: FakePrometheus) -> PrometheusSource:
    src = PrometheusSource("http://fake", refresh=2.0)

    async def post(promql: str, at: float | None) -> tuple[int, bytes]:
        return 200, fake.answer(promql)
    src._post = post  # type: ignore[method-assign]
    return src


NODES = [SynthNode(f"gpu-{i}", index=i) for i in range(20)]
CONFIG = [NodeConfig(n.name, agent=f"http://127.0.0.1:{9000 + n.index}") for n in NODES]


async def test_a_round_whose_series_stayed_keeps_few_new_objects_per_node(monkeypatch):
    """A new scrape with the same figures: each node's reading is new (its scrape time), but what the source
    keeps to reuse (the sub-readings, their inputs, the record of the last build) is handed on, not built again
    as equal new objects: every object a round keeps is walked by the young collection that follows it."""
    fake = FakePrometheus(NODES)
    src = source_of(fake)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    for _ in range(3):
        fake.scraped += 2.0
        readings = await src.poll(CONFIG)
    assert all(r.error is None for r in readings.values())
    del readings
    fake.scraped += 2.0
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects(0))
        readings = await src.poll(CONFIG)
        kept = len(gc.get_objects(0)) - before
    finally:
        gc.enable()
    assert all(r.error is None and r.status.collected_at == fake.scraped for r in readings.values())
    # per node: the reading, its status, traffic and counter sample, the counter window; the details of the
    # round's slice of nodes and the source's bookkeeping come on top
    assert kept <= 8 * len(NODES), kept  # (before: 16 per node)


async def test_the_requests_answered_come_as_one_count_per_node_and_the_5xx_class(monkeypatch):
    """The total of requests is the latency histogram's count (the agent counts each request there and in its
    class), so of the per-class counters a round asks only for the 5xx one: per node the count, the 5xx class
    and asr_node_info, whatever the classes; the readings and their rates are those of every class summed."""
    nodes = [SynthNode(f"gpu-{i}", index=i, requests={"2xx": 1000 + i, "3xx": 7, "4xx": 3, "5xx": i}) for i in range(5)]
    fake = FakePrometheus(nodes)
    src = source_of(fake)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    config = [NodeConfig(n.name, agent=f"http://127.0.0.1:{9000 + n.index}") for n in nodes]
    readings = await src.poll(config)
    assert fake.answered[src.round_queries()["requests"]] == 3 * len(nodes)
    for node in nodes:
        requests = readings[node.name].status.asr.requests
        assert requests.total == sum(node.requests.values()) and requests.by_class == node.requests
    for node in nodes:  # the next scrape: 10 more answered, 2 of them 5xx
        node.requests = {**node.requests, "2xx": node.requests["2xx"] + 8, "5xx": node.requests["5xx"] + 2}
    fake.series = FakePrometheus(nodes).series
    fake.scraped += 2.0
    readings = await src.poll(config)
    for node in nodes:
        reading = readings[node.name]
        assert reading.status.asr.requests.total == sum(node.requests.values())
        assert (reading.traffic.request_rate, reading.traffic.errors_5xx_rate) == (5.0, 1.0)


async def test_every_query_of_a_round_is_evaluated_at_one_instant(monkeypatch):
    """The per-round series come in three queries evaluated in parallel: without one evaluation time, a scrape
    landing between them gave a node's request count from one scrape and its latency sum from the one before
    (CI saw a response time of 1.35 s for 1.5 s). A first round (details, static facts and the windows' first
    counters asked too) and a later one: each query carries the round's instant, this host's clock then."""
    fake = FakePrometheus(NODES)
    src = source_of(fake)
    asked: list[tuple[str, float | None]] = []
    answer = src._post

    async def post(promql: str, at: float | None) -> tuple[int, bytes]:
        asked.append((promql, at))
        return await answer(promql, at)
    src._post = post  # type: ignore[method-assign]
    clock = [fake.scraped + 1.0]
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: clock[0])
    for _ in range(2):
        asked.clear()
        readings = await src.poll(CONFIG)
        assert all(r.error is None for r in readings.values())
        parts = [promql for promql, _ in asked if promql in src.round_queries().values()]
        assert len(parts) >= 3  # the per-round parts at least
        assert {at for _, at in asked} == {clock[0]}, asked
        fake.scraped += 2.0
        clock[0] += 2.0
