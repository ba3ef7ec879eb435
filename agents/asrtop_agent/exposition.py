"""The Prometheus text format (0.0.4) for what metrics.py builds: the few names of prometheus_client's API it
uses (Gauge/Counter/HistogramMetricFamily, Collector, CollectorRegistry, generate_latest), with the same
output byte for byte (tests/unit/test_agent_idle.py compares the two).

Why not prometheus_client itself: importing it loads its HTTP server, WSGI app, urllib and email (~3 MiB,
a tenth of the agent's memory) for a few hundred lines of text a scrape. Its families, used in tests
against prometheus_client's own registry, work the same way (samples with name, labels, value).
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Iterator, NamedTuple, Sequence

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    exemplar: None = None
    native_histogram: None = None


class Metric:
    def __init__(self, name: str, documentation: str, typ: str):
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name, self.documentation, self.type = name, documentation, typ
        self.samples: list[Sample] = []


class _ValueFamily(Metric):
    """A family of one value per label set (gauges and counters): one `value`, or `labels` and add_metric."""

    SUFFIX = ""  # what each sample's name adds to the family's

    def __init__(self, name: str, documentation: str, typ: str, value: float | None, labels: Sequence[str] | None):
        super().__init__(name, documentation, typ)
        if labels is not None and value is not None:
            raise ValueError("Can only specify at most one of value and labels.")
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float, timestamp: float | None = None) -> None:
        self.samples.append(Sample(self.name + self.SUFFIX, dict(zip(self._labelnames, labels)), value, timestamp))


class GaugeMetricFamily(_ValueFamily):
    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None):
        super().__init__(name, documentation, "gauge", value, labels)


class CounterMetricFamily(_ValueFamily):
    """Named without `_total` (given with it, it is cut); its samples carry `_total`."""

    SUFFIX = "_total"

    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None):
        super().__init__(name[:-6] if name.endswith("_total") else name, documentation, "counter", value, labels)


class HistogramMetricFamily(Metric):
    def __init__(self, name: str, documentation: str, buckets: Sequence | None = None,
                 sum_value: float | None = None, labels: Sequence[str] | None = None):
        super().__init__(name, documentation, "histogram")
        if sum_value is not None and buckets is None:
            raise ValueError("sum value cannot be provided without buckets.")
        if labels is not None and buckets is not None:
            raise ValueError("Can only specify at most one of buckets and labels.")
        self._labelnames = tuple(labels or ())
        if buckets is not None:
            self.add_metric([], buckets, sum_value)

    def add_metric(self, labels: Sequence[str], buckets: Sequence, sum_value: float | None,
                   timestamp: float | None = None) -> None:
        """`buckets`: (le as text, cumulative count) pairs, the last one +Inf."""
        base = dict(zip(self._labelnames, labels))
        for bucket in buckets:
            le, value = bucket[:2]
            self.samples.append(Sample(self.name + "_bucket", {**base, "le": le}, value, timestamp))
        if float(buckets[0][0]) >= 0 and sum_value is not None:  # as prometheus_client: no sum with negative buckets
            self.samples.append(Sample(self.name + "_count", dict(base), buckets[-1][1], timestamp))
            self.samples.append(Sample(self.name + "_sum", dict(base), sum_value, timestamp))


class Collector:
    def collect(self) -> Iterable[Metric]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return []


class CollectorRegistry:
    def __init__(self, auto_describe: bool = False):
        self._collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def collect(self) -> Iterator[Metric]:
        for c in self._collectors:
            yield from c.collect()


def float_text(value: float) -> str:
    """A sample value as Go (and so prometheus_client) writes it."""
    d = float(value)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _sample_line(s: Sample) -> str:
    labels = ""
    if s.labels:
        labels = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items())) + "}"
    timestamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
    return f"{s.name}{labels} {float_text(s.value)}{timestamp}\n"


def generate_latest(registry: CollectorRegistry) -> bytes:
    out = []
    for metric in registry.collect():
        name = metric.name + "_total" if metric.type == "counter" else metric.name
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
        out.extend(_sample_line(s) for s in metric.samples)
    return "".join(out).encode("utf-8")
