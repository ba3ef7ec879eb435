"""The Grafana dashboard: structure, variables, and every query naming a metric the agent really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from asrtop.grafana import dashboard, dashboard_json
from asrtop_agent.metrics import render
from test_agent_render import full_snapshot

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "agents" / "deploy" / "grafana-asrtop.json"


def exported_names() -> set[str]:
    """Sample names of the agent's /metrics for a snapshot with every reading (GPU, requests, model)."""
    text = render(full_snapshot()).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_the_shipped_dashboard_is_the_generated_one():
    assert SHIPPED.read_text() == dashboard_json()
    assert json.loads(SHIPPED.read_text()) == dashboard()


def test_every_panel_queries_metrics_the_agent_exports():
    names = exported_names()
    assert "asr_requests_total" in names and "asr_gpu_utilization_ratio" in names  # the snapshot has them all
    used = set()
    for panel in dashboard()["panels"]:
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            metrics = set(re.findall(r"\basr_[a-z0-9_]+", t["expr"]))
            assert metrics and metrics <= names, (panel["title"], metrics - names)
            assert '{node=~"$node"}' in t["expr"]  # the node variable filters every query
            used |= metrics
    for wanted in ("asr_gpu_utilization_ratio", "asr_gpu_memory_used_bytes", "asr_service_in_flight_requests",
                   "asr_requests_total", "asr_request_duration_seconds_sum", "asr_audio_seconds_total",
                   "asr_model_info"):
        assert wanted in used


def test_ids_unique_and_grid_fits_24_columns_without_overlap():
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine


def test_templated_datasource_and_node_variable_and_model_table():
    d = dashboard()
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    node = variables["node"]
    assert node["query"] == "label_values(asr_node_info, node)" and node["multi"] and node["includeAll"]
    table = [p for p in d["panels"] if p["type"] == "table"]
    assert len(table) == 1 and "sha256" in table[0]["targets"][0]["expr"]
    assert table[0]["targets"][0]["instant"] is True and table[0]["targets"][0]["format"] == "table"
    titles = {p["title"] for p in d["panels"]}
    assert {"GPU utilisation", "GPU memory used", "In flight", "Requests per second", "Latency (mean)",
            "Audio seconds per second"} <= titles
