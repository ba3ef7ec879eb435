"""PrometheusSource's pure half: instant-query results -> per-instance series -> AgentStatus.

A round's per-scrape series and an instance's detail series (refreshed a slice per round) meet here:
detail_part() reduces the details once per answer, build_status() adds each round's series to it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NamedTuple

from asrtop.agentstatus import (
    GPU_SOURCES,
    MODEL_STATES,
    AgentStatus,
    AsrReading,
    GpuProcess,
    GpuReading,
    HostReading,
    ModelDir,
    ModelReading,
    RequestStats,
    StreamsReading,
)
from asrtop.traffic import CounterSample

REQUESTS_SUM = "asr_requests_sum"  # our name for the requests answered: all of asr_requests_total's classes
REQUESTS_5XX = "asr_requests_5xx"  # our name for sum by (instance, class) (asr_requests_total{class="5xx"})
SCRAPED_AT = "asr_scraped_at"  # our name for timestamp(asr_node_info ...): when the counters beside it were scraped
TARGET_DOWN = "asr_target_down"  # our name for `up == 0`: a target Prometheus cannot scrape
Series = list[tuple[dict, float | None]]  # (labels, value) per series of one metric
UNKNOWN = "?"  # model state of a node whose "ok" series is 0 and whose other state series were not asked for


def model_state_of(series: Iterable[tuple[dict, float | None]]) -> str | None:
    """The model state from an instance's asr_model_state series: the one at 1; UNKNOWN when only "ok" at 0 came."""
    left_ok = False
    for labels, v in series:
        if v == 1:
            return labels.get("state")
        left_ok = True
    return UNKNOWN if left_ok else None


def add_series(into: dict[str, dict[str, Series]], inst: str, name: str, labels: dict, value: float | None) -> None:
    """One series' (labels, value) under its instance and metric name (group_by_instance's shape)."""
    metrics = into.get(inst)
    if metrics is None:
        metrics = into[inst] = {}
    series = metrics.get(name)
    if series is None:
        metrics[name] = [(labels, value)]
    else:
        series.append((labels, value))


def group_by_instance(*results: list[dict], into: dict[str, dict[str, Series]] | None = None
                      ) -> dict[str, dict[str, Series]]:
    """instance -> metric name -> [(labels, value)], from raw vector results (the hot loop of a round);
    added to `into` when given."""
    out: dict[str, dict[str, Series]] = {} if into is None else into
    isfinite = math.isfinite
    for result in results:
        for r in result:
            labels = r.get("metric") or {}
            inst = labels.get("instance")
            name = labels.get("__name__")
            if inst is None or name is None:
                continue
            try:
                v = float(r["value"][1])
                if not isfinite(v):
                    v = None  # NaN/Inf are "unavailable", never a number
            except (KeyError, TypeError, ValueError, IndexError):
                v = None
            add_series(out, inst, name, labels, v)
    return out


def one_value(series: Series | None) -> float | None:
    """The value of a metric's one series (None: no series)."""
    return series[0][1] if series else None


def _one(metrics: Mapping[str, Series], name: str) -> float | None:
    """one_value(metrics.get(name)), written out: the per-node hot path reads ~20 a node."""
    series = metrics.get(name)
    return series[0][1] if series else None


def _values(metrics: Mapping[str, Series], names: tuple[str, ...]) -> list[float | None]:
    """_one of each name, in one call (the per-node hot path reads many)."""
    return [series[0][1] if series else None for series in map(metrics.get, names)]


def _int(v: float | None) -> int | None:
    return None if v is None else int(v)


GPU_METRICS = ("asr_gpu_info", "asr_gpu_utilization_ratio", "asr_gpu_memory_used_bytes", "asr_gpu_memory_total_bytes",
               "asr_gpu_temperature_celsius", "asr_gpu_power_watts", "asr_gpu_power_limit_watts",
               "asr_gpu_process_memory_bytes")
FAST_GPU_METRICS = ("asr_gpu_utilization_ratio", "asr_gpu_memory_used_bytes")  # the rest come with the details
_GPU_UTIL, _GPU_MEMORY = FAST_GPU_METRICS


def _gpu_details(metrics: Mapping[str, Series]) -> dict[str, dict[str, Any]]:
    """gpu label -> what the detail series say of it (uuid, name, totals, processes), in GPU_METRICS order."""
    by_gpu: dict[str, dict[str, Any]] = {}
    for name in GPU_METRICS:
        if name in FAST_GPU_METRICS:
            continue
        for labels, v in metrics.get(name, ()):
            g = labels.get("gpu")
            if g is None:
                continue
            d = by_gpu.get(g)
            if d is None:
                d = by_gpu[g] = {"uuid": labels.get("uuid"), "procs": []}
            if name == "asr_gpu_info":
                d["name"] = labels.get("name")
            elif name == "asr_gpu_process_memory_bytes":
                pid = labels.get("pid", "")
                if pid.isascii() and pid.isdigit():
                    d["procs"].append(GpuProcess(int(pid), labels.get("process"), _int(v)))
            else:
                d[name] = v
    for d in by_gpu.values():
        if len(d["procs"]) > 1:
            d["procs"].sort(key=lambda p: p.pid)
        d["procs"] = tuple(d["procs"])
    return by_gpu


def _gpus(metrics: Mapping[str, Series], details: Mapping[str, dict[str, Any]] | None = None
          ) -> tuple[GpuReading, ...]:
    """GPU readings from the fast series in `metrics` and the detail part (from `metrics` when not given)."""
    if details is None:
        details = _gpu_details(metrics)
    fast: dict[str, dict[str, Any]] = {}
    for name in FAST_GPU_METRICS:
        for labels, v in metrics.get(name, ()):
            g = labels.get("gpu")
            if g is None:
                continue
            d = fast.get(g)
            if d is None:
                d = fast[g] = {"uuid": labels.get("uuid")}
            d[name] = v
    if not details and not fast:
        return ()
    gpus = []
    empty: dict[str, Any] = {}
    order = list(details)
    order += [g for g in fast if g not in details]
    for g in order:
        d = details.get(g, empty)
        f = fast.get(g, empty)
        used = f.get("asr_gpu_memory_used_bytes")
        gpus.append(GpuReading(
            index=int(g) if g.isascii() and g.isdigit() else len(gpus),
            # as the series come in GPU_METRICS order: asr_gpu_info's uuid, else a fast series', else any
            uuid=d.get("uuid") if "name" in d or not f else f.get("uuid"),
            name=d.get("name"),
            utilization_ratio=f.get("asr_gpu_utilization_ratio"),
            memory_used_bytes=None if used is None else int(used),
            memory_total_bytes=_int(d.get("asr_gpu_memory_total_bytes")),
            temperature_celsius=d.get("asr_gpu_temperature_celsius"),
            power_watts=d.get("asr_gpu_power_watts"),
            power_limit_watts=d.get("asr_gpu_power_limit_watts"),
            processes=d.get("procs", ()),
        ))
    if len(gpus) > 1:
        gpus.sort(key=lambda x: x.index)
    return tuple(gpus)


class DetailPart(NamedTuple):
    """What build_status takes from an instance's detail series (refreshed a slice per round): detail_part()."""

    load1: float | None
    load5: float | None
    load15: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    probe_latency_seconds: float | None
    process_cpu_ratio: float | None
    process_rss_bytes: int | None
    by_class: dict[str, int] | None  # requests per class; None: the agent counts no requests
    bytes_received_total: int | None
    bytes_sent_total: int | None
    gpus: dict[str, dict[str, Any]]  # gpu label -> its detail readings (_gpu_details)


def _requests(metrics: Mapping[str, Series], in_flight: int | None, part: DetailPart) -> RequestStats | None:
    by_class = part.by_class
    total = _one(metrics, REQUESTS_SUM)
    if by_class is None and total is None:
        return None  # the agent counts requests only with its in-path proxy
    return RequestStats(
        # the per-round sum when there is one (by_class is refreshed with the details, so it may lag)
        total=int(total) if total is not None else sum(by_class.values()), by_class=by_class or {},
        # per round, with the total: the window's latency and audio rates need them from the same scrape
        in_flight=in_flight, latency_sum_seconds=_one(metrics, "asr_request_duration_seconds_sum"),
        audio_seconds_total=_one(metrics, "asr_audio_seconds_total"),
        bytes_received_total=part.bytes_received_total, bytes_sent_total=part.bytes_sent_total,
    )


def detail_part(metrics: Mapping[str, Series]) -> DetailPart:
    """What build_status takes from the detail series (refreshed a slice per round), computed once per answer."""
    series = metrics.get("asr_requests_total")
    return DetailPart(
        load1=_one(metrics, "asr_host_load1"),
        load5=_one(metrics, "asr_host_load5"),
        load15=_one(metrics, "asr_host_load15"),
        memory_used_bytes=_int(_one(metrics, "asr_host_memory_used_bytes")),
        memory_total_bytes=_int(_one(metrics, "asr_host_memory_total_bytes")),
        probe_latency_seconds=_one(metrics, "asr_service_probe_latency_seconds"),
        process_cpu_ratio=_one(metrics, "asr_service_process_cpu_ratio"),
        process_rss_bytes=_int(_one(metrics, "asr_service_process_resident_memory_bytes")),
        by_class={labels.get("class", "?"): int(v) for labels, v in series if v is not None} if series else None,
        bytes_received_total=_int(_one(metrics, "asr_request_received_bytes_total")),
        bytes_sent_total=_int(_one(metrics, "asr_response_sent_bytes_total")),
        gpus=_gpu_details(metrics),
    )


def model_reading(metrics: Mapping[str, Series]) -> ModelReading:
    state = "missing"
    for labels, v in metrics.get("asr_model_state", ()):
        if v == 1 and labels.get("state") in MODEL_STATES:
            state = labels["state"]
    info = metrics.get("asr_model_info")
    sha = (info[0][0].get("sha256") or None) if info else None
    dirs = tuple(
        ModelDir(labels.get("path", "?"), "ok" if labels.get("sha256") else state, labels.get("sha256") or None,
                 None, None, None)
        for labels, _ in sorted(metrics.get("asr_model_dir_info", ()), key=lambda s: s[0].get("path", ""))
    )
    return ModelReading(state, sha, _int(_one(metrics, "asr_model_files")), _int(_one(metrics, "asr_model_bytes")),
                        None, dirs)


# the per-round series the service reading shows besides the in-flight requests (in their order in asr_in)
ASR_INPUTS = ("asr_service_up", REQUESTS_SUM, "asr_request_duration_seconds_sum", "asr_audio_seconds_total",
              "asr_streams_open", "asr_stream_oldest_seconds")


class Reused(NamedTuple):
    """An instance's last sub-readings with the per-round inputs they were built from (the detail part compared
    by identity): build_status_reusing() hands them on while the inputs are equal, instead of building them
    again (fewer objects built, and kept for the collector to walk: a node's GPU, service and request figures
    often stand still from one scrape to the next; its scrape time does not, so the status is new)."""

    part: DetailPart
    host_in: tuple
    host: HostReading
    gpus_in: tuple
    gpus: tuple[GpuReading, ...]
    asr_in: tuple
    asr: AsrReading


def build_status(node: str, metrics: Mapping[str, Series], scraped_at: float | None = None,
                 model: ModelReading | None = None, part: DetailPart | None = None) -> AgentStatus:
    """An AgentStatus from one instance's series; what metrics do not carry stays None.

    `part`: detail_part() of the instance's detail series when `metrics` holds only the per-round ones
    (computed from `metrics` when not given; `model` then comes from the caller too). collected_at is the
    agent's own collection time when the series carry it, else when Prometheus scraped it (the per-round
    queries leave that series out: the scrape time is within an interval)."""
    return build_status_reusing(node, metrics, scraped_at, model, part)[0]


def build_status_reusing(node: str, metrics: Mapping[str, Series], scraped_at: float | None = None,
                         model: ModelReading | None = None, part: DetailPart | None = None,
                         last: Reused | None = None) -> tuple[AgentStatus, Reused]:
    """build_status, reusing `last`'s sub-readings whose inputs did not change; with what to pass next time."""
    if part is None:
        part = detail_part(metrics)
    same_part = last is not None and last.part is part
    info = metrics["asr_node_info"][0][0]
    gpu_source = info.get("gpu_source")
    version = info.get("agent_version") or None
    host_in = (_one(metrics, "asr_host_cpu_ratio"),)
    if same_part and last.host_in == host_in:
        host = last.host
    else:
        host = HostReading(cpu_ratio=host_in[0], load1=part.load1, load5=part.load5, load15=part.load15,
                           memory_used_bytes=part.memory_used_bytes, memory_total_bytes=part.memory_total_bytes)
    # the series themselves: their labels (with the name) are the same dicts every round (group_latest's cache),
    # so comparing them is mostly comparing identities
    gpus_in = (*metrics.get(_GPU_UTIL, ()), *metrics.get(_GPU_MEMORY, ()))
    gpus = last.gpus if same_part and last.gpus_in == gpus_in else _gpus(metrics, part.gpus)
    in_flight_series = metrics.get("asr_service_in_flight_requests") or []
    asr_in = (*in_flight_series, *_values(metrics, ASR_INPUTS))  # (each in-flight series' labels name it)
    if same_part and last.asr_in == asr_in:
        asr = last.asr
    else:
        asr = _asr(metrics, in_flight_series, part)
    if same_part and host is last.host and gpus is last.gpus and asr is last.asr:
        reused = last  # not an equal new one: every object a round keeps is walked by the next young collection
    else:
        reused = Reused(part, host_in, host, gpus_in, gpus, asr_in, asr)
    status = AgentStatus(
        node=info.get("node") or node,
        agent_version=version,
        collected_at=_one(metrics, "asr_agent_last_collect_timestamp_seconds") or scraped_at,
        interval_seconds=None,
        host=host,
        gpu_source=gpu_source if gpu_source in GPU_SOURCES else "none",
        gpu_error=None,
        gpus=gpus,
        asr=asr,
        model=model if model is not None else model_reading(metrics),
        versions={"agent": version} if version else {},
    )
    return status, reused


def _asr(metrics: Mapping[str, Series], in_flight_series: Series, part: DetailPart) -> AsrReading:
    flights = [v for _, v in in_flight_series if v is not None]
    in_flight = int(sum(flights)) if flights else None
    sources = {labels.get("source") for labels, _ in in_flight_series}
    up = _one(metrics, "asr_service_up")
    return AsrReading(
        up=None if up is None else up == 1,
        probe_latency_seconds=part.probe_latency_seconds,
        process_cpu_ratio=part.process_cpu_ratio,
        process_rss_bytes=part.process_rss_bytes,
        in_flight=in_flight,
        in_flight_source=sources.pop() if len(sources) == 1 else None,
        requests=_requests(metrics, in_flight, part),
        streams=_streams(metrics),
    )


def _streams(metrics: Mapping[str, Series]) -> StreamsReading | None:
    """The live streams and the oldest one's age (the per-round series); None when the agent has no stream
    port. The age distribution and the totals stay with /v1/status: the console shows the count and the age."""
    n = _one(metrics, "asr_streams_open")
    if n is None or math.isnan(n):
        return None
    oldest = _one(metrics, "asr_stream_oldest_seconds")
    return StreamsReading(open=int(n), oldest_seconds=oldest if n and oldest is not None and not math.isnan(oldest)
                          else None)


def counters_of(metrics: Mapping[str, Series], scraped_at: float | None) -> CounterSample | None:
    """The instance's request counters as Prometheus scraped them (for asrtop.traffic's window); None when the
    agent counts no requests (no --proxy) or the scrape time is unknown."""
    total = _one(metrics, REQUESTS_SUM)
    if total is None or scraped_at is None:
        return None
    errors = _one(metrics, REQUESTS_5XX)  # no series: the agent never answered a 5xx (a series per class seen)
    return (scraped_at, int(total), int(errors or 0), _one(metrics, "asr_request_duration_seconds_sum"),
            _one(metrics, "asr_audio_seconds_total"))
