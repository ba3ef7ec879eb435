"""Prometheus rendering of a Snapshot: one Collector per concern, fresh *MetricFamily objects per scrape.

Names, units and labels are the contract documented in agents/README.md. An absent reading yields no
sample (never 0). The registry is private (no process/platform default collectors).
"""

from __future__ import annotations

from typing import Callable, Iterator

# not prometheus_client: importing it was a tenth of the agent's memory (exposition.py: the same text)
from .exposition import (Collector, CollectorRegistry, CounterMetricFamily, GaugeMetricFamily,
                         HistogramMetricFamily, generate_latest)

from .snapshot import Snapshot

MODEL_STATES = ("ok", "hashing", "missing", "error")


def _gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None):
    """A family with one sample, or None when the reading is absent."""
    if value is None:
        return None
    fam = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    if labels:
        fam.add_metric(list(labels.values()), value)
    else:
        fam.add_metric([], value)
    return fam


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.snapshot = snapshot

    def collect(self) -> Iterator:
        for fam in self.families(self.snapshot()):
            if fam is not None:
                yield fam

    def families(self, s: Snapshot):  # pragma: no cover - abstract
        raise NotImplementedError


class AgentMetrics(_SnapshotCollector):
    def families(self, s: Snapshot):
        info = GaugeMetricFamily("asr_node_info", "Node identity; always 1.",
                                 labels=["node", "agent_version", "gpu_source"])
        info.add_metric([s.node, s.agent_version, s.gpu.source], 1)
        yield info
        dur = GaugeMetricFamily("asr_agent_collect_duration_seconds", "Duration of the last collection, per collector.",
                                labels=["collector"])
        err = CounterMetricFamily("asr_agent_collect_errors", "Collector failures since the agent started.",
                                  labels=["collector"])
        for c in s.collectors:
            if c.duration_seconds is not None:
                dur.add_metric([c.name], c.duration_seconds)
            err.add_metric([c.name], c.errors_total)
        yield dur
        yield err
        yield _gauge("asr_agent_last_collect_timestamp_seconds", "Unix time of the last collection.", s.collected_at)


class HostMetrics(_SnapshotCollector):
    def families(self, s: Snapshot):
        h = s.host
        yield _gauge("asr_host_cpu_ratio", "Host CPU busy ratio over the last interval (0-1, all cores).", h.cpu_ratio)
        yield _gauge("asr_host_load1", "1-minute load average.", h.load1)
        yield _gauge("asr_host_load5", "5-minute load average.", h.load5)
        yield _gauge("asr_host_load15", "15-minute load average.", h.load15)
        yield _gauge("asr_host_memory_used_bytes", "Host memory in use (total - available).", h.memory_used_bytes)
        yield _gauge("asr_host_memory_total_bytes", "Host memory total.", h.memory_total_bytes)


class GpuMetrics(_SnapshotCollector):
    FIELDS = (
        ("asr_gpu_utilization_ratio", "GPU busy ratio (DCGM_FI_DEV_GPU_UTIL / 100).", "utilization_ratio"),
        ("asr_gpu_memory_used_bytes", "GPU framebuffer used (DCGM_FI_DEV_FB_USED, in bytes).", "memory_used_bytes"),
        ("asr_gpu_memory_total_bytes", "GPU framebuffer total (DCGM_FI_DEV_FB_TOTAL, in bytes).", "memory_total_bytes"),
        ("asr_gpu_temperature_celsius", "GPU temperature (DCGM_FI_DEV_GPU_TEMP).", "temperature_celsius"),
        ("asr_gpu_power_watts", "GPU power draw (DCGM_FI_DEV_POWER_USAGE).", "power_watts"),
        ("asr_gpu_power_limit_watts", "Enforced power limit (DCGM_FI_DEV_ENFORCED_POWER_LIMIT).", "power_limit_watts"),
    )

    def families(self, s: Snapshot):
        gpus = s.gpu.gpus
        info = GaugeMetricFamily("asr_gpu_info", "GPU identity; always 1. Names of simulated GPUs start with 'Simulated '.",
                                 labels=["gpu", "uuid", "name"])
        for g in gpus:
            info.add_metric([str(g.index), g.uuid or "", g.name or ""], 1)
        yield info
        for name, doc, attr in self.FIELDS:
            fam = GaugeMetricFamily(name, doc, labels=["gpu", "uuid"])
            for g in gpus:
                value = getattr(g, attr)
                if value is not None:
                    fam.add_metric([str(g.index), g.uuid or ""], value)
            yield fam
        procs = GaugeMetricFamily("asr_gpu_process_memory_bytes", "GPU memory used by a compute process.",
                                  labels=["gpu", "uuid", "pid", "process"])
        for g in gpus:
            for p in g.processes:
                if p.gpu_memory_bytes is not None:
                    procs.add_metric([str(g.index), g.uuid or "", str(p.pid), p.name or ""], p.gpu_memory_bytes)
        yield procs
        yield self._clock_events(gpus)
        ecc = CounterMetricFamily("asr_gpu_ecc_errors", "Volatile ECC errors since the driver loaded, by type "
                                  "(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL / _DBE_VOL_TOTAL); none without ECC.",
                                  labels=["gpu", "uuid", "type"])
        for g in gpus:
            for kind, n in (("corrected", g.ecc_errors_corrected_volatile),
                            ("uncorrected", g.ecc_errors_uncorrected_volatile)):
                if n is not None:
                    ecc.add_metric([str(g.index), g.uuid or "", kind], n)
        yield ecc

    @staticmethod
    def _clock_events(gpus):
        """1 per active reason, 0 per other reason the GPU supports; nothing where NVML reports no reasons."""
        fam = GaugeMetricFamily("asr_gpu_clock_event_active", "1 while NVML reports this clock event (throttle) "
                                "reason, 0 for the other reasons the GPU supports (DCGM_FI_DEV_CLOCK_THROTTLE_REASONS "
                                "decoded).", labels=["gpu", "uuid", "reason"])
        for g in gpus:
            if g.clock_event_reasons is None:
                continue
            for reason in dict.fromkeys((g.clock_event_reasons_supported or ()) + g.clock_event_reasons):
                fam.add_metric([str(g.index), g.uuid or "", reason], 1 if reason in g.clock_event_reasons else 0)
        return fam


class AsrMetrics(_SnapshotCollector):
    def families(self, s: Snapshot):
        a = s.asr
        yield _gauge("asr_service_up", "1 when the ASR probe succeeded (http: 2xx/3xx, tcp: connected, "
                     "ws: handshake done), else 0.",
                     None if a.up is None else (1 if a.up else 0))
        yield _gauge("asr_service_probe_latency_seconds", "Latency of the last health probe.", a.probe_latency_seconds)
        yield _gauge("asr_service_process_cpu_ratio", "CPU of the ASR process (ratio of one core; can exceed 1).",
                     a.process_cpu_ratio)
        yield _gauge("asr_service_process_resident_memory_bytes", "Resident memory of the ASR process.",
                     a.process_rss_bytes)
        if a.in_flight is not None:
            yield _gauge("asr_service_in_flight_requests", "Requests in progress (source: proxy = exact, "
                         "connections = established TCP connections to the ASR port).", a.in_flight,
                         {"source": a.in_flight_source or "connections"})


class RequestMetrics(_SnapshotCollector):
    """Only with --proxy: without it there is nothing exact to report, so no series at all."""

    def families(self, s: Snapshot):
        r = s.asr.requests
        if r is None:
            return
        total = CounterMetricFamily("asr_requests", "Requests answered through the agent's proxy, by status class.",
                                    labels=["class"])
        for cls, n in r.by_class:
            total.add_metric([cls], n)
        yield total
        hist = HistogramMetricFamily("asr_request_duration_seconds", "Request latency through the proxy "
                                     "(first request byte to last response byte).")
        hist.add_metric([], r.cumulative(), r.latency_sum_seconds)
        yield hist
        yield CounterMetricFamily("asr_request_received_bytes", "Request body bytes received from clients.",
                                  value=r.bytes_received_total)
        yield CounterMetricFamily("asr_response_sent_bytes", "Response body bytes sent to clients.",
                                  value=r.bytes_sent_total)
        yield CounterMetricFamily("asr_audio_seconds", "Seconds of audio transcribed (JSON `duration` of responses).",
                                  value=r.audio_seconds_total)


class StreamMetrics(_SnapshotCollector):
    """Only with --stream-port or --proxy-ws; frames and audio only where the proxy counts them."""

    def families(self, s: Snapshot):
        st = s.asr.streams
        if st is None:
            return
        yield _gauge("asr_streams_open", "Open streams (WebSockets): exact through the WS proxy, else established "
                     "server-side TCP connections on the stream port.", st.open)
        yield _gauge("asr_stream_oldest_seconds", "Age of the oldest open stream (since first seen); none when "
                     "no stream is open.", st.oldest_seconds)
        ages = GaugeMetricFamily("asr_streams_by_age", "Open streams aged <= le seconds (cumulative).",
                                 labels=["le"])
        for le, n in st.ages:
            ages.add_metric(["+Inf" if le is None else repr(float(le))], n)
        yield ages
        yield CounterMetricFamily("asr_streams_opened", "Streams first seen since the agent started.",
                                  value=st.opened_total)
        yield CounterMetricFamily("asr_streams_closed", "Streams gone since the agent started.", value=st.closed_total)
        if st.frames_total is not None:
            yield CounterMetricFamily("asr_stream_frames", "WebSocket data frames passed by the proxy (both ways).",
                                      value=st.frames_total)
            yield CounterMetricFamily("asr_stream_audio_seconds", "Seconds of audio streamed by clients through the "
                                      "proxy (PCM16 bytes / 2 / audio_fs).", value=st.audio_seconds_total)


class ModelMetrics(_SnapshotCollector):
    def families(self, s: Snapshot):
        m = s.model
        if m.sha256:
            yield _gauge("asr_model_info", "Manifest digest of all model dirs; always 1.", 1, {"sha256": m.sha256})
        dirs = GaugeMetricFamily("asr_model_dir_info", "Manifest digest of one model dir; always 1.",
                                 labels=["path", "sha256"])
        for d in m.dirs:
            if d.sha256:
                dirs.add_metric([d.path, d.sha256], 1)
        yield dirs
        yield _gauge("asr_model_files", "Files under the model dirs.", m.files)
        yield _gauge("asr_model_bytes", "Bytes under the model dirs.", m.bytes)
        state = GaugeMetricFamily("asr_model_state", "1 for the current model state, 0 for the others.",
                                  labels=["state"])
        for name in MODEL_STATES:
            state.add_metric([name], 1 if m.state == name else 0)
        yield state


def build_registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for cls in (AgentMetrics, HostMetrics, GpuMetrics, AsrMetrics, RequestMetrics, StreamMetrics, ModelMetrics):
        registry.register(cls(snapshot))
    return registry


def render(snap: Snapshot) -> bytes:
    """The /metrics body of one snapshot."""
    return generate_latest(build_registry(lambda: snap))
