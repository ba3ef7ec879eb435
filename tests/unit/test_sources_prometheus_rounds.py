"""PrometheusSource's rounds against canned answers (no Prometheus): what a round asks for and what it keeps
between rounds.

FakePrometheus answers the source's queries from SynthNodes' expositions: /federate as Prometheus' text
exposition of the series its selector names, each sample at the fleet's current scrape time (a server without
/federate answers it 404: the per-round parts then come as range queries), the per-round range queries as
matrices of one sample scraped then, the others as vectors of the series they name (of the instances their
`instance=~` names and the classes their `class=~` names; other PromQL, such as the exceptions', gets no
series), and `up == 0` for the instances it names of those put in `down`."""

from __future__ import annotations

import gc
import json
import re
import threading
from concurrent.futures import Executor, Future

import pytest

from prometheus_client.parser import text_string_to_metric_families

from asrtop.config import NodeConfig
from asrtop.sources.prometheus import PrometheusSource
from asrtop.sources.prometheus_queries import FAST_PARTS
from support.sources_synth import SynthNode

_NAMES = re.compile(r'__name__=~"asr_\(([^)]*)\)"')
_INSTANCES = re.compile(r'instance=~"([^"]*)"')
_CLASSES = re.compile(r'class=~"([^"]*)"')  # as Prometheus: "" matches a series without the label


def instances_regex(promql: str) -> str | None:
    """The regex of the query's `instance=~"..."`, its PromQL string escapes undone."""
    found = _INSTANCES.search(promql)
    return found.group(1).replace("\\\\", "\\") if found else None


class FakePrometheus:
    """The series of `nodes` (instance 127.0.0.1:<9000 + index>), all scraped at `self.scraped`."""

    def __init__(self, nodes: list[SynthNode]):
        self.scraped = 1_000.0
        self.series = []  # (labels, value)
        self.answered: dict[str, int] = {}  # query -> series in its last answer
        self.down: set[str] = set()  # instances Prometheus cannot scrape (`up == 0`; their series removed)
        self.late: dict[str, float] = {}  # instance -> its last scrape, when not `scraped` (a scrape late)
        for node in nodes:
            for fam in text_string_to_metric_families(node.metrics_text()):
                for s in fam.samples:
                    labels = {"__name__": s.name, "instance": f"127.0.0.1:{9000 + node.index}", "job": "asr",
                              **s.labels}
                    self.series.append((dict(sorted(labels.items())), repr(float(s.value))))

    def chosen(self, promql: str) -> list[tuple[dict, str]]:
        """The series a selector (or the selector of a query) names."""
        names = {f"asr_{n}" for part in _NAMES.findall(promql) for n in part.split("|")}
        instances, classes = instances_regex(promql), _CLASSES.search(promql)
        return [(labels, v) for labels, v in self.series if labels["__name__"] in names
                and (instances is None or re.fullmatch(instances, labels["instance"]))
                and (classes is None or re.fullmatch(classes.group(1), labels.get("class", "")))]

    def federate(self, selector: str) -> bytes:
        """/federate's answer: each series' last sample and its time in ms (text exposition, labels escaped)."""
        chosen = self.chosen(selector)
        self.answered[selector] = len(chosen)

        def escaped(value: str) -> str:
            return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        lines = []
        for labels, v in chosen:
            inner = ",".join(f'{k}="{escaped(x)}"' for k, x in labels.items() if k != "__name__")
            at = self.late.get(labels["instance"], self.scraped)
            lines.append(f"{labels['__name__']}{{{inner}}} {v} {round(at * 1000)}")
        return ("\n".join(lines) + "\n").encode()

    def answer(self, promql: str) -> bytes:
        if promql.startswith("label_replace(up{"):  # down_query: the instances it names that are in self.down
            chosen = [({"__name__": "asr_target_down", "instance": i, "job": "asr"}, "0.0") for i in sorted(self.down)
                      if re.fullmatch(instances_regex(promql), i)]
        else:
            chosen = self.chosen(promql)
        self.answered[promql] = len(chosen)
        if promql.endswith("]"):  # a per-round range query
            result = [{"metric": labels, "values": [[self.scraped, v]]} for labels, v in chosen]
            kind = "matrix"
        else:
            result = [{"metric": labels, "value": [self.scraped, v]} for labels, v in chosen]
            kind = "vector"
        return json.dumps({"status": "success", "data": {"resultType": kind, "result": result}},
                          separators=(",", ":")).encode()


def source_of(fake: FakePrometheus, federation: bool = True, **kw) -> PrometheusSource:
    """A source asking `fake`; without `federation`, a server whose /federate answers 404 (Thanos Query, Mimir)."""
    src = PrometheusSource("http://fake", refresh=2.0, **kw)

    async def post(promql: str, at: float | None) -> tuple[int, bytes]:
        return 200, fake.answer(promql)

    async def federate(selector: str) -> tuple[int, bytes]:
        return (200, fake.federate(selector)) if federation else (404, b"404 page not found\n")
    src._post = post  # type: ignore[method-assign]
    src._federate = federate  # type: ignore[method-assign]
    return src


class Lingering(Executor):
    """Runs each step at once, on the caller's thread, and keeps what its last step was given: a
    ThreadPoolExecutor's work item holds its call until the thread gets round to dropping it, at times after the
    loop has gone on (in 2 of 2 runs under xdist and 1 of 3 alone, a round's 20-node answers were still held when
    it returned)."""

    def __init__(self) -> None:
        self.given: tuple | None = None

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.given = (fn, args, kwargs)
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return done


async def next_round(src: PrometheusSource, fake: FakePrometheus) -> dict:
    """A new scrape of the fake fleet, then a round of `src` (its clock a second after the scrape)."""
    fake.scraped += 2.0
    return dict(await src.poll(CONFIG))


NODES = [SynthNode(f"gpu-{i}", index=i) for i in range(20)]
CONFIG = [NodeConfig(n.name, agent=f"http://127.0.0.1:{9000 + n.index}") for n in NODES]


FEDERATE = "federate"  # asking()'s evaluation time of a /federate selector: its server's now


def asking(src: PrometheusSource) -> list[tuple[str, float | str | None]]:
    """The queries `src` sends with their evaluation times, and the /federate selectors (FEDERATE for a time), as it
    sends them (cleared by the caller between rounds)."""
    asked: list[tuple[str, float | str | None]] = []
    answer, federate = src._post, src._federate

    async def post(promql: str, at: float | None) -> tuple[int, bytes]:
        asked.append((promql, at))
        return await answer(promql, at)

    async def federated(selector: str) -> tuple[int, bytes]:
        asked.append((selector, FEDERATE))
        return await federate(selector)
    src._post = post  # type: ignore[method-assign]
    src._federate = federated  # type: ignore[method-assign]
    return asked


async def test_a_round_whose_series_stayed_keeps_few_new_objects_per_node(monkeypatch):
    """A new scrape with the same figures: each node's reading is new (its scrape time), but what the source
    keeps to reuse (the sub-readings, their inputs, the record of the last build) is handed on, not built again
    as equal new objects: every object a round keeps is walked by the young collection that follows it."""
    fake = FakePrometheus(NODES)
    src = source_of(fake, detail_slices=1000)  # the measured round asks no node's details (checked below)
    src._worker = Lingering()  # what the worker thread's last step was given counts as kept, every time
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    for _ in range(3):
        fake.scraped += 2.0
        readings = await src.poll(CONFIG)
    assert all(r.error is None for r in readings.values())
    assert "asrtop-none" in src.round_queries()["detail"]
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
    # per node: the reading, its status, traffic and counter sample, the counter window; the source's
    # bookkeeping comes on top (a round's slice of nodes brings their details too: none in this one)
    assert kept <= 8 * len(NODES), kept  # (before: 16 per node)


async def test_the_kept_details_are_untracked_once_a_collection_has_seen_them(monkeypatch):
    """A node's details are kept for up to STATIC_SLICES rounds. Kept as they came (a dict of lists of (labels
    dict, value) tuples: a tuple holding a dict is never untracked), they were ~30 objects a node that every
    collection walked: ~30,000 of the ~58,000 a full collection walked at 1,000 nodes. Packed, each part is one
    flat tuple of strings and numbers, which the collector stops tracking the first time it walks it. The
    readings built from them are the same (the other tests of this module read them)."""
    fake = FakePrometheus(NODES)
    src = source_of(fake, detail_slices=1, static_slices=1)  # every node's details in every round
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    for _ in range(2):
        readings = await next_round(src, fake)
    assert all(r.error is None and r.status.gpus[0].name for r in readings.values())
    kept = src._kept
    instances = {f"127.0.0.1:{9000 + n.index}" for n in NODES}
    assert kept.details.keys() == kept.static.keys() == kept.gauges.keys() == instances
    gc.collect()
    walked = {inst for inst in instances for part in (kept.details, kept.static, kept.gauges)
              if gc.is_tracked(part[inst])}
    assert not walked, sorted(walked)


async def test_a_one_shot_source_keeps_the_details_as_they_came(monkeypatch):
    """`status` and `check` read the fleet once or twice, with the collector off (`status`) or about to exit:
    packing every node's details in their first round cost ~15 % of that round's CPU at 1,000 nodes, for no
    collection to spare. Their source (build_facts_source's one_shot) never packs; its readings are the same."""
    import asrtop.sources.prometheus_kept as kept_module
    from asrtop.config import ClusterConfig
    from asrtop.sources.factory import build_facts_source

    def no_packing(metrics):
        raise AssertionError("packed")

    fake = FakePrometheus(NODES)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    console = source_of(fake, detail_slices=1, static_slices=1)
    expected = await next_round(console, fake)
    monkeypatch.setattr(kept_module, "pack", no_packing)
    config = ClusterConfig(path=None, name="t", balancers=(), nodes=tuple(CONFIG), prometheus="http://fake")
    one_shot = build_facts_source(config, one_shot=True)
    assert not one_shot._kept.packed and console._kept.packed
    fake.scraped -= 2.0  # the same scrape again, for the one-shot source
    src = source_of(fake, one_shot=True)
    readings = await next_round(src, fake)
    assert {k: r.status for k, r in readings.items()} == {k: r.status for k, r in expected.items()}
    with pytest.raises(AssertionError, match="packed"):
        await next_round(console, fake)


async def test_the_requests_answered_come_as_one_count_per_node_and_the_5xx_class(monkeypatch):
    """The total of requests is the latency histogram's count (the agent counts each request there and in its
    class), so of the per-class counters a round asks only for the 5xx one: per node the count and the 5xx class,
    whatever the classes; the readings and their rates are those of every class summed."""
    nodes = [SynthNode(f"gpu-{i}", index=i, requests={"2xx": 1000 + i, "3xx": 7, "4xx": 3, "5xx": i}) for i in range(5)]
    fake = FakePrometheus(nodes)
    src = source_of(fake)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    config = [NodeConfig(n.name, agent=f"http://127.0.0.1:{9000 + n.index}") for n in nodes]
    readings = await src.poll(config)
    assert fake.answered[src.round_queries()["requests"]] == 2 * len(nodes)
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


@pytest.mark.parametrize("federation", [True, False])
async def test_every_query_of_a_round_is_evaluated_at_one_instant(monkeypatch, federation):
    """The per-round series come in three queries evaluated in parallel: without one evaluation time, a scrape
    landing between them gave a node's request count from one scrape and its latency sum from the one before
    (CI saw a response time of 1.35 s for 1.5 s). A first round (details, static facts and the windows' first
    counters asked too) and a later one: each query carries the round's instant, this host's clock then. From
    /federate (a server that has it), the three parts are each series' last sample, asked together (the server's
    now: a sample carries its scrape time); a server without it gets them as queries at the round's instant."""
    fake = FakePrometheus(NODES)
    src = source_of(fake, federation)
    asked = asking(src)
    clock = [fake.scraped + 1.0]
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: clock[0])
    for first in (True, False):
        asked.clear()
        readings = await src.poll(CONFIG)
        assert all(r.error is None for r in readings.values())
        parts = [promql for promql, _ in asked if promql in src.round_queries().values()]
        assert len(parts) >= 3  # the per-round parts at least
        federated = len([at for _, at in asked if at == FEDERATE])
        if federation:
            assert federated == len(FAST_PARTS), asked
        else:  # a server without /federate is asked it in the first round only (its 404s: the parts that asked)
            assert (1 <= federated <= len(FAST_PARTS)) if first else federated == 0, asked
        assert src.federates is federation
        assert {at for _, at in asked if at != FEDERATE} == {clock[0]}, asked
        fake.scraped += 2.0
        clock[0] += 2.0


async def test_prometheus_is_asked_which_targets_it_cannot_scrape_only_of_nodes_missing_from_the_round(monkeypatch):
    """`up` asked of every target each round cost Prometheus 13-18 ms of CPU and 1.3 MB at 1,000 nodes for what the
    per-round series already say: a round where every node's series came asks no `up`; one where a node's are gone
    asks it of that node alone, and a node Prometheus cannot scrape reads so, its last good status kept."""
    fake = FakePrometheus(NODES)
    src = source_of(fake)
    asked = asking(src)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    for _ in range(3):
        asked.clear()
        fake.scraped += 2.0
        readings = await src.poll(CONFIG)
        assert all(r.error is None for r in readings.values())
        assert not [q for q, _ in asked if re.search(r"(?<![a-z_])up[{\[]", q)], asked
    good = readings["gpu-3"]
    fake.down.add("127.0.0.1:9003")
    fake.series = [(labels, v) for labels, v in fake.series if labels["instance"] != "127.0.0.1:9003"]
    asked.clear()
    fake.scraped += 2.0
    readings = await src.poll(CONFIG)
    ups = [q for q, _ in asked if re.search(r"(?<![a-z_])up[{\[]", q)]
    assert len(ups) == 1 and re.fullmatch(instances_regex(ups[0]), "127.0.0.1:9003"), ups
    assert not re.fullmatch(instances_regex(ups[0]), "127.0.0.1:9004"), ups
    assert readings["gpu-3"].error == "Prometheus cannot scrape 127.0.0.1:9003 (up == 0)"
    assert readings["gpu-3"].status == good.status and readings["gpu-3"].fetched_at == good.fetched_at
    assert all(r.error is None for name, r in readings.items() if name != "gpu-3")


async def test_a_node_scraped_before_the_rounds_range_is_read_from_federates_answer(monkeypatch):
    """/federate gives every series' last sample with its scrape time: a node whose last scrape is older than the
    round's range (late) is read from that answer with its own time, no query asks for its series again (the range
    queries' round asked them at an instant), and Prometheus is asked whether it can scrape that node alone."""
    fake = FakePrometheus(NODES)
    src = source_of(fake)
    asked = asking(src)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    await next_round(src, fake)
    fake.late["127.0.0.1:9003"] = fake.scraped  # its next scrape does not come
    asked.clear()
    readings = await next_round(src, fake)
    assert all(r.error is None for r in readings.values())
    assert readings["gpu-3"].fetched_at == fake.late["127.0.0.1:9003"] == fake.scraped - 2.0
    assert readings["gpu-4"].fetched_at == fake.scraped
    queries = [q for q, at in asked if at != FEDERATE]
    assert not [q for q in queries if "service_in_flight_requests" in q], queries  # no lagging query
    ups = [q for q in queries if re.search(r"(?<![a-z_])up[{\[]", q)]
    assert len(ups) == 1 and re.fullmatch(instances_regex(ups[0]), "127.0.0.1:9003"), ups


async def test_a_nodes_identity_comes_with_its_static_facts_not_every_round(monkeypatch):
    """asr_node_info (node, agent_version, gpu_source) was 1,000 of a round's ~10,500 series at 1,000 nodes: it
    comes with the static facts, so an upgraded agent shows its new version within static_slices rounds, and no
    per-round query names it."""
    fake = FakePrometheus(NODES)
    src = source_of(fake)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    fake.scraped += 2.0
    readings = await src.poll(CONFIG)
    assert {r.status.agent_version for r in readings.values()} == {"0.1.0"}
    assert not [q for name, q in src.round_queries().items() if name in FAST_PARTS and "node_info" in q]
    fake.series = [({**labels, "agent_version": "0.2.0"} if labels["__name__"] == "asr_node_info" else labels, v)
                   for labels, v in fake.series]
    seen = []
    for _ in range(src.static_slices):
        fake.scraped += 2.0
        readings = await src.poll(CONFIG)
        seen.append(sum(r.status.agent_version == "0.2.0" for r in readings.values()))
        assert all(r.error is None for r in readings.values())
    assert seen[-1] == len(NODES), seen


@pytest.mark.parametrize("federation", [True, False])
async def test_a_rounds_decoding_and_building_run_off_the_event_loop(monkeypatch, federation):
    """The console polls on its UI loop. At 1,000 nodes a round's decoding and building were 50-120 ms of CPU
    there, in a few long steps (a 4,000-series answer decoded in one), each holding every key and frame for as
    long. The queries' I/O stays on the loop; every step that decodes, groups, settles or builds runs on the
    source's worker thread: in a first round (everyone's details, the counters' seeds), a round where every node
    answered, and one where a node's series are gone (the lagging and `up` queries)."""
    import asrtop.sources.prometheus as prom
    from asrtop.sources.prometheus_kept import KeptFacts

    loop_thread = threading.get_ident()
    ran: dict[str, set[int]] = {}

    def spied(name, fn):
        def on_a_thread(*args, **kw):
            ran.setdefault(name, set()).add(threading.get_ident())
            return fn(*args, **kw)
        return on_a_thread

    decoder = "group_federated" if federation else "group_latest"  # the per-round parts'
    for name in ("answer_result", decoder, "group_by_instance", "fold_requests", "build_status_reusing",
                 "counters_of"):
        monkeypatch.setattr(prom, name, spied(name, getattr(prom, name)))
    for name in ("round_states", "missing", "take"):
        monkeypatch.setattr(KeptFacts, name, spied(name, getattr(KeptFacts, name)))
    fake = FakePrometheus(NODES)
    src = source_of(fake, federation)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    for _ in range(2):
        assert all(r.error is None for r in (await next_round(src, fake)).values())
    fake.down.add("127.0.0.1:9003")
    fake.series = [(labels, v) for labels, v in fake.series if labels["instance"] != "127.0.0.1:9003"]
    readings = await next_round(src, fake)
    assert readings["gpu-3"].error == "Prometheus cannot scrape 127.0.0.1:9003 (up == 0)"
    await src.close()
    assert set(ran) == {"answer_result", decoder, "group_by_instance", "fold_requests", "build_status_reusing",
                        "counters_of", "round_states", "missing", "take"}, ran
    assert not {name for name, threads in ran.items() if loop_thread in threads}, ran


@pytest.mark.parametrize("federation", [True, False])
async def test_a_rounds_answers_and_the_last_readings_are_freed_on_the_worker(monkeypatch, federation):
    """Freeing a round's answers and the readings it replaces is ~10,000 objects at 1,000 nodes, the GIL held
    throughout: on the loop (its locals dropped as the round returns) that was the longest block left once the
    round itself ran on the worker."""
    import asrtop.sources.prometheus as prom

    loop_thread = threading.get_ident()
    freed_on: dict[str, int] = {}

    class Freed:
        def __init__(self, what: str) -> None:
            self.what = what

        def __del__(self) -> None:
            freed_on[self.what] = threading.get_ident()

    decoder = "group_federated" if federation else "group_latest"  # the per-round parts'
    decode = getattr(prom, decoder)

    def decoded_and_one_more(*args):
        count = decode(*args)
        into = args[5] if federation else args[4]
        into.setdefault("127.0.0.1:1", {})["asr_marker"] = [({}, Freed(f"answer {len(freed_on)}"))]
        return count

    join = PrometheusSource._join

    def join_and_one_more(self, *args):
        fresh = join(self, *args)
        fresh["marker"] = Freed("reading")
        return fresh

    monkeypatch.setattr(prom, decoder, decoded_and_one_more)
    monkeypatch.setattr(PrometheusSource, "_join", join_and_one_more)
    fake = FakePrometheus(NODES)
    src = source_of(fake, federation)
    monkeypatch.setattr("asrtop.sources.prometheus.time.time", lambda: fake.scraped + 1.0)
    for _ in range(2):
        readings = await next_round(src, fake)
        assert readings["gpu-1"].error is None
        del readings  # the source's own readings are the last reference
    await src.close()
    assert "reading" in freed_on and any(what.startswith("answer") for what in freed_on), freed_on
    assert loop_thread not in freed_on.values(), freed_on
