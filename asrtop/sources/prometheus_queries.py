"""The PromQL of PrometheusSource's rounds and the shape of Prometheus' answers (no I/O): what a round asks
for and why.

Prometheus' cost is per series it selects, ours per series returned (decoding the answers and building readings), so
a round asks only for what changes with every scrape, ~8 series per node with one GPU, in three parts of about the
same size (FAST_PARTS, asked in parallel): in flight, CPU, GPU use and memory, the requests answered and the 5xx
ones, the latency and audio counters. A node is seen in a round when any of them came (its identity, asr_node_info,
is a static fact: measured at 1,000 nodes on a 2-core box, it was 1,000 of the round's ~10,500 series, 23 ms of
Prometheus' CPU and 2.6 MB of its allocations per round, for labels that change when an agent is upgraded). The
requests answered are the latency histogram's count, not asr_requests_total's classes summed here: the agent counts
each request it proxies in both, from one snapshot, so of asr_requests_total only the 5xx class is asked for
(measured at 1,000 nodes with three classes on a 2-core box, that query's Prometheus CPU 53-55 vs 78-80 ms, its
answer 465 vs 600 kB). They come from Prometheus' /federate, each series' last sample with its scrape time
(FAST_SELECTORS; no query engine, no JSON: measured at 1,000 nodes on a 2-core box, Prometheus' own work per round
0.66-0.77x the CPU and 0.64x the allocations of the same rounds with range queries), those scraped within `window`
being the round's; a node whose last sample is older (a scrape late or failed, a refresh shorter than the scrape
interval) is read from the same answer with its time, and judged stale or not by it. A server without /federate
(Thanos Query, Mimir: NO_FEDERATION) gets them as range queries: they select the series over a short range,
`[window]` (1.25 refresh intervals: the last scrape and some), not at an instant: an instant selector looks back 5
minutes, so Prometheus decodes every series' samples since then to find the last one, while a range this short reads
only the last few, and each sample comes with its own time, which is when Prometheus scraped the agent (measured at
1,000 nodes on a 2-core box, Prometheus' CPU for the four instant queries they replace, with `sum by` and
`timestamp`, against theirs: 352 vs 148 ms at load 2.5, 125 vs 116 ms at load 1.1: the gap grows with the load, as a
busy box makes decoding dearer). A node missing from that range (a scrape late or failed, a refresh shorter than the
scrape interval) is asked again at an instant, as before (lagging_query: its last samples within Prometheus'
lookback, then judged stale or not as any other); so is a node that exports none of them (an agent's first
collection, before its CPU ratio). Only of the nodes missing from that range is Prometheus asked whether it can
scrape them (down_query, `up == 0`): asked of every target each round, `up` cost 13-18 ms of Prometheus' CPU and 1.3
MB of its allocations (1,000 nodes), for an answer that a target's per-round series already give (a target not
scraped has none in the range).

What changes rarely comes in three other ways:
- as exceptions ("rare"): models that left "ok", health probes not up, plus
  the model state and probe of the nodes known not to be ok or up (so that their return is seen), and the
  model digests that differ from the fleet's majority (`asr_model_info{sha256!="<majority>"}`). A fleet where
  all is well answers it with no series at all. A node whose digest is not the one the source keeps for it
  (it left the majority, joined it, or moved between two others) has its details asked at once: a changed
  digest shows in the first round after Prometheus scraped it, whatever the cadences below;
- with the slow gauges ("detail"): load, memory used, probe latency, the service process' CPU and memory,
  GPU temperatures and power, per-class request counts, byte counters, for one tenth of the instances per
  round (DETAIL_SLICES, by a stable hash of the `instance` label, named in the query);
- with the static facts ("static"): totals and limits, GPU names, the model's digest, directories and files,
  the node's identity labels (asr_node_info: node, agent_version, gpu_source), the model state and probe
  themselves, for one sixtieth of the instances per round (STATIC_SLICES; a node's static round is one of its
  detail rounds).
Both come at once for a node that is new or whose model state or digest changed, and are kept between: a
node's slow gauges are at most DETAIL_SLICES rounds old, its GPU names and totals at most STATIC_SLICES (its
identity and versions too: an upgraded agent shows its new version within STATIC_SLICES rounds).
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Iterable
from urllib.parse import urlsplit

from asrtop.sources.prometheus_build import (REQUESTS_5XX, REQUESTS_SUM, SCRAPED_AT, TARGET_DOWN, Series,
                                             add_series)
from asrtop.traffic import WINDOW_SECONDS

REQUESTS_COUNT = "asr_request_duration_seconds_count"  # every request the agent answered: all classes

# streams_open / stream_oldest_seconds: only agents with a stream port export them (none for HTTP-only fleets)
FAST_SERIES = ("service_in_flight_requests|host_cpu_ratio|request_duration_seconds_sum|audio_seconds_total"
               "|streams_open|stream_oldest_seconds")
FAST_GPU_SERIES = "gpu_utilization_ratio|gpu_memory_used_bytes"
DETAIL_SERIES = ("requests_total|host_load1|host_load5|host_load15|host_memory_used_bytes"
                 "|service_probe_latency_seconds|service_process_cpu_ratio|service_process_resident_memory_bytes"
                 "|request_received_bytes_total|response_sent_bytes_total"
                 "|gpu_temperature_celsius|gpu_power_watts|gpu_process_memory_bytes")
STATIC_SERIES = ("host_memory_total_bytes|model_info|model_dir_info|model_files|model_bytes|gpu_info"
                 "|gpu_memory_total_bytes|gpu_power_limit_watts")
# the slow facts the source keeps per instance apart from the details (its identity, probe and model state:
# the state series at 1 only), asked for with the static facts; between two refreshes the "rare" exceptions
# say when the state or the probe change
SLOW_FACT_SERIES = "node_info|service_up"
DETAIL_SLICES = 10
STATIC_SLICES = 60  # a multiple of DETAIL_SLICES: a node's static round is one of its detail rounds
NOBODY = "asrtop-none"  # an instance no target has: an empty regex would match series without the label
# the per-round series in three queries of about the same size: Prometheus evaluates each on one core, the
# three in parallel, and the first answers are decoded while it evaluates the others
FAST_PARTS = {"fast": FAST_SERIES, "fast_gpu": FAST_GPU_SERIES,
              "requests": "request_duration_seconds_count|requests_total"}
# of asr_requests_total, only the 5xx class ("": the other names, which have no `class` label)
FAST_MATCHERS = {"requests": ',class=~"|5xx"'}
RANGE_SELECTOR = '{__name__=~"asr_({names})"{matchers}{instances}}[{window}]'
FEDERATE_SELECTOR = '{__name__=~"asr_({names})"{matchers}}'
# The per-round series by query name (FAST_PARTS) as series selectors for /federate's `match[]`: they name no
# instance nor window, so they are the same every round
FAST_SELECTORS = {name: FEDERATE_SELECTOR.replace("{names}", names).replace("{matchers}", FAST_MATCHERS.get(name, ""))
                  for name, names in FAST_PARTS.items()}
# What a server without Prometheus' /federate answers it (Thanos Query, Mimir, Cortex: 404): the per-round series
# then come as range queries, as before federation
NO_FEDERATION = frozenset({404, 405, 501})
QUERIES = {  # run concurrently; Prometheus evaluates them in parallel
    **{name: RANGE_SELECTOR.replace("{names}", names).replace("{matchers}", FAST_MATCHERS.get(name, ""))
       for name, names in FAST_PARTS.items()},
    # the exceptions (see above) (the fleet-wide parts over the range of the per-round series, named again: a
    # function drops the name; measured at 1,000 nodes: 43 vs 57 ms of Prometheus' CPU at load 2.5, the same at
    # load 1.1)
    "rare": ('label_replace(last_over_time(asr_model_state{state="ok",instance!~"{nonok}"}[{window}]) != 1, '
             '"__name__", "asr_model_state", "", "") or (asr_model_state{instance=~"{nonok}"} == 1) or '
             'label_replace(last_over_time(asr_service_up[{window}]) != 1, "__name__", "asr_service_up", "", "") or '
             'asr_service_up{instance=~"{notup}"} or asr_model_info{sha256!="{digest}"}'),
    "detail": f'{{__name__=~"asr_({DETAIL_SERIES})",instance=~"{{instances}}"}}',
    "static": (f'{{__name__=~"asr_({STATIC_SERIES}|{SLOW_FACT_SERIES})",instance=~"{{instances}}"}} or '
               '(asr_model_state{instance=~"{instances}"} == 1)'),
}

# Once per instance new to the source: its request counters WINDOW_SECONDS ago, as the first sample of its window,
# so the first round already has rates (a one-shot `asrtop status` included). Every part keeps a label of its own:
# `or` matches label sets without the metric name.
SEED_QUERY = (
    f'label_replace(sum by (instance) (asr_requests_total offset {{w}}), "__name__", "{REQUESTS_SUM}", "", "") or '
    f'label_replace(sum by (instance, class) (asr_requests_total{{class="5xx"}} offset {{w}}), "__name__", '
    f'"{REQUESTS_5XX}", "", "") or '
    'label_replace({__name__=~"asr_(request_duration_seconds_sum|audio_seconds_total)"} offset {w}, "series", "$1", '
    '"__name__", "(.+)") or '
    f'label_replace(timestamp(asr_node_info offset {{w}}), "__name__", "{SCRAPED_AT}", "", "")'
).replace("{w}", f"{WINDOW_SECONDS:.0f}s")


def string_literal(text: str) -> str:
    """`text` escaped for a double-quoted PromQL string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def regex_literal(text: str) -> str:
    """`text` as a PromQL regex matching itself, escaped for a double-quoted PromQL string."""
    return re.escape(text).replace("\\", "\\\\").replace('"', '\\"')


def instances_selector(instances: Iterable[str]) -> str:
    """A regex for `instance=~"..."` matching exactly these instances (NOBODY when there are none)."""
    return "|".join(regex_literal(i) for i in sorted(instances)) or NOBODY


def fast_queries(window: float) -> dict[str, str]:
    """The per-round series over the last `window` seconds, by query name (FAST_PARTS)."""
    return {name: QUERIES[name].replace("{window}", f"{window * 1000:.0f}ms").replace("{instances}", "")
            for name in FAST_PARTS}


def lagging_query(selector: str) -> str:
    """All the per-round series of the instances `selector` matches, at an instant (their last samples within
    Prometheus' lookback); lagging_times_query says when they were scraped."""
    return f'{{__name__=~"asr_({"|".join(FAST_PARTS.values())})",instance=~"{selector}"}}'


def lagging_times_query(selector: str) -> str:
    return f'max by (instance) (timestamp(asr_node_info{{instance=~"{selector}"}}))'


def down_query(selector: str) -> str:
    """Which of the instances `selector` matches Prometheus cannot scrape (`up == 0`, named TARGET_DOWN): their
    asr_* series are gone."""
    return f'label_replace(up{{instance=~"{selector}"}} == 0, "__name__", "{TARGET_DOWN}", "", "")'


def detail_query(selector: str) -> str:
    """The slow gauges of the instances `selector` matches (".+": everybody's)."""
    return QUERIES["detail"].replace("{instances}", selector)


def static_query(selector: str) -> str:
    """The static facts (and the identity, probe and model state) of the instances `selector` matches."""
    return QUERIES["static"].replace("{instances}", selector)


def rare_query(not_ok: Iterable[str], not_up: Iterable[str], digest: str | None = None, window: float = 300.0) -> str:
    """The exceptions, with the instances known not to be "ok" / not up, the fleet's majority digest (none known:
    every digest is an exception, so none is asked for: NOBODY is none of them) and the range of the per-round
    series (seconds) filled in."""
    return (QUERIES["rare"].replace("{nonok}", instances_selector(not_ok)).replace("{window}", f"{window * 1000:.0f}ms")
            .replace("{notup}", instances_selector(not_up))
            .replace('sha256!="{digest}"', f'sha256!="{string_literal(digest)}"' if digest else f'sha256="{NOBODY}"'))


class PrometheusError(Exception):
    """Prometheus could not answer a query (one line)."""


@functools.lru_cache(maxsize=65536)
def instance_of_url(url: str | None) -> str | None:
    """host:port of an agent URL, as Prometheus' default `instance` label writes it."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def answer_result(url: str, status: int, body: bytes, result_type: str, what: str) -> list[dict]:
    """The result list of a Prometheus API answer of `result_type` (vector | matrix); else PrometheusError, one
    line naming `what` was asked ("query 'up'", "a range query")."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise PrometheusError(f"Prometheus at {url}: HTTP {status}, not a JSON answer "
                              "(is this the Prometheus base URL?)") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        err = doc.get("error") if isinstance(doc, dict) else None
        raise PrometheusError(f"Prometheus at {url}: {what} failed: {err or f'HTTP {status}'}")
    data = doc.get("data") or {}
    if data.get("resultType") != result_type or not isinstance(data.get("result"), list):
        raise PrometheusError(f"Prometheus at {url}: {what} did not return a {result_type}")
    return data["result"]


# One series of a matrix answer as Prometheus writes it (labels sorted, no whitespace), its last sample captured.
# A label value cannot hold `"` unescaped, so `},"values":[` cannot occur inside one; a value holding `}` makes
# the pattern miss that series, which the count of `{"metric":` then catches (the answer is decoded as JSON).
_MATRIX_HEAD = b'{"status":"success","data":{"resultType":"matrix","result":['
_LAST_SAMPLE = re.compile(rb'\{"metric":(\{[^}]*\}),"values":\[(?:\[[^\]]*\],)*\[([^,\]]*),"([^"]*)"\]\]\}')
LabelsCache = dict  # the raw labels of a series -> (instance, name, labels): decoded once, shared between rounds


def group_latest(url: str, status: int, body: bytes, what: str, into: dict[str, dict[str, Series]],
                 stamps: dict[str, float], cache: LabelsCache) -> int:
    """Each series' last sample of a matrix answer, grouped as group_by_instance groups a vector's (instance ->
    name -> [(labels, value)]), and each instance's latest sample time into `stamps`; the count of series.

    The hot path of a round: the labels of a series are decoded once and kept in `cache` (the same series come
    every round), its last sample taken by a pattern instead of decoding the whole answer (measured on a
    1,000-node round: about half the CPU of json.loads and grouping its dictionaries). An answer of another
    shape (an error, a label value holding `}`) is decoded as JSON, with the same result."""
    found = _LAST_SAMPLE.findall(body) if body.startswith(_MATRIX_HEAD) else None
    if found is None or len(found) != body.count(b'{"metric":'):
        found = [(r["metric"], r["values"][-1][0], r["values"][-1][1])
                 for r in answer_result(url, status, body, "matrix", what) if r.get("values")]
    isfinite = math.isfinite
    for raw_labels, raw_t, raw_v in found:
        hit = cache.get(raw_labels) if isinstance(raw_labels, bytes) else None
        if hit is None:
            labels = json.loads(raw_labels) if isinstance(raw_labels, bytes) else raw_labels
            hit = (labels.get("instance"), labels.get("__name__"), labels)
            if isinstance(raw_labels, bytes):
                cache[raw_labels] = hit
        inst, name, labels = hit
        if inst is None or name is None:
            continue
        try:
            v = float(raw_v)
            t = float(raw_t)
        except (TypeError, ValueError):
            continue
        if not isfinite(v):
            v = None  # NaN/Inf are "unavailable", never a number
        if t > stamps.get(inst, 0.0):
            stamps[inst] = t
        add_series(into, inst, name, labels, v)
    return len(found)


def fold_requests(by_instance: dict[str, dict[str, Series]]) -> None:
    """Each instance's request counters as the total and the 5xx count (REQUESTS_SUM, REQUESTS_5XX): the total is
    the latency histogram's count (REQUESTS_COUNT) where it came, else the sum of the classes that came (an answer
    that carries every class: the lagging query's)."""
    for metrics in by_instance.values():
        count = metrics.pop(REQUESTS_COUNT, None)
        series = metrics.pop("asr_requests_total", None)
        if count:
            metrics[REQUESTS_SUM] = count
        elif series:
            values = [v for _, v in series if v is not None]
            metrics[REQUESTS_SUM] = [(series[0][0], float(sum(values)) if values else None)]
        errors = [(lb, v) for lb, v in series if lb.get("class") == "5xx"] if series else None
        if errors:
            metrics[REQUESTS_5XX] = errors


# One series of a /federate answer (Prometheus' text exposition, each sample with its time in ms): `name{labels}`
# as one group (the labels cache's key), the value, the time. A label value cannot hold a newline (written `\n`),
# so a line is a series; `.*` runs to the last `}` of the line, past any `}` inside a label value.
_FEDERATED = re.compile(rb'^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+) (-?\d+)$', re.M)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r'\\(.)')


def federated_labels(raw: bytes) -> dict[str, str]:
    """The labels of one series of a /federate answer, `__name__` included: `name{a="x",b="y"}` (escapes undone:
    `\\`, `\"`, `\n`)."""
    text = raw.decode()
    brace = text.find("{")
    name = text if brace < 0 else text[:brace]
    labels = {"__name__": name}
    if brace >= 0:
        for key, value in _LABEL.findall(text, brace):
            labels[key] = _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
    return labels


def group_federated(url: str, status: int, body: bytes, what: str, since: float,
                    into: dict[str, dict[str, Series]], stamps: dict[str, float],
                    late: dict[str, dict[str, Series]], late_stamps: dict[str, float], cache: LabelsCache) -> int:
    """Each series' last sample of a /federate answer grouped as group_latest groups a range query's: those scraped
    at `since` or later into `into` and `stamps`, the older ones (each series' last sample within Prometheus'
    lookback: a scrape late or failed) into `late` and `late_stamps`; the count of series. Labels are decoded once
    per series and kept in `cache`, as group_latest's. Not a 200: PrometheusError, one line."""
    if status != 200:
        said = body.decode(errors="replace").strip().splitlines()
        raise PrometheusError(f"Prometheus at {url}: {what} failed: HTTP {status}"
                              + (f": {said[0][:200]}" if said else ""))
    isfinite = math.isfinite
    found = _FEDERATED.findall(body)
    since_ms = since * 1000
    for raw_labels, raw_v, raw_t in found:
        hit = cache.get(raw_labels)
        if hit is None:
            labels = federated_labels(raw_labels)
            hit = cache[raw_labels] = (labels.get("instance"), labels["__name__"], labels)
        inst, name, labels = hit
        if inst is None:
            continue
        try:
            v = float(raw_v)
        except ValueError:
            continue
        if not isfinite(v):
            v = None  # NaN/Inf are "unavailable", never a number
        t = int(raw_t)
        if t >= since_ms:
            group, times = into, stamps
        else:
            group, times = late, late_stamps
        t /= 1000
        if t > times.get(inst, 0.0):
            times[inst] = t
        add_series(group, inst, name, labels, v)
    return len(found)
