"""Node facts from Prometheus (for fleets too big to poll, or where Prometheus scrapes the agents anyway).

A handful of PromQL instant queries per refresh, whatever the fleet size (never one per node), run
concurrently over one aiohttp session. Series are grouped by their `instance` label and joined to nodes:
a node's agent URL host:port is the `instance` (Prometheus' default), else `asr_node_info{node}` names it.
Each node's metrics become an `AgentStatus` (the same dataclasses the agent's /v1/status parses into),
so the TUI and CLI cannot tell the sources apart except by what metrics cannot carry (URLs, pids, p50).

Staleness, as in the agent source: `up == 0`, a node missing from Prometheus, or a last sample older than
3 refresh intervals give an `AgentReading` with an error and the fetched_at of the last good sample; the
last good status is kept, and `fleet.merge` marks the node stale. Set `cluster.refresh` no shorter than
the Prometheus scrape interval, or every node looks stale between scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import math
import re
import time
import zlib
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

import aiohttp

from asrtop.agentstatus import AgentStatus, ModelReading
from asrtop.config import NodeConfig
from asrtop.fleet import STALE_AFTER_MISSED, AgentReading
from asrtop.sources.agents import describe_error, fetch_model_files
from asrtop.sources.http import LoopSession
from asrtop.sources.prometheus_build import (  # the pure half
    REQUESTS_5XX,
    REQUESTS_SUM,
    SCRAPED_AT,
    UNKNOWN,
    DetailPart,
    Series,
    build_status,
    counters_of,
    detail_part,
    group_by_instance,
    model_reading,
    model_state_of,
)
from asrtop.traffic import WINDOW_SECONDS, CounterSample, slide, traffic

# Prometheus' cost is per series it selects (~5 us each here), ours per series returned, so a round asks
# for what changes every scrape ("fast": ~8 series per node with one GPU) and the details (totals, limits,
# labels, slow averages, latency and byte counters) for one tenth of the instances only (by a stable hash of
# the `instance` label, named in the query): every node's details are at most DETAIL_SLICES rounds old, and
# a node whose model state changed, or that is new, gets them at once.
# The request counters (total, 5xx, latency sum, audio) come every round: the nodes' req/s, 5xx/s, latency and
# audio/s are their changes over asrtop.traffic's window, as from the agents directly. Measured at 1,000
# nodes: instant counters cost a round ~15 ms of Prometheus time, rate() over the window ~120 ms.
FAST_SERIES = "service_up|service_in_flight_requests|host_cpu_ratio|request_duration_seconds_sum|audio_seconds_total"
FAST_GPU_SERIES = "gpu_utilization_ratio|gpu_memory_used_bytes"
DETAIL_SERIES = ("requests_total|host_load1|host_load5|host_load15|host_memory_used_bytes|host_memory_total_bytes"
                 "|service_probe_latency_seconds|service_process_cpu_ratio|service_process_resident_memory_bytes"
                 "|request_received_bytes_total|response_sent_bytes_total"
                 "|model_info|model_dir_info|model_files|model_bytes|gpu_info"
                 "|gpu_memory_total_bytes|gpu_temperature_celsius|gpu_power_watts|gpu_power_limit_watts"
                 "|gpu_process_memory_bytes")
DETAIL_SLICES = 10
QUERIES = {  # run concurrently; Prometheus evaluates them in parallel
    "fast": f'{{__name__=~"asr_({FAST_SERIES})"}}',
    "fast_gpu": f'{{__name__=~"asr_({FAST_GPU_SERIES})"}}',
    # the fresh total and 5xx count; the per-class split comes with the details (two series per node, not ~4);
    # the 5xx sum keeps its class label: `or` matches label sets without the metric name
    "requests": (f'label_replace(sum by (instance) (asr_requests_total), "__name__", "{REQUESTS_SUM}", "", "") or '
                 f'label_replace(sum by (instance, class) (asr_requests_total{{class="5xx"}}), "__name__", '
                 f'"{REQUESTS_5XX}", "", "")'),
    # one series per node (the "ok" one; 1 when ok) plus every state series of the nodes known not to be ok,
    # instead of all four per node: a node that leaves "ok" has its state looked up with its details
    "state": 'asr_model_state{state="ok"} or (asr_model_state{instance=~"{nonok}"} == 1)',
    "ts": "timestamp(asr_node_info)",  # when Prometheus last scraped each agent, with the node's identity labels
    "down": "up == 0",  # targets Prometheus cannot scrape (their asr_* series are gone)
    "detail": f'{{__name__=~"asr_({DETAIL_SERIES})",instance=~"{{instances}}"}}',
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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a round parses and joins (no awaits inside): the ~10^5 short-lived objects of a
    round otherwise trigger hundreds of young and several full collections of the whole heap per round
    (measured: about a third of the round's CPU). One young collection follows, after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _regex_literal(text: str) -> str:
    """`text` as a PromQL regex matching itself, escaped for a double-quoted PromQL string."""
    return re.escape(text).replace("\\", "\\\\").replace('"', '\\"')


class PrometheusError(Exception):
    """Prometheus could not answer a query (one line)."""


def _value(raw: Any) -> float | None:
    try:
        v = float(raw[1])
    except (TypeError, ValueError, IndexError):
        return None
    return v if math.isfinite(v) else None  # NaN/Inf are "unavailable", never a number


def _one_value(series: Series | None) -> float | None:
    return series[0][1] if series else None


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


class BuiltStatus(NamedTuple):
    """An instance's status as built last round, reused while neither its scrape nor its details change."""

    stamp: float | None  # Prometheus' scrape time it was built at
    details: dict[str, Series] | None  # the detail series it was built from (compared by identity)
    status: AgentStatus
    model: ModelReading  # status.model; reused while the details and the model state stay
    state: str | None  # the model state from the per-round series when it was built
    part: DetailPart  # detail_part(details), reused while the details stay


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


class PrometheusSource:
    """NodeFactsSource (asrtop.sources.live) reading the agents' metrics from a Prometheus server."""

    def __init__(self, url: str, refresh: float = 1.0, timeout: float | None = None):
        self.url = url.rstrip("/")
        self.refresh = float(refresh)
        self.timeout = float(timeout) if timeout is not None else max(0.8 * self.refresh, 0.5)
        self._http = LoopSession(self._new_session)
        self._readings: dict[str, AgentReading] = {}
        self._instance: dict[str, str] = {}  # node name -> instance, remembered while its series vanish
        self.last_query_seconds: float | None = None  # queries (answers parsed) in the last round
        self.last_build_seconds: float | None = None  # joining and building the readings after them
        self._round = 0
        self._details: dict[str, dict[str, Series]] = {}  # instance -> its last detail series
        self._states: dict[str, str | None] = {}  # instance -> model state last round
        self._slices: dict[str, int] = {}  # instance -> which round of DETAIL_SLICES refreshes its details
        self._built: dict[str, BuiltStatus] = {}  # instance -> its last status: reused until scrape or details change
        self.error: str | None = None  # NodeFactsSource.error: why the last poll's queries failed
        self._windows: dict[str, tuple[CounterSample, ...]] = {}  # instance -> its request counters per scrape

    def _new_session(self) -> aiohttp.ClientSession:
        """A session for the running loop; LoopSession calls it when the loop changes."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=len(QUERIES) * 2, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Accept": "application/json", "User-Agent": "asrtop"},
            auto_decompress=False,  # loopback/LAN: gzip of megabytes costs Prometheus more than it saves
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        await self._http.close()

    async def fetch_model_files(self, agent_url: str) -> list[dict] | str:
        """The file list comes from the agent itself (metrics carry only the digest), when reachable."""
        if not agent_url.startswith(("http://", "https://")):
            return f"{agent_url}: no agent URL configured for this node (Prometheus carries only the digest)"
        return await fetch_model_files(self._http.get(), agent_url, 5.0)

    async def query(self, promql: str) -> list[dict]:
        """One instant query; the vector's result list. Raises PrometheusError with one line."""
        session = self._http.get()
        for attempt in (1, 2):
            try:
                async with session.post(f"{self.url}/api/v1/query", data={"query": promql}) as resp:
                    body = await resp.read()
                    status = resp.status
                break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as e:
                if attempt == 1:
                    continue  # a kept-alive connection Prometheus closed: one fresh try says what is wrong
                raise PrometheusError(f"Prometheus at {self.url}: {describe_error(e, self.timeout)}") from None
            except Exception as e:
                raise PrometheusError(f"Prometheus at {self.url}: {describe_error(e, self.timeout)}") from None
        with _gc_paused():
            return answer_result(self.url, status, body, "vector", f"query {promql!r}")

    def _detail_query(self, instances: Iterable[str] | None, with_state: bool = False) -> str:
        """Details of these instances; None: this round's slice (everybody's on the first round)."""
        if instances is None:
            if not self._details:
                return QUERIES["detail"].replace("{instances}", ".+")
            part = self._round % DETAIL_SLICES
            instances = [i for i in self._details if self._slice_of(i) == part]
        # nobody in this slice: a name no target has (an empty regex would match series without the label)
        instances = sorted(instances)
        selector = (".+" if instances == [".+"] else "|".join(_regex_literal(i) for i in instances)) or "asrtop-none"
        query = QUERIES["detail"].replace("{instances}", selector)
        return query.replace(DETAIL_SERIES, DETAIL_SERIES + "|model_state") if with_state else query

    def _slice_of(self, instance: str) -> int:
        part = self._slices.get(instance)
        if part is None:
            part = self._slices[instance] = zlib.crc32(instance.encode()) % DETAIL_SLICES
        return part

    def _state_query(self) -> str:
        nonok = [i for i, state in self._states.items() if state is not None and state != "ok"]
        selector = "|".join(_regex_literal(i) for i in sorted(nonok)) or "asrtop-none"
        return QUERIES["state"].replace("{nonok}", selector)

    def round_queries(self) -> dict[str, str]:
        """The queries of the next round by name: QUERIES with this round's detail slice and the instances
        known not to be "ok" filled in."""
        return {**QUERIES, "detail": self._detail_query(None), "state": self._state_query()}

    async def poll(self, nodes: Sequence[NodeConfig]) -> Mapping[str, AgentReading]:
        t0 = time.perf_counter()
        queries = self.round_queries()
        try:
            answers = await asyncio.gather(*(self.query(q) for q in queries.values()))
            with _gc_paused():
                results = dict(zip(queries, answers))
                fetched = group_by_instance(results["detail"])
                by_instance = group_by_instance(results["fast"], results["fast_gpu"], results["requests"],
                                                results["state"])
                # a node that is new or whose model changed state gets its details (digest!) in this round;
                # one that left "ok" (its "ok" series is 0, its state unknown) gets its state series with them
                unknown: set[str] = set()
                changed = self._changed(by_instance, results["ts"], unknown)
                ask = (changed - set(fetched)) | unknown
            if ask:
                query = self._detail_query(ask if len(ask) <= 100 else (".+",), with_state=bool(unknown))
                answer = await self.query(query)
                with _gc_paused():
                    fetched.update(group_by_instance(answer))
                    for inst in ask:
                        fetched.setdefault(inst, {})  # an agent without detail series is not asked again
                    for inst, metrics in fetched.items():
                        series = metrics.pop("asr_model_state", None)
                        if inst in unknown:
                            if series:
                                by_instance.setdefault(inst, {})["asr_model_state"] = series
                            self._states[inst] = model_state_of(series or ())
            await self._seed_windows(by_instance)
        except PrometheusError as e:
            self.error = str(e)
            return self._all_failed(nodes, str(e))
        self.error = None
        self._round += 1
        self.last_query_seconds = time.perf_counter() - t0
        with _gc_paused():
            fresh = self._join(nodes, results, fetched, by_instance)
        self._readings = fresh
        self.last_build_seconds = time.perf_counter() - t0 - self.last_query_seconds
        return dict(fresh)

    async def _seed_windows(self, by_instance: Mapping[str, Mapping[str, Series]]) -> None:
        """The first sample of the windows of instances that count requests and have none yet (see SEED_QUERY)."""
        new = [inst for inst, metrics in by_instance.items() if REQUESTS_SUM in metrics and inst not in self._windows]
        if not new:
            return
        seeded = group_by_instance(await self.query(SEED_QUERY))
        for inst in new:
            metrics = seeded.get(inst, {})
            self._windows[inst] = slide((), counters_of(metrics, _one_value(metrics.get(SCRAPED_AT))))

    def _join(self, nodes: Sequence[NodeConfig], results: Mapping[str, list[dict]],
              fetched: Mapping[str, dict[str, Series]], by_instance: dict[str, dict[str, Series]]
              ) -> dict[str, AgentReading]:
        for inst, metrics in fetched.items():
            self._details[inst] = metrics  # the answer holds every detail series of the instance
        stamps: dict[str, float | None] = {}
        instance_by_node_label: dict[str, str] = {}
        for r in results["ts"]:  # timestamp() keeps asr_node_info's labels, so it doubles as node info
            labels = r["metric"]
            inst = labels.get("instance")
            if inst is None:
                continue
            stamps[inst] = _value(r["value"])
            by_instance.setdefault(inst, {})["asr_node_info"] = [(labels, 1.0)]
            if labels.get("node"):
                instance_by_node_label.setdefault(labels["node"], inst)
        down = {r["metric"].get("instance") for r in results["down"]}
        now = time.time()
        fresh: dict[str, AgentReading] = {}
        for cfg in nodes:
            inst = instance_of_url(cfg.agent)
            if inst not in by_instance:
                inst = instance_by_node_label.get(cfg.name) or self._instance.get(cfg.name) or inst
            if inst is None:
                continue  # no agent URL and no series naming it: nothing to say about this node
            self._instance[cfg.name] = inst
            metrics = by_instance.get(inst)  # the per-round series; _reading adds the details
            fresh[cfg.name] = self._reading(cfg, inst, metrics, stamps.get(inst), inst in down, now,
                                            self.last_query_seconds)
        if len(self._windows) > len(fresh):  # instances of nodes no longer configured
            kept = set(self._instance.values())
            self._windows = {inst: w for inst, w in self._windows.items() if inst in kept}
        return fresh

    def _changed(self, states: Mapping[str, Mapping[str, Series]], ts: list[dict], unknown: set[str]) -> set[str]:
        """Instances scraped now whose details are missing or whose model state differs from last round;
        those that left "ok" since (state not known yet: looked up with the details) go into `unknown`."""
        changed = set()
        for r in ts:
            inst = r["metric"].get("instance")
            if inst is None:
                continue
            state = model_state_of(states.get(inst, {}).get("asr_model_state", ()))
            if state is UNKNOWN:
                unknown.add(inst)
                changed.add(inst)
                continue
            if inst not in self._details or self._states.get(inst, state) != state:
                changed.add(inst)
            self._states[inst] = state
        return changed

    def _reading(self, cfg: NodeConfig, inst: str, metrics: dict[str, Series] | None, stamp: float | None,
                 down: bool, now: float, latency: float) -> AgentReading:
        url = cfg.agent or f"prometheus:{inst}"
        prev = self._readings.get(cfg.name)
        if down:
            return self._failed(url, prev, f"Prometheus cannot scrape {inst} (up == 0)")
        if not metrics or "asr_node_info" not in metrics:
            return self._failed(url, prev, f"Prometheus has no asr_* series for {inst} (node {cfg.name})")
        built = self._built.get(inst)
        details = self._details.get(inst)
        if built is not None and stamp is not None and built.stamp == stamp and built.details is details:
            status = built.status  # no scrape since the last round (refresh < scrape interval): nothing new
        else:
            # the model reading only changes with the details (digest, files) or the state: reuse it
            state = self._states.get(inst)
            same = built is not None and built.details is details
            model = built.model if same and built.state == state else None
            part = built.part if same else detail_part(details or {})
            if model is None and details:
                model = model_reading({**details, **metrics})
            status = build_status(cfg.name, metrics, stamp, model, part)
            self._built[inst] = BuiltStatus(stamp, details, status, status.model, state, part)
        # the counters as of this scrape, over the instance's window (a round without a new scrape adds nothing)
        window = self._windows[inst] = slide(self._windows.get(inst, ()), counters_of(metrics, stamp))
        rates = traffic(window)
        if stamp is not None and now - stamp > STALE_AFTER_MISSED * self.refresh:
            return AgentReading(url, status, stamp, f"Prometheus' last sample of {inst} is {now - stamp:.0f}s old",
                                latency, rates)
        return AgentReading(url, status, stamp if stamp is not None else now, None, latency, rates)

    @staticmethod
    def _failed(url: str, prev: AgentReading | None, error: str) -> AgentReading:
        if prev is None:
            return AgentReading(url, None, None, error, None)
        return AgentReading(url, prev.status, prev.fetched_at, error, prev.latency_seconds, prev.traffic)

    def _all_failed(self, nodes: Sequence[NodeConfig], error: str) -> dict[str, AgentReading]:
        out = {}
        for cfg in nodes:
            prev = self._readings.get(cfg.name)
            if cfg.agent is None and prev is None:
                continue
            out[cfg.name] = self._failed(prev.url if prev else cfg.agent or "", prev, error)
        self._readings = out
        return dict(out)
