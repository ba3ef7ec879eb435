"""The Prometheus alert rules rendered from [problems]: names, labels, thresholds, and the shipped file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asrtop.config import PROBLEM_SETTINGS, ProblemsConfig
from asrtop.problems.alert_rules import AlertRule, alert_rules, duration, render

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "agents" / "deploy" / "asrtop-alerts.rules.yml"
# the engine's rule ids (the notes of issue 14): an alert's `rule` label is one of them
RULE_IDS = {"gpu-memory-leak", "process-memory-leak", "host-memory-leak", "slow-node", "error-rate",
            "asr-down-with-traffic", "gpu-hot", "gpu-throttled", "gpu-ecc", "model-differs", "model-hash-failed",
            "model-changed-while-serving", "balancer-unreachable", "balancer-disagree", "health-down",
            "runtime-change-lost", "forgotten-drain", "backups-only", "below-min-ready", "queue-growing",
            "agent-stale", "collector-failing", "crash-loop"}
# what the agent's /metrics can express (the rest is the balancers' and asrtop's own)
EXPRESSIBLE = {"gpu-memory-leak", "process-memory-leak", "host-memory-leak", "slow-node", "error-rate",
               "asr-down-with-traffic", "gpu-hot", "gpu-throttled", "gpu-ecc", "model-differs", "model-hash-failed",
               "model-changed-while-serving", "agent-stale", "collector-failing", "crash-loop"}


def settings(**values) -> ProblemsConfig:
    return ProblemsConfig(tuple({**ProblemsConfig().as_dict(), **values}.items()))


def by_rule(rules: list[AlertRule], rule: str, severity: str | None = None) -> AlertRule:
    return next(a for a in rules if a.rule == rule and (severity is None or a.severity == severity))


def test_the_shipped_file_is_the_default_rendering():
    assert SHIPPED.read_text() == render(), "regenerate: asrtop export alert-rules > agents/deploy/asrtop-alerts.rules.yml"


def test_one_alert_per_expressible_problem_with_rule_and_severity_labels():
    rules = alert_rules()
    assert {a.rule for a in rules} == EXPRESSIBLE and EXPRESSIBLE <= RULE_IDS
    assert {a.severity for a in rules} == {"warning", "critical"}
    assert by_rule(rules, "gpu-memory-leak").name == "AsrtopGpuMemoryLeak"
    # a rule with a warning and a critical threshold is one alert name at two severities
    assert [a.severity for a in rules if a.rule == "error-rate"] == ["warning", "critical"]
    assert len({(a.name, a.severity) for a in rules}) == len(rules)
    for a in rules:
        assert "{{ $labels.node }}" in a.summary and "{{ $labels.node }}" in a.description
        assert "Action:" in a.description
        assert "node" in a.expr  # every alert carries the agent's node name


def test_thresholds_and_durations_come_from_problems_settings():
    defaults = alert_rules()
    d = {k: v[0] for k, v in PROBLEM_SETTINGS.items()}
    assert by_rule(defaults, "gpu-memory-leak").for_seconds == d["leak_for"]
    assert f"[{duration(d['leak_window'])}]" in by_rule(defaults, "gpu-memory-leak").expr
    custom = alert_rules(settings(leak_window=300, leak_min_mb_per_s=50, leak_for=90, error_ratio_critical=0.5,
                                  gpu_temp_warning=80, gpu_for=120, down_for=20, crash_loop_restarts=4))
    leak = by_rule(custom, "gpu-memory-leak")
    assert "deriv(asr_gpu_memory_used_bytes[5m]) > 50000000" in leak.expr and leak.for_seconds == 90
    assert "> 0.5)" in by_rule(custom, "error-rate", "critical").expr
    hot = by_rule(custom, "gpu-hot", "warning")
    assert "asr_gpu_temperature_celsius > 80" in hot.expr and hot.for_seconds == 120
    assert by_rule(custom, "asr-down-with-traffic").for_seconds == 20
    assert ">= 7" in by_rule(custom, "crash-loop").expr  # 4 restarts: down 4 times, 7 changes of asr_service_up
    text = render(settings(leak_for=90))
    assert re.search(r"alert: AsrtopGpuMemoryLeak\n.*\n        for: 90s\n", text)


def test_the_configured_model_digest_is_the_target():
    digest = "8f1a191" + "0" * 57
    rule = by_rule(alert_rules(None, digest), "model-differs")
    assert f'asr_model_info{{sha256!="{digest}"}}' in rule.expr and "cluster.model_sha256 8f1a191" in rule.summary
    assert "scalar(max(count by (sha256)" in by_rule(alert_rules(), "model-differs").expr  # else the majority


@pytest.mark.parametrize("seconds, text", [(120, "2m"), (90, "90s"), (3600, "1h"), (0, "0s"), (0.5, "500ms"),
                                           (86400, "24h")])
def test_durations_are_prometheus_durations(seconds, text):
    assert duration(seconds) == text


def test_yaml_scalars_are_single_quoted_with_quotes_doubled():
    text = render()
    exprs = re.findall(r"^        expr: (.*)$", text, re.M)
    assert len(exprs) == len(alert_rules())
    assert all(e.startswith("'") and e.endswith("'") for e in exprs)
    assert "the agent''s health probe" in text.lower()  # an apostrophe in a description, escaped for YAML
