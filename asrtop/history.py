"""Per-node numeric history for sparklines and the trend rules: fixed-size rings of float32, one per node
and metric.

Fed one FleetSnapshot per refresh (`record`); 600 samples = 10 minutes at 1 s. A node costs
len(METRICS) x capacity x 4 bytes (12 metrics: 28.8 KB at 600 samples), so 1,000 nodes stay near 29 MB
whatever the snapshots held. Unavailable readings are NaN in the ring and None when read back (never a
made-up 0). float32 keeps 24 bits: byte counts are exact to 1 part in 16 million (5 KB of 80 GB), pids up to
2**24 exactly (Linux's pid_max is at most 2**22).

Owned by one task (the TUI's refresh loop): `record` mutates, readers get fresh lists/tuples.
"""

from __future__ import annotations

import math
from array import array

from asrtop.fleet import FleetSnapshot, NodeView
from asrtop.traffic import counter_rate

# req_rate and err_rate (5xx answers/s) are the figures NodeView shows, whoever counted them (balancer or agent).
# gpu_mem is used/total over the node's GPUs; load is the agent's own in-flight count (collected in the same
# round as its GPU and memory readings, so memory that follows load is told from memory that leaks), else
# NodeView.in_flight; rss_bytes = the ASR process's resident bytes; host_mem_bytes = the host's used bytes;
# response_s = NodeView.response_seconds; queued = requests queued at the balancers; audio_rate = audio
# seconds per second; asr_process = the ASR process's identity (see asr_process below) for counting restarts.
METRICS = ("in_flight", "req_rate", "err_rate", "gpu_util", "gpu_mem", "load", "rss_bytes", "host_mem_bytes",
           "response_s", "queued", "audio_rate", "asr_process")
# fleet_series: these summed over the nodes (MEAN_TOTALS averaged)
TOTALS = ("in_flight", "req_rate", "err_rate", "gpu_util", "gpu_mem", "queued", "response_s", "audio_rate")
MEAN_TOTALS = frozenset({"gpu_util", "gpu_mem", "response_s"})
_TOTALLED = tuple(METRICS.index(m) for m in TOTALS)
NAN = float("nan")
ASR_DOWN = 0.0  # asr_process: the agent says the ASR service is down
ASR_UP_NO_PID = -1.0  # asr_process: up, but the agent cannot see its pid


def _gpu_ratios(gpus) -> tuple[float, float]:
    """(mean utilization, used / total memory) over a node's GPUs; NaN where none reports it. One loop: every
    node, every second."""
    util = 0.0
    utils = used = total = 0
    for g in gpus:
        u = g.utilization_ratio
        if u is not None:
            util += u
            utils += 1
        if g.memory_used_bytes is not None and g.memory_total_bytes:
            used += g.memory_used_bytes
            total += g.memory_total_bytes
    return (util / utils if utils else NAN), (used / total if total else NAN)


def asr_process(st) -> float:
    """The ASR process as one number per sample: its pid while up (ASR_UP_NO_PID when the pid is unknown),
    ASR_DOWN while down, NaN when unknown. A restart is a change between two known pids or down -> up."""
    if st is None:
        return NAN
    up, pid = st.asr.up, st.asr.pid
    if up is False:
        return ASR_DOWN
    if pid is not None:
        return float(pid)
    return ASR_UP_NO_PID if up else NAN


WIDTH = len(METRICS)
_INDEX = {m: i for i, m in enumerate(METRICS)}
_NAN_ROW = array("f", [NAN]) * WIDTH


class _NodeRing:
    """One node's samples interleaved: sample k's METRICS at data[k*WIDTH:(k+1)*WIDTH] (one C-level slice
    write per node per refresh; a metric's series is a strided slice, also in C)."""

    __slots__ = ("data", "last_seen", "prev_5xx", "prev_at")

    def __init__(self, capacity: int):
        self.data = _NAN_ROW * capacity
        self.last_seen = -1  # sample number of the last snapshot that had this node
        self.prev_5xx: int | None = None  # the balancers' 5xx total at the last snapshot, for a 5xx rate
        self.prev_at: float | None = None


class FleetHistory:
    """Ring buffers of METRICS per node, plus fleet totals (sum over nodes) for a header sparkline."""

    @classmethod
    def for_seconds(cls, seconds: float, refresh: float) -> "FleetHistory":
        """Enough samples for `seconds` of history at one sample per `refresh` seconds (at least 60)."""
        return cls(max(60, int(math.ceil(seconds / max(refresh, 0.1)))))

    def __init__(self, capacity: int = 600):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.count = 0  # snapshots recorded so far (the ring position is count % capacity)
        self.times = array("d", [NAN]) * capacity
        self._nodes: dict[str, _NodeRing] = {}
        self._totals = tuple(array("f", [NAN]) * capacity for _ in METRICS)

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def nodes(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    @staticmethod
    def _err_rate(ring: _NodeRing, n: NodeView, at: float) -> float:
        """5xx answers/s: the agent's rate over its window, else the change of the balancers' 5xx total since
        the last snapshot (HAProxy counts them but gives no rate)."""
        if n.agent_counted:
            ring.prev_5xx = ring.prev_at = None
            rate = n.errors_5xx_rate
        else:
            total = n.errors_5xx
            rate = counter_rate(ring.prev_5xx, total, at - ring.prev_at) if ring.prev_at is not None else None
            ring.prev_5xx, ring.prev_at = total, at
        return NAN if rate is None else float(rate)

    def record(self, snapshot: FleetSnapshot) -> None:
        """One sample of every node of `snapshot` (1,000 nodes a second: one pass, the nodes' figures read once,
        each node's row written in one slice, the fleet totals summed per metric at the end)."""
        pos = self.count % self.capacity
        at = snapshot.taken_at
        self.times[pos] = at
        lo, hi = pos * WIDTH, (pos + 1) * WIDTH
        count, rings, err_rate, f32 = self.count, self._nodes, self._err_rate, array
        rows = []
        add = rows.append
        for n in snapshot.nodes:
            ring = rings.get(n.name)
            if ring is None:
                ring = rings[n.name] = _NodeRing(self.capacity)
            inflight = n.in_flight
            st = None if n.stale else n.status
            if st is None:
                load, rss, host, proc, util, mem = inflight, None, None, NAN, NAN, NAN
            else:
                asr = st.asr
                load = asr.in_flight if asr.in_flight is not None else inflight
                rss, host, proc = asr.process_rss_bytes, st.host.memory_used_bytes, asr_process(st)
                util, mem = _gpu_ratios(st.gpus) if st.gpus else (NAN, NAN)
            req, latency, queued, audio = n.request_rate, n.response_seconds, n.queued, n.audio_rate
            values = (NAN if inflight is None else inflight, NAN if req is None else req,
                      err_rate(ring, n, at), util, mem,
                      NAN if load is None else load, NAN if rss is None else rss,
                      NAN if host is None else host, NAN if latency is None else latency,
                      NAN if queued is None else queued, NAN if audio is None else audio, proc)
            ring.data[lo:hi] = f32("f", values)
            ring.last_seen = count
            add(values)
        for name, ring in list(rings.items()):
            if ring.last_seen != count:
                if count - ring.last_seen >= self.capacity:
                    del rings[name]  # gone for a whole window: nothing left to draw
                    continue
                ring.data[lo:hi] = _NAN_ROW
        for i in _TOTALLED:
            # ratios and latency are means over the nodes that report them; counts and rates are sums (in the
            # nodes' order, from 0.0: the same float as a running sum)
            known = [v for v in [row[i] for row in rows] if v == v]
            if not known:
                self._totals[i][pos] = NAN
            else:
                total = sum(known, 0.0)
                self._totals[i][pos] = total / len(known) if METRICS[i] in MEAN_TOTALS else total
        self.count += 1

    @staticmethod
    def _listed(values: array) -> list[float | None]:
        return [None if v != v else v for v in values]

    def series(self, node: str, metric: str) -> list[float | None]:
        """Oldest first, len(self) values at most; None where the reading was unavailable."""
        ring = self._nodes.get(node)
        if ring is None:
            return []
        return self._listed(self._tail(ring.data, len(self), _INDEX[metric], WIDTH))

    def fleet_series(self, metric: str) -> list[float | None]:
        """TOTALS only: summed over nodes (gpu_util, gpu_mem and latency averaged: MEAN_TOTALS); oldest first."""
        return self._listed(self._tail(self._totals[_INDEX[metric]], len(self)))

    def last(self, node: str, metric: str) -> float | None:
        s = self.series(node, metric)
        return s[-1] if s else None

    def timestamps(self) -> list[float]:
        return list(self._tail(self.times, len(self)))

    # The trend rules' fast path (asrtop.problems.trend): raw float32 tails, NaN = unavailable, sliced in C
    # instead of converted to lists of floats/None: 1,000 nodes x 10 minutes must be judged in milliseconds.

    def _tail(self, data: array, samples: int, m: int = 0, width: int = 1, step: int = 1) -> array:
        """Column m of a ring of `width` interleaved columns: its last `samples` values, oldest first, every
        `step`-th of them counted back from the newest (which is always kept). One or two C-level slices."""
        n = min(samples, len(self))
        if n == 0:
            return array(data.typecode)
        end = self.count % self.capacity
        first = end - n + (n - 1) % step  # the oldest sample kept; < 0: the window wraps round the ring's end
        if first >= 0:
            return data[first * width + m:end * width:width * step]
        head = data[(first + self.capacity) * width + m::width * step]
        after = first + len(head) * step
        return head + data[after * width + m:end * width:width * step]

    def tail(self, node: str, metric: str, samples: int, step: int = 1) -> array | None:
        """The last `samples` readings of a node's metric, oldest first, every `step`-th counted back from the
        newest; NaN = unavailable; None: no such node."""
        ring = self._nodes.get(node)
        return None if ring is None else self._tail(ring.data, samples, _INDEX[metric], WIDTH, step)

    def fleet_tail(self, metric: str, samples: int, step: int = 1) -> array:
        return self._tail(self._totals[_INDEX[metric]], samples, step=step)

    def times_tail(self, samples: int, step: int = 1) -> array:
        return self._tail(self.times, samples, step=step)
