"""PURE: the Grafana dashboard for the asrtop-agent's metrics (`asrtop export grafana-dashboard`).

Per node (the agent's `node` label, joined from asr_node_info): GPU utilisation, memory and temperature, in
flight, requests/s, 5xx share, latency, audio seconds per second, process and host memory; and a table of
the model digest each node runs. The Prometheus data source and the nodes shown are dashboard variables.
`agents/deploy/grafana-asrtop.json` is dashboard_json() (a test keeps them equal).
"""

from __future__ import annotations

import json
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# the node's name as the `node` label, only the nodes picked in the variable (asr_node_info is 1)
JOIN = ' * on (instance) group_left (node) max by (instance, node) (asr_node_info{node=~"$node"})'
WIDTH, HEIGHT = 12, 8  # two panels a row on Grafana's 24 columns


def per_node(expr: str, agg: str = "sum") -> str:
    return f"{agg} by (node) ({expr}{JOIN})"


# (title, unit, [(expr, legend)], description)
TIMESERIES: tuple[tuple[str, str, list[tuple[str, str]], str], ...] = (
    ("GPU utilisation", "percentunit", [(per_node("asr_gpu_utilization_ratio", "avg"), "{{node}}")],
     "Mean busy ratio over the node's GPUs (NVML)."),
    ("GPU memory used", "bytes", [(per_node("asr_gpu_memory_used_bytes"), "{{node}}"),
                                  (per_node("asr_gpu_memory_total_bytes"), "{{node}} total")],
     "Framebuffer used and total; a line that only climbs is a leak."),
    ("In flight", "short", [(per_node("asr_service_in_flight_requests"), "{{node}}")],
     "Requests in progress (the agent's proxy, else TCP connections to the ASR port)."),
    ("Requests per second", "reqps", [(per_node(f"rate(asr_requests_total[{RATE}])"), "{{node}}")],
     "Answered through the agent's proxy."),
    ("Latency (mean)", "s", [(per_node(f"rate(asr_request_duration_seconds_sum[{RATE}])") + " / "
                              + per_node(f"rate(asr_request_duration_seconds_count[{RATE}])"), "{{node}}")],
     "First request byte to last response byte."),
    ("Audio seconds per second", "short", [(per_node(f"rate(asr_audio_seconds_total[{RATE}])"), "{{node}}")],
     "Seconds of audio transcribed per wall-clock second: the node's ASR throughput."),
    ("5xx share", "percentunit", [(per_node(f'rate(asr_requests_total{{class="5xx"}}[{RATE}])') + " / "
                                   + per_node(f"rate(asr_requests_total[{RATE}])"), "{{node}}")],
     "Share of answers with a 5xx status."),
    ("GPU temperature", "celsius", [(per_node("asr_gpu_temperature_celsius", "max"), "{{node}}")],
     "The hottest GPU of the node."),
    ("ASR process memory", "bytes", [(per_node("asr_service_process_resident_memory_bytes"), "{{node}}")],
     "Resident memory of the ASR process."),
    ("Host memory used", "bytes", [(per_node("asr_host_memory_used_bytes"), "{{node}}")],
     "Host memory in use (total - available)."),
)
MODEL_TABLE = per_node("asr_model_info", "max").replace("by (node)", "by (node, sha256)")


def _target(expr: str, legend: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def _panels() -> list[dict[str, Any]]:
    panels = []
    for i, (title, unit, targets, description) in enumerate(TIMESERIES):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title, "description": description, "datasource": DATASOURCE,
            "gridPos": {"x": (i % 2) * WIDTH, "y": (i // 2) * HEIGHT, "w": WIDTH, "h": HEIGHT},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [_target(e, legend, chr(ord("A") + k)) for k, (e, legend) in enumerate(targets)],
        })
    rows = (len(TIMESERIES) + 1) // 2
    panels.append({
        "id": len(TIMESERIES) + 1, "type": "table", "title": "Model digest per node",
        "description": "The manifest digest of each node's model files: every node should run the same one.",
        "datasource": DATASOURCE, "gridPos": {"x": 0, "y": rows * HEIGHT, "w": 24, "h": HEIGHT},
        "targets": [_target(MODEL_TABLE, "", "A", instant=True, format="table")],
        "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True},
                                                           "renameByName": {"node": "Node", "sha256": "Model sha256"}}}],
    })
    return panels


def dashboard() -> dict[str, Any]:
    return {
        "title": "asrtop: ASR fleet",
        "uid": "asrtop-fleet",
        "tags": ["asrtop", "asr"],
        "description": "Per-node GPU, traffic and model facts from the asrtop agents (asrtop export grafana-dashboard)",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
            {"name": "node", "label": "Node", "type": "query", "datasource": DATASOURCE,
             "query": "label_values(asr_node_info, node)", "definition": "label_values(asr_node_info, node)",
             "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2, "sort": 1,
             "current": {"text": "All", "value": "$__all"}},
        ]},
        "panels": _panels(),
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
