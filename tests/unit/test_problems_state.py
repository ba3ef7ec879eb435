"""The snapshot rules (asrtop/problems/rules_state.py) through the ProblemTracker: each fires after its own
duration and not before, clears only after clear_after, and absent readings never fire."""

from __future__ import annotations

import pytest

from asrtop.balancers.base import AdminState, Health
from asrtop.fleet import DRIFT_RESTART, Drift
from asrtop.problems.model import Severity
from asrtop.problems.rules_state import STATE_RULES
from support.problems_state import DIGEST_B, fleet, ready, srv, status, steps

DOWN_FOR, GPU_FOR, CLEAR_AFTER, FORGOTTEN = 10, 60, 30, 3600  # the [problems] defaults the rules read
HEALTHY = fleet(ready("node-1"), ready("node-2"))


def hot(t):
    return [{"index": 0, "temperature_celsius": t}]


# rule -> (the snapshot where it holds, one where it does not, seconds it must hold, severity, one_line,
# action, settings): the good snapshot differs from the bad one only by the fault (node-3's upgrade restarted
# its ASR process: files changed under the same pid would be model-changed-while-serving)
CASES = {
    "asr-down-with-traffic": (
        fleet(("node-1", status("node-1", up=False, asr_error="connection refused"), srv("node-1")),
              ready("node-2")),
        HEALTHY, DOWN_FOR, Severity.CRITICAL,
        "node-1 has its ASR service down (connection refused) while hx-a still sends it requests",
        "asrtop drain node-1", {}),
    "gpu-hot": (
        fleet(ready("node-1", gpus=hot(93.0)), ready("node-2")), HEALTHY, GPU_FOR, Severity.CRITICAL,
        "node-1 has GPU 0 at 93 °C (critical from 92 °C)", "asrtop drain node-1", {}),
    "gpu-throttled": (
        fleet(ready("node-1", gpus=[{"index": 1, "clock_event_reasons": ["gpu_idle", "hw_thermal_slowdown"]}]),
              ready("node-2")),
        HEALTHY, GPU_FOR, Severity.WARNING,
        "node-1 has its clocks slowed down: GPU 1 by hw_thermal_slowdown (too hot)", None, {}),
    "gpu-ecc": (
        fleet(ready("node-1", gpus=[{"index": 0, "ecc_errors_uncorrected_volatile": 2,
                                     "ecc_errors_corrected_volatile": 7}]), ready("node-2")),
        HEALTHY, DOWN_FOR, Severity.CRITICAL,
        "node-1 has uncorrected ECC errors: 2 on GPU 0 since the driver loaded (its results may be wrong)",
        "asrtop drain node-1", {}),
    "model-differs": (
        fleet(ready("node-1"), ready("node-2"), ready("node-3", digest=DIGEST_B)),
        fleet(ready("node-1"), ready("node-2"), ready("node-3", pid=4343)), DOWN_FOR, Severity.CRITICAL,
        "node-3 runs model 8f1a191, the fleet 366146d", "asrtop drain node-3", {}),
    "model-hash-failed": (
        fleet(ready("node-1", model_state="error", model_error="model.pt: Permission denied"), ready("node-2")),
        HEALTHY, DOWN_FOR, Severity.WARNING,
        "node-1 cannot hash its model: model.pt: Permission denied (its model is unknown)", None, {}),
    "balancer-unreachable": (
        fleet(ready("node-1"), ready("node-2"), unreachable={"hx-b": "connection refused"}),
        HEALTHY, DOWN_FOR, Severity.CRITICAL, "hx-b cannot be read: connection refused", None, {}),
    "balancer-disagree": (
        fleet(("node-1", status("node-1"), {"hx-a": srv("node-1"), "hx-b": srv("node-1", AdminState.DRAIN)}),
              ready("node-2")),
        fleet(("node-1", status("node-1"), {"hx-a": srv("node-1"), "hx-b": srv("node-1")}), ready("node-2")),
        DOWN_FOR, Severity.WARNING, "node-1 has balancers that disagree: drain on hx-b; ready on hx-a",
        "asrtop drain node-1", {}),
    "health-down": (
        fleet(("node-1", status("node-1"), srv("node-1", health=Health.DOWN)), ready("node-2")),
        HEALTHY, DOWN_FOR, Severity.WARNING,
        "node-1 fails its health check on hx-a: ready there, but it gets no requests", None, {}),
    "runtime-change-lost": (
        fleet(ready("node-1"), ready("node-2"), drift=[Drift(
            "hx-a", "node-1", "admin", "drain", "ready", DRIFT_RESTART, 1767225500.0, "ops@bastion", 1767225550.0)]),
        HEALTHY, DOWN_FOR, Severity.CRITICAL,
        "node-1 lost its drain on hx-a (now ready): hx-a restarted at 23:59:10 UTC and started from its "
        "configuration; asrtop set it at 23:58:20 UTC (ops@bastion)", "asrtop drain node-1", {}),
    "forgotten-drain": (
        fleet(("node-1", status("node-1"), srv("node-1", AdminState.DRAIN)), ready("node-2")),
        HEALTHY, FORGOTTEN, Severity.WARNING, "node-1 has been drained for 1 h 00 min (since 00:00:00 UTC)",
        "asrtop ready node-1", {}),
    "backups-only": (
        fleet(("node-1", status("node-1"), srv("node-1", AdminState.DRAIN)),
              ("node-2", status("node-2"), srv("node-2", AdminState.MAINT, Health.DOWN)),
              ("node-3", status("node-3"), srv("node-3", backup=True))),
        fleet(ready("node-1"), ("node-2", status("node-2"), srv("node-2", AdminState.MAINT, Health.DOWN)),
              ("node-3", status("node-3"), srv("node-3", backup=True))),
        DOWN_FOR, Severity.CRITICAL, "only backups serve: 0 of 2 primaries ready; node-3 carries the traffic",
        "asrtop ready node-1", {}),
    "below-min-ready": (
        fleet(ready("node-1"), ("node-2", status("node-2"), srv("node-2", AdminState.MAINT))),
        HEALTHY, DOWN_FOR, Severity.CRITICAL, "1 of 2 primaries ready, fewer than min_ready 2",
        "asrtop ready node-2", {"min_ready": 2}),
    "agent-stale": (
        fleet(ready("node-1"), ready("node-2"), stale=["node-1"]), HEALTHY, DOWN_FOR, Severity.WARNING,
        "node-1 has an agent that has not answered for 10 min: timed out; its figures are not current", None, {}),
    "collector-failing": (
        fleet(ready("node-1", gpu_error="NVML: driver not loaded"), ready("node-2")), HEALTHY, DOWN_FOR,
        Severity.WARNING, "node-1 has its agent's gpu collector failing: NVML: driver not loaded", None, {}),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_fires_after_its_duration_and_clears_after_its_own(rule):
    bad, good, hold, severity, line, action, over = CASES[rule]
    s = steps(**over)
    s.at(0, bad)
    s.at(hold - 1, bad)
    assert not s.of(rule), "raised before its duration"
    s.at(hold, bad)
    (p,) = s.of(rule)
    assert (p.severity, p.one_line(), p.action) == (severity, line, action)
    assert [q.rule for q in s.tracker.problems] == [rule]  # the fault is this rule's alone
    s.at(hold + 1, good)
    s.at(hold + CLEAR_AFTER, good)
    assert s.of(rule), "cleared before clear_after"
    s.at(hold + 1 + CLEAR_AFTER, good)
    assert not s.tracker.problems


@pytest.mark.parametrize("rule", sorted(r for r in CASES if CASES[r][2] > 1))
def test_a_condition_that_breaks_before_its_duration_starts_over(rule):
    bad, good, hold, *_, over = CASES[rule]
    s = steps(**over)
    s.at(0, bad)
    s.at(hold - 2, good)
    s.at(hold - 1, bad)
    s.at(hold, bad)
    assert not s.of(rule)
    s.at(2 * hold - 1, bad)
    assert s.of(rule)


def test_every_state_rule_has_a_case():
    assert {r.id for r in STATE_RULES} - set(CASES) == {"model-changed-while-serving"}  # its own test file


def test_absent_readings_never_fire():
    """No temperature, no clock reasons, no ECC counts, no ASR probe, no pid, a model still hashing, nodes
    without agents, no balancer at all: nothing to judge, so no problem, however long it lasts."""
    bare = {"index": 0}
    absent = status("node-1", up=None, pid=None, model_state="hashing", gpus=[bare])
    for snap in (fleet(("node-1", absent, srv("node-1")), ("node-2", None, srv("node-2")), agentless=["node-2"]),
                 fleet(("node-1", absent, None), ("node-2", None, None), agentless=["node-2"]),
                 fleet(("node-1", status("node-1", gpus=()), srv("node-1")))):
        s = steps()
        for t in range(0, 3 * FORGOTTEN, 600):
            assert s.at(t, snap) == ()


def test_durations_are_the_settings_not_constants():
    bad, good = CASES["gpu-hot"][:2]
    s = steps(gpu_for=5, clear_after=2)
    s.at(0, bad)
    s.at(5, bad)
    assert s.of("gpu-hot")
    s.at(6, good)
    s.at(8, good)
    assert not s.of("gpu-hot")
    s = steps(forgotten_drain_after=120)
    drained = CASES["forgotten-drain"][0]
    s.at(0, drained)
    s.at(120, drained)
    assert [p.one_line() for p in s.of("forgotten-drain")] == ["node-1 has been drained for 2 min (since 00:00:00 UTC)"]
