"""A HistoryView from Prometheus range queries: what `asrtop check` gives the rules that need a trend.

The console's FleetHistory records one sample per refresh; a one-shot check has none, so it asks Prometheus
for the same metrics (asrtop.history.METRICS names) over the longest window the rules look back, one range
query per metric for the whole fleet (never one per node), on one time grid. Series are joined to nodes as
PrometheusSource joins them: the agent URL's host:port is the `instance`, else asr_node_info's `node` label.
A metric the agent does not export is all None (absent, never 0).
"""

from __future__ import annotations

import asyncio
import math
from typing import Mapping, Sequence

import aiohttp

from asrtop.fleet import FleetSnapshot
from asrtop.history import METRICS
from asrtop.sources.agents import describe_error
from asrtop.sources.prometheus_queries import PrometheusError, answer_result, instance_of_url

MAX_POINTS = 600  # per series: the console's 10 minutes at 1 s
RATE = "{rate}"  # filled with the rate window: at least 4 steps and 60 s, so a 15 s scrape has samples in it


def _rate(counter: str) -> str:
    return f"sum by (instance) (rate({counter}[{RATE}]))"


# history metric -> PromQL giving one series per `instance`; None: the agent's /metrics has nothing for it
PROMQL: dict[str, str | None] = {
    "in_flight": "sum by (instance) (asr_service_in_flight_requests)",
    "req_rate": _rate("asr_requests_total"),
    "err_rate": _rate('asr_requests_total{class="5xx"}'),
    "gpu_util": "avg by (instance) (asr_gpu_utilization_ratio)",
    # as FleetHistory: used over total of the GPUs reporting both
    "gpu_mem": "sum by (instance) (asr_gpu_memory_used_bytes) / sum by (instance) (asr_gpu_memory_total_bytes)",
    "gpu_mem_bytes": "sum by (instance) (asr_gpu_memory_used_bytes)",
    "gpu_mem_total_bytes": "sum by (instance) (asr_gpu_memory_total_bytes)",
    "rss_bytes": "sum by (instance) (asr_service_process_resident_memory_bytes)",
    "host_mem_bytes": "sum by (instance) (asr_host_memory_used_bytes)",
    "host_mem_total_bytes": "sum by (instance) (asr_host_memory_total_bytes)",
    "response_s": (f"{_rate('asr_request_duration_seconds_sum')} / "
                   f"{_rate('asr_request_duration_seconds_count')}"),
    "audio_rate": _rate("asr_audio_seconds_total"),
    "queued": None,  # the balancers' queue: HAProxy's, not in the agent's metrics
    "load": "sum by (instance) (asr_service_in_flight_requests)",  # the agent's own in flight, as FleetHistory's
    # history.asr_process without a pid (the agent exports none): -1 up, 0 down; a crash loop is then counted
    # from down -> up turns at the scrape interval (a restart shorter than one scrape is not seen)
    "asr_process": "-max by (instance) (asr_service_up)",
}
NODES = "max by (instance, node) (last_over_time(asr_node_info[{span}]))"


def history_span(settings) -> float:
    """Seconds the rules look back: a leak's window plus its duration, or the longest other duration."""
    return max(settings.leak_window + settings.leak_for, settings.slow_for, settings.queue_for, settings.errors_for,
               settings.gpu_for, settings.crash_loop_window)


class PrometheusHistory:
    """HistoryView over one time grid (timestamps oldest first); series(node, metric) has a value per stamp."""

    def __init__(self, times: Sequence[float], values: Mapping[str, Mapping[str, list[float | None]]]):
        self._times = list(times)
        self._values = values  # node -> metric -> values on the grid

    def timestamps(self) -> list[float]:
        return list(self._times)

    def nodes(self) -> tuple[str, ...]:
        return tuple(self._values)

    def series(self, node: str, metric: str) -> list[float | None]:
        if metric not in METRICS and metric not in PROMQL:
            raise ValueError(f"unknown history metric {metric!r}")
        by_metric = self._values.get(node)
        if by_metric is None:
            return []  # as FleetHistory: a node it never saw
        got = by_metric.get(metric)
        return list(got) if got is not None else [None] * len(self._times)


async def _range(session: aiohttp.ClientSession, url: str, promql: str, start: float, end: float, step: float,
                 timeout: float) -> list[dict]:
    try:
        async with session.post(f"{url}/api/v1/query_range",
                                data={"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                      "step": f"{step:g}"}) as resp:
            body, status = await resp.read(), resp.status
    except asyncio.CancelledError:
        raise
    except Exception as e:
        raise PrometheusError(f"Prometheus at {url}: {describe_error(e, timeout)}") from None
    return answer_result(url, status, body, "matrix", "a range query")


def _on_grid(values: list, start: float, step: float, n: int) -> list[float | None]:
    out: list[float | None] = [None] * n
    for t, v in values:
        k = round((float(t) - start) / step)
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if 0 <= k < n and math.isfinite(x):
            out[k] = x
    return out


async def fetch_history(url: str, snap: FleetSnapshot, settings, refresh: float = 1.0, timeout: float = 10.0,
                        span: float | None = None) -> PrometheusHistory:
    """The history of the snapshot's nodes up to snap.taken_at. Raises PrometheusError (one line)."""
    url = url.rstrip("/")
    span = history_span(settings) if span is None else span
    step = max(float(refresh), span / (MAX_POINTS - 1), 1.0)
    end = snap.taken_at
    start = end - math.floor(span / step) * step
    n = round((end - start) / step) + 1
    rate = f"{max(60, math.ceil(4 * step))}s"
    queries = {m: q.replace(RATE, rate) for m, q in PROMQL.items() if q is not None}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                     headers={"Accept": "application/json", "User-Agent": "asrtop"}) as session:
        answers = await asyncio.gather(
            _range(session, url, NODES.replace("{span}", f"{math.ceil(span) + 60}s"), start, end, step, timeout),
            *(_range(session, url, q, start, end, step, timeout) for q in queries.values()))
    instance_of_node = {}
    for r in answers[0]:
        labels = r.get("metric") or {}
        if labels.get("node") and labels.get("instance"):
            instance_of_node.setdefault(labels["node"], labels["instance"])
    by_instance: dict[str, dict[str, list[float | None]]] = {}
    for metric, result in zip(queries, answers[1:]):
        for r in result:
            inst = (r.get("metric") or {}).get("instance")
            if inst is not None:
                by_instance.setdefault(inst, {})[metric] = _on_grid(r.get("values") or [], start, step, n)
    values = {}
    for v in snap.nodes:
        inst = instance_of_url(v.config.agent)
        if inst not in by_instance:
            inst = instance_of_node.get(v.name, inst)
        if inst in by_instance:
            values[v.name] = by_instance[inst]
    return PrometheusHistory([start + k * step for k in range(n)], values)
