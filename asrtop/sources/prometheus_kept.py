"""What a PrometheusSource keeps per instance between rounds: the slow facts that do not come every round
(asrtop.sources.prometheus_queries says which and when), the model state and probe as the exceptions leave
them, and which instances' facts a round asks for (its slices, and at once).

The details are kept packed (`pack`): one flat tuple of strings and numbers per instance and part. Kept as they
came (per instance a dict of lists of (labels dict, value) tuples), a node's details were ~30 objects that the
cyclic collector walked in every collection for as long as they were kept (up to STATIC_SLICES rounds): a tuple
holding a dict is never untracked. At 1,000 nodes that was ~30,000 of the ~58,000 objects a full collection
walked in a console on the Prometheus source (measured after 12 rounds; the full collection after
tests/benchmarks/bench_sources_prometheus.py's rounds took 62 ms, 26 ms packed), and each round's slice added
~3,600 to the young collections. A tuple of strings and numbers the collector stops tracking the first time it
walks it. The round its details come the build reads them as they came (`fresh`); they are unpacked only when
an instance's model state changes later (asrtop.sources.prometheus).
"""

from __future__ import annotations

import zlib
from typing import Mapping

from asrtop.sources.prometheus_build import UNKNOWN, Series, model_state_of, one_value
from asrtop.sources.prometheus_queries import detail_query, instances_selector, rare_query, static_query

_NO_SERIES: dict[str, Series] = {}
# An instance's kept series in one flat tuple: per metric its name and count of series, per series its count of
# labels, their keys, their values and the series' value. One tuple of strings and numbers (None for a value
# Prometheus had as NaN) is untracked by the first collection that walks it; nested tuples would each need one more
# (the collector walks a parent before the children it finds through it, and a tuple still holding a tracked one
# stays tracked).
Packed = tuple
Kept = Packed | dict  # what KeptFacts keeps of an instance's part: packed, or as it came (`packed` False)


def pack(metrics: Mapping[str, Series]) -> Packed:
    """`metrics` (metric name -> series, as group_by_instance groups an instance's) as one flat tuple."""
    out: list = []
    for name, series in metrics.items():
        out += (name, len(series))
        for labels, value in series:
            out += (len(labels), *labels, *labels.values(), value)  # one step a series: 0.6x the CPU of one a label
    return tuple(out)


def unpack(packed: Packed | None) -> dict[str, Series]:
    """The series `pack` packed; of packed tuples joined end to end, a metric packed twice is the later one."""
    packed = packed or ()
    out: dict[str, Series] = {}
    i, end = 0, len(packed)
    while i < end:
        name, count = packed[i], packed[i + 1]
        i += 2
        series = []
        for _ in range(count):
            keys = i + 1
            values = keys + packed[i]
            i = values + packed[i]
            series.append((dict(zip(packed[keys:values], packed[values:i])), packed[i]))
            i += 1
        out[name] = series
    return out


class KeptFacts:
    """Per instance: its slow gauges and static facts (merged in `details`), model digest, state, probe and
    identity labels, as the last answers that carried them left them."""

    def __init__(self, detail_slices: int, static_slices: int, packed: bool = True):
        # packed False: the details kept as they came (a command that reads the fleet once or twice, `status` and
        # `check`, keeps them for no collection to walk, and packing every node's in its first round was 11 % of
        # the round's profiled CPU at 1,000 nodes)
        self.packed = packed
        self.detail_slices = detail_slices  # rounds over which every node's slow gauges come once (1: every round)
        self.static_slices = static_slices  # and its static facts
        # instance -> its last detail series (static facts, then gauges), packed: a new tuple when either part is new
        self.details: dict[str, Kept] = {}
        self.gauges: dict[str, Kept] = {}  # instance -> its last slow gauges ("detail" answer)
        self.static: dict[str, Kept] = {}  # instance -> its last static facts ("static" answer)
        # instance -> its details unpacked, for those whose details came this round: the round's build reads them
        # (no unpacking back what take() just packed: every node's in a first round), then drops them (_finish)
        self.fresh: dict[str, dict[str, Series]] = {}
        self.digests: dict[str, str | None] = {}  # instance -> the model digest of its static facts
        self.majority: str | None = None  # the digest most instances have, asked as such in this round's "rare"
        self.states: dict[str, str | None] = {}  # instance -> model state last round (UNKNOWN: not found out)
        self.up: dict[str, float | None] = {}  # instance -> asr_service_up last round
        self.info: dict[str, dict[str, str]] = {}  # instance -> asr_node_info's labels (node, versions)
        self._slices: dict[str, int] = {}  # instance -> a stable number: its rounds (_slice_of)

    def queries(self, round_: int, window: float) -> dict[str, str]:
        """The round's "rare", "detail" and "static" queries: this round's slices of the known instances
        (everybody's on the first round), the instances known not to be "ok" / not up, the fleet's majority
        digest and the range of the per-round series filled in."""
        not_ok = [i for i, state in self.states.items() if state is not None and state != "ok"]
        not_up = [i for i, up in self.up.items() if up is not None and up != 1]
        self.majority = self._majority_digest()
        if self.details:
            gauges, static = round_ % self.detail_slices, round_ % self.static_slices
            detail = detail_query(instances_selector(i for i in self.details
                                                     if self._slice_of(i) % self.detail_slices == gauges))
            static = static_query(instances_selector(i for i in self.details
                                                     if self._slice_of(i) % self.static_slices == static))
        else:
            detail, static = detail_query(".+"), static_query(".+")
        return {"rare": rare_query(not_ok, not_up, self.majority, window), "detail": detail, "static": static}

    def missing(self, states: Mapping[str, str | None], static: Mapping[str, Mapping[str, Series]],
                rare: Mapping[str, Mapping[str, Series]]) -> set[str]:
        """The instances whose details must come at once: new, or their model changed state or digest, or it
        left "ok" (to what?)."""
        return {inst for inst, state in states.items()
                if inst not in static and (state is UNKNOWN or inst not in self.details or inst not in self.info
                                           or state != self.states.get(inst)
                                           or self._digest_changed(inst, state, rare))}

    def _slice_of(self, instance: str) -> int:
        """A stable number for the instance: its slow gauges come in the rounds where it equals the round's
        number modulo detail_slices, its static facts where it does so modulo static_slices."""
        part = self._slices.get(instance)
        if part is None:
            part = self._slices[instance] = zlib.crc32(instance.encode())
        return part

    def _majority_digest(self) -> str | None:
        counts: dict[str, int] = {}
        for digest in self.digests.values():
            if digest is not None:
                counts[digest] = counts.get(digest, 0) + 1
        return max(counts, key=counts.__getitem__) if counts else None

    def round_states(self, stamps: Mapping[str, float | None], rare: Mapping[str, Mapping[str, Series]],
                     static: Mapping[str, Mapping[str, Series]]) -> dict[str, str | None]:
        """Each scraped instance's model state this round: from the exceptions when they name it (UNKNOWN when
        it left "ok" for a state not asked for), else from the static facts when they came, else as last round:
        "ok" stays "ok" (it would be an exception otherwise), any other state is asked for by name, so a
        known not-"ok" instance the exceptions do not name has no state series (None). UNKNOWN: never seen."""
        states: dict[str, str | None] = {}
        for inst in stamps:
            series = rare.get(inst, _NO_SERIES).get("asr_model_state")
            if series:
                state = model_state_of(series)
            elif inst in static:
                state = model_state_of(static[inst].get("asr_model_state", ()))
            elif inst in self.states:
                state = "ok" if self.states[inst] == "ok" else None
            else:
                state = UNKNOWN
            states[inst] = state
        return states

    def _digest_changed(self, inst: str, state: str | None, rare: Mapping[str, Mapping[str, Series]]) -> bool:
        """Whether an "ok" instance's digest this round (named by the exceptions when it is not the majority's)
        differs from the one its static facts carry. An instance whose static facts carry none and that the
        exceptions do not name is left to its static round (the majority's digest or none: it cannot tell)."""
        if state != "ok":
            return False  # a state that is not "ok" is asked for by name: a change of state brings the details
        named = rare.get(inst, _NO_SERIES).get("asr_model_info")
        kept = self.digests.get(inst)
        if named:
            return named[0][0].get("sha256") != kept
        return kept is not None and self.majority is not None and kept != self.majority

    def take(self, gauges: Mapping[str, dict[str, Series]], static: Mapping[str, dict[str, Series]],
             states: dict[str, str | None], rare: Mapping[str, Mapping[str, Series]]) -> None:
        """Keep the details that came this round (without the slow facts, kept apart) and settle every scraped
        instance's model state and probe as round_states does the state: exceptions, else details, else kept."""
        for inst, metrics in static.items():
            info = metrics.pop("asr_node_info", None)
            if info:
                self.info[inst] = info[0][0]
            state = metrics.pop("asr_model_state", None)
            if states.get(inst) is UNKNOWN:
                states[inst] = model_state_of(state or ())
            up = metrics.pop("asr_service_up", None)
            if inst not in rare or "asr_service_up" not in rare[inst]:
                self.up[inst] = one_value(up)
            model = metrics.get("asr_model_info")
            self.digests[inst] = (model[0][0].get("sha256") or None) if model else None
            self.static[inst] = pack(metrics) if self.packed else metrics  # every static series of the instance
        for inst, metrics in gauges.items():
            self.gauges[inst] = pack(metrics) if self.packed else metrics
        self.fresh.clear()
        for inst in static.keys() | gauges.keys():  # one per instance, new when either part is
            fresh = self.fresh[inst] = {**(static[inst] if inst in static else self._series(self.static.get(inst))),
                                        **(gauges[inst] if inst in gauges else self._series(self.gauges.get(inst)))}
            self.details[inst] = self.static.get(inst, ()) + self.gauges.get(inst, ()) if self.packed else fresh
        for inst, state in states.items():
            self.states[inst] = state
            up = rare.get(inst, _NO_SERIES).get("asr_service_up")
            if up:
                self.up[inst] = up[0][1]
            elif inst not in static and self.up.get(inst) != 1:
                self.up[inst] = None  # known not up and no longer named by the exceptions: no probe series

    def series_of(self, instance: str) -> dict[str, Series]:
        """An instance's kept details as series: as they came when they came this round, else unpacked."""
        fresh = self.fresh.get(instance)
        return fresh if fresh is not None else self._series(self.details.get(instance))

    def _series(self, kept: Kept | None) -> dict[str, Series]:
        return unpack(kept) if self.packed else (kept or _NO_SERIES)
