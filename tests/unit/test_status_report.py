"""`asrtop status`: GPU values of a node whose agent simulates its GPU never pass for real readings."""

from __future__ import annotations

from asrtop.agentstatus import AgentStatus, AsrReading, GpuReading, HostReading, ModelReading
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.fleet import AgentReading, BalancerReading, merge
from asrtop.status_report import render_table, rows, status_json

GIB = 1024 ** 3
NOW = 100.0


def status(name: str, gpu_source: str, gpus: int = 1) -> AgentStatus:
    g = tuple(GpuReading(k, f"GPU-{name}-{k}", "NVIDIA A10", 0.62, 9 * GIB, 24 * GIB, 50.0, 90.0, 300.0)
              for k in range(gpus))
    return AgentStatus(name, "0.1", NOW, 1.0, HostReading(), gpu_source, None, g, AsrReading(), ModelReading(), {})


def snap(sources: dict[str, str | None]):
    """One node per entry: its agent's gpu_source, or None for a node without an agent."""
    nodes, agents, servers = [], {}, []
    for i, (name, source) in enumerate(sources.items()):
        url = f"http://127.0.0.1:{20000 + i}" if source else None
        nodes.append(NodeConfig(name, agent=url))
        if source:
            agents[name] = AgentReading(url, status(name, source, gpus=0 if source == "none" else 1), NOW)
        servers.append(ServerState(name, "127.0.0.1", 10000 + i, 3, False, AdminState.READY, Health.UP, 0))
    return merge(nodes, agents, [BalancerReading("hx", "haproxy", tuple(servers))], NOW)


def gpu_cells(s, name):
    row = next(r for r in rows(s) if r[0] == name)
    return row[8], row[9]  # GPU%, GPU MEM


def test_simulated_gpu_values_are_marked_and_explained():
    s = snap({"n1": "nvml", "n2": "simulated", "n3": "none", "n4": None})
    assert gpu_cells(s, "n1") == ("62", "9.0/24.0G")
    assert gpu_cells(s, "n2") == ("~62", "~9.0/24.0G")
    assert gpu_cells(s, "n3") == ("-", "-") and gpu_cells(s, "n4") == ("-", "-")  # unknown is not marked
    table = render_table(s)
    assert "  ~: simulated GPU readings, not a real GPU: n2" in table
    doc = status_json(s, "lab")
    assert [n["gpu_source"] for n in doc["nodes"]] == ["nvml", "simulated", "none", None]


def test_all_simulated_and_none_simulated():
    assert "~: simulated GPU readings, not a real GPU: all nodes" in render_table(snap({"a": "simulated",
                                                                                        "b": "simulated"}))
    real = render_table(snap({"a": "nvml", "b": "nvml"}))
    assert "~" not in real and "simulated" not in real
