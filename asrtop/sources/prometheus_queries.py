"""The PromQL of PrometheusSource's rounds and the shape of Prometheus' answers (no I/O): what a round asks
for and why.

Prometheus' cost is per series it selects (~5 us each here), ours per series returned (decoding the JSON and
building readings), so a round asks only for what changes with every scrape, ~9 series per node with one GPU:
"fast" and "fast_gpu" (in flight, CPU, GPU use, the latency and audio counters), "requests" (the request
total and the 5xx count) and "ts" (when Prometheus scraped each agent, one series per instance without labels).

What changes rarely comes in three other ways:
- as exceptions ("rare"): targets Prometheus cannot scrape, models that left "ok", health probes not up, plus
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
node's slow gauges are at most DETAIL_SLICES rounds old, its versions and GPU names at most STATIC_SLICES.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Iterable
from urllib.parse import urlsplit

from asrtop.sources.prometheus_build import REQUESTS_5XX, REQUESTS_SUM, SCRAPED_AT, TARGET_DOWN
from asrtop.traffic import WINDOW_SECONDS

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
QUERIES = {  # run concurrently; Prometheus evaluates them in parallel
    "fast": f'{{__name__=~"asr_({FAST_SERIES})"}}',
    "fast_gpu": f'{{__name__=~"asr_({FAST_GPU_SERIES})"}}',
    # the fresh total and 5xx count; the per-class split comes with the details (two series per node, not ~4);
    # the 5xx sum keeps its class label: `or` matches label sets without the metric name
    "requests": (f'label_replace(sum by (instance) (asr_requests_total), "__name__", "{REQUESTS_SUM}", "", "") or '
                 f'label_replace(sum by (instance, class) (asr_requests_total{{class="5xx"}}), "__name__", '
                 f'"{REQUESTS_5XX}", "", "")'),
    "ts": "max by (instance) (timestamp(asr_node_info))",  # when Prometheus last scraped each agent
    # the exceptions (see above); `up == 0`: targets Prometheus cannot scrape (their asr_* series are gone)
    "rare": (f'label_replace(up == 0, "__name__", "{TARGET_DOWN}", "", "") or '
             'asr_model_state{state="ok",instance!~"{nonok}"} != 1 or (asr_model_state{instance=~"{nonok}"} == 1) or '
             'asr_service_up != 1 or asr_service_up{instance=~"{notup}"} or asr_model_info{sha256!="{digest}"}'),
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


def detail_query(selector: str) -> str:
    """The slow gauges of the instances `selector` matches (".+": everybody's)."""
    return QUERIES["detail"].replace("{instances}", selector)


def static_query(selector: str) -> str:
    """The static facts (and the identity, probe and model state) of the instances `selector` matches."""
    return QUERIES["static"].replace("{instances}", selector)


def rare_query(not_ok: Iterable[str], not_up: Iterable[str], digest: str | None = None) -> str:
    """The exceptions, with the instances known not to be "ok" / not up and the fleet's majority digest filled
    in (none known: every digest is an exception, so none is asked for: NOBODY is none of them)."""
    return (QUERIES["rare"].replace("{nonok}", instances_selector(not_ok))
            .replace("{notup}", instances_selector(not_up))
            .replace('sha256!="{digest}"', f'sha256!="{string_literal(digest)}"' if digest else f'sha256="{NOBODY}"'))


class PrometheusError(Exception):
    """Prometheus could not answer a query (one line)."""


def _value(raw: Any) -> float | None:
    try:
        v = float(raw[1])
    except (TypeError, ValueError, IndexError):
        return None
    return v if math.isfinite(v) else None  # NaN/Inf are "unavailable", never a number


def scrape_times(result: list[dict]) -> dict[str, float | None]:
    """instance -> when Prometheus last scraped it, from the "ts" answer."""
    out: dict[str, float | None] = {}
    for r in result:
        inst = r["metric"].get("instance")
        if inst is not None:
            out[inst] = _value(r["value"])
    return out


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
