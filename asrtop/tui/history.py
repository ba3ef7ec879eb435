"""A small per-node ring buffer of the last minutes, fed from each FleetSnapshot (for the sparklines)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from asrtop.fleet import FleetSnapshot, NodeView

SERIES = ("inflight", "rps", "gpu", "mem")


@dataclass(frozen=True)
class Sample:
    at: float
    inflight: float | None
    rps: float | None
    gpu: float | None  # mean utilization ratio over the node's GPUs
    mem: float | None  # max memory ratio over the node's GPUs


def sample(node: NodeView, at: float) -> Sample:
    st = node.status
    gpu = mem = None
    if st is not None and st.gpus and not node.stale:
        us = [g.utilization_ratio for g in st.gpus if g.utilization_ratio is not None]
        ms = [m for m in (g.memory_ratio for g in st.gpus) if m is not None]
        gpu = sum(us) / len(us) if us else None
        mem = max(ms) if ms else None
    return Sample(at, node.in_flight, node.request_rate, gpu, mem)


class History:
    """Keeps `size` samples per node (default: 5 minutes at 1 s refresh). Only the UI task touches it."""

    def __init__(self, size: int = 300):
        self.size = size
        self._nodes: dict[str, deque[Sample]] = {}

    def add(self, snap: FleetSnapshot) -> None:
        for n in snap.nodes:
            q = self._nodes.get(n.name)
            if q is None:
                q = self._nodes[n.name] = deque(maxlen=self.size)
            q.append(sample(n, snap.taken_at))

    def series(self, node: str, name: str) -> list[float | None]:
        return [getattr(s, name) for s in self._nodes.get(node, ())]

    def span_seconds(self, node: str) -> float:
        q = self._nodes.get(node)
        return q[-1].at - q[0].at if q and len(q) > 1 else 0.0
