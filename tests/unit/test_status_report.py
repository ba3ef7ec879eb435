"""`asrtop status`: GPU values of a node whose agent simulates its GPU never pass for real readings."""

from __future__ import annotations

from dataclasses import replace

from asrtop.agentstatus import AgentStatus, AsrReading, GpuReading, HostReading, ModelReading, RequestStats
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.fleet import AgentReading, AgentTraffic, BalancerReading, merge
from asrtop.status_report import COLUMNS, render_table, rows, status_json

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
    return row[COLUMNS.index("GPU%")], row[COLUMNS.index("GPU MEM")]


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


def request_cells(s, name):
    row = next(r for r in rows(s) if r[0] == name)
    return tuple(row[COLUMNS.index(c)] for c in ("REQ/S", "5XX", "RESP"))


def test_agent_counted_request_figures_are_marked_explained_and_in_the_json():
    """nginx counts nothing per server: the agents' figures fill REQ/S, 5XX and RESP, marked `*`, with one
    legend line; a node the balancer counts (HAProxy) keeps the balancer's figures, unmarked."""
    counted = RequestStats(total=90, by_class={"2xx": 87, "5xx": 3})
    nodes = [NodeConfig(n, agent=f"http://127.0.0.1:{20000 + i}") for i, n in enumerate(("ngx-1", "ngx-2", "hx-1"))]
    agents = {}
    for cfg, traffic in zip(nodes, (AgentTraffic(2.5, 0.1, 1.84, 30.0, 10.0), AgentTraffic(0.0, 0.0, None, 0.0, 10.0),
                                    AgentTraffic(9.0, 9.0, 9.0, 9.0, 10.0))):
        st = replace(status(cfg.name, "nvml"), asr=AsrReading(requests=counted))
        agents[cfg.name] = AgentReading(cfg.agent, st, NOW, traffic=traffic)

    def server(name, port, **counts):
        return ServerState(name, "127.0.0.1", port, 1, False, AdminState.READY, Health.UP, 0, **counts)
    ngx = BalancerReading("ngx", "nginx", (server("ngx-1", 1), server("ngx-2", 2)))
    hx = BalancerReading("hx", "haproxy", (server("hx-1", 3, request_rate=4.0, requests_total=10,
                                                  errors_5xx_total=1, avg_response_seconds=0.25),))
    s = merge(nodes, agents, [ngx, hx], NOW)
    assert request_cells(s, "ngx-1") == ("*2.5", "*3", "*1.8s")
    assert request_cells(s, "ngx-2") == ("*0", "*3", "-")  # nothing finished in the window: no latency
    assert request_cells(s, "hx-1") == ("4", "1", "250ms")
    legend = [ln for ln in render_table(s).splitlines() if ln.startswith("  *:")]
    assert legend == ["  *: counted by the node's agent (the balancer counts no requests): ngx-1, ngx-2"]
    doc = {n["name"]: n for n in status_json(s, "lab")["nodes"]}
    picked = {k: doc["ngx-1"][k] for k in ("request_rate", "errors_5xx_total", "errors_5xx_rate", "response_seconds",
                                           "audio_rate", "requests_source")}
    assert picked == {"request_rate": 2.5, "errors_5xx_total": 3, "errors_5xx_rate": 0.1, "response_seconds": 1.84,
                      "audio_rate": 30.0, "requests_source": "agent"}
    # the balancer's figures where it counts; audio seconds only an agent knows
    assert (doc["hx-1"]["requests_source"], doc["hx-1"]["request_rate"], doc["hx-1"]["errors_5xx_rate"],
            doc["hx-1"]["audio_rate"]) == ("balancer", 4.0, None, 9.0)
    # no agent-counted figure, no legend
    assert "*" not in render_table(merge(nodes[2:], agents, [hx], NOW))


def test_an_unreachable_balancer_is_named_once():
    """Adapters start their errors with their own name; `status` and the console's toast say it once."""
    from asrtop.fleet import BalancerReading, merge
    from asrtop.status_report import render_table

    down = BalancerReading("ngx", "nginx", (), "ngx: nginx is not running: no process 7 from /run/nginx.pid")
    assert down.problem == "nginx is not running: no process 7 from /run/nginx.pid"
    assert BalancerReading("ngx", "nginx").problem is None
    text = render_table(merge([], {}, [down], 0.0))
    assert "  ngx: UNREACHABLE: nginx is not running: no process 7 from /run/nginx.pid" in text.splitlines()


def test_each_balancer_says_how_it_is_reached_and_its_read_time():
    """The same words as the console's header (fleet_wording.balancer_link); absent values stay absent."""
    n1 = (ServerState("n1", "127.0.0.1", 8001, 1, False, AdminState.READY, Health.UP),)
    lb1 = BalancerReading("lb1", "haproxy", n1, None, NOW, "local socket", 0.00042)
    lb2 = BalancerReading("lb2", "haproxy", n1, None, NOW, "ssh ops@lb2:22", 0.0312)
    old = BalancerReading("old", "nginx", n1)  # an adapter that says neither
    s = merge([NodeConfig("n1")], {}, [lb1, lb2, old], NOW)
    lines = render_table(s).splitlines()
    assert "  lb1: local socket, 0.4 ms" in lines and "  lb2: ssh ops@lb2:22, 31 ms" in lines
    assert not any(ln.startswith("  old:") for ln in lines)
    doc = status_json(s, "c")
    assert [(b["name"], b["transport"], b["latency_seconds"]) for b in doc["balancers"]] == [
        ("lb1", "local socket", 0.00042), ("lb2", "ssh ops@lb2:22", 0.0312), ("old", None, None)]
