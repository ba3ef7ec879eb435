"""PURE: the rules that judge from the current snapshot alone (no trend, no history needed), in the order
of the rule ids. Thresholds and durations come from the [problems] settings (ctx.settings), min_ready from
ctx.settings.min_ready. The trend rules are rules_trend.py's; the registry (RULES) is rules.py's."""

from __future__ import annotations

from asrtop.problems.engine import Rule
from asrtop.problems.rules_agent import AGENT_RULES
from asrtop.problems.rules_balancer import BALANCER_RULES
from asrtop.problems.rules_capacity import CAPACITY_RULES
from asrtop.problems.rules_gpu import GPU_RULES
from asrtop.problems.rules_model import MODEL_RULES

_BY_ID = {r.id: r for r in (*CAPACITY_RULES, *GPU_RULES, *MODEL_RULES, *BALANCER_RULES, *AGENT_RULES)}

STATE_RULES: tuple[Rule, ...] = tuple(_BY_ID[i] for i in (
    "asr-down-with-traffic", "gpu-hot", "gpu-throttled", "gpu-ecc", "model-differs", "model-hash-failed",
    "model-changed-while-serving", "balancer-unreachable", "balancer-disagree", "health-down",
    "runtime-change-lost", "forgotten-drain", "backups-only", "below-min-ready", "agent-stale",
    "collector-failing"))
