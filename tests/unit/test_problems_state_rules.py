"""What each snapshot rule judges (asrtop/problems/rules_*.py): severity tiers, which readings count, the
wording and the action, and that a node being re-created by a running change is not a problem."""

from __future__ import annotations

from asrtop.balancers.base import AdminState, Health
from asrtop.fleet import DRIFT_AGENT, DRIFT_OUTSIDE, DrainRecord, Drift
from asrtop.problems.engine import evaluate_once
from asrtop.problems.model import Severity
from asrtop.problems.rules_state import STATE_RULES
from support.problems_state import DIGEST_B, T0, fleet, ready, settings, srv, status, steps

RECREATE = {"node-1": "`asrtop backup node-1 on` re-creates its server on hx-a"}


def found(snap, rule=None, **over):
    """The problems a one-shot evaluation finds now (`asrtop check`'s view), of one rule or all."""
    problems = evaluate_once(STATE_RULES, snap, None, settings(**over)).problems
    return [(p.severity, p.one_line(), p.action) for p in problems if rule is None or p.rule == rule]


def gpus(*readings):
    return [{"index": i, **r} for i, r in enumerate(readings)]


def test_gpu_hot_warns_below_critical_and_names_every_hot_gpu():
    snap = fleet(ready("node-1", gpus=gpus({"temperature_celsius": 80}, {"temperature_celsius": 86.4},
                                           {"temperature_celsius": 88})))
    assert found(snap) == [(Severity.WARNING, "node-1 has GPU 2 at 88 °C, GPU 1 at 86 °C (warning from 85 °C)",
                            None)]
    assert found(snap, gpu_temp_warning=90, gpu_temp_critical=95) == []  # the thresholds are the settings'


def test_throttled_only_by_reasons_that_slow_a_gpu_down():
    normal = ["gpu_idle", "applications_clocks_setting", "sw_power_cap", "sync_boost", "display_clock_setting"]
    assert found(fleet(ready("node-1", gpus=gpus({"clock_event_reasons": normal})))) == []
    assert found(fleet(ready("node-1", gpus=gpus({"clock_event_reasons": []})))) == []
    snap = fleet(ready("node-1", gpus=gpus({"clock_event_reasons": ["hw_power_brake_slowdown"]},
                                           {"clock_event_reasons": ["sw_thermal_slowdown", "hw_slowdown"]})))
    assert found(snap) == [(Severity.WARNING, "node-1 has its clocks slowed down: GPU 0 by hw_power_brake_slowdown "
                            "(power brake); GPU 1 by sw_thermal_slowdown, hw_slowdown (too hot, hardware slowdown)",
                            None)]


def test_ecc_corrected_is_a_warning_and_zero_is_nothing():
    assert found(fleet(ready("node-1", gpus=gpus({"ecc_errors_corrected_volatile": 0,
                                                  "ecc_errors_uncorrected_volatile": 0})))) == []
    snap = fleet(ready("node-1", gpus=gpus({"ecc_errors_corrected_volatile": 3}, {"ecc_errors_corrected_volatile": 1})))
    assert found(snap) == [(Severity.WARNING, "node-1 has corrected ECC errors: 3 on GPU 0, 1 on GPU 1 since the "
                            "driver loaded", None)]


def test_a_stale_agents_last_answer_judges_nothing_but_its_staleness():
    snap = fleet(ready("node-1", gpus=gpus({"temperature_celsius": 99}), gpu_error="x", up=False),
                 stale=["node-1"])
    assert [p[1].split(":")[0] for p in found(snap)] == ["node-1 has an agent that has not answered for 10 min"]
    never = fleet(("node-1", None, srv("node-1")))
    assert found(never) == [(Severity.WARNING, "node-1 has an agent that has never answered: timed out; its "
                             "figures are not current", None)]


def test_asr_down_counts_traffic_from_ready_and_healthy_or_from_sessions():
    down = status("node-1", up=False)
    assert found(fleet(("node-1", down, srv("node-1", AdminState.DRAIN, sessions=2))), "asr-down-with-traffic") == [
        (Severity.CRITICAL, "node-1 has its ASR service down while hx-a still sends it requests",
         "asrtop drain node-1")]
    two = {"hx-a": srv("node-1"), "hx-b": srv("node-1", sessions=1)}
    assert "hx-a, hx-b still send it" in found(fleet(("node-1", down, two)), "asr-down-with-traffic")[0][1]
    for quiet in (srv("node-1", AdminState.DRAIN), srv("node-1", health=Health.DOWN), None):
        assert found(fleet(("node-1", down, quiet)), "asr-down-with-traffic") == []
    assert found(fleet(("node-1", down, srv("node-1")), changing=RECREATE), "asr-down-with-traffic") == []


def test_model_differs_out_of_rotation_pinned_and_with_no_majority():
    drained = fleet(ready("node-1"), ready("node-2"), ("node-3", status("node-3", digest=DIGEST_B),
                                                      srv("node-3", AdminState.MAINT)))
    assert found(drained, "model-differs") == [
        (Severity.WARNING, "node-3 runs model 8f1a191, the fleet 366146d (out of rotation)", "asrtop rollout node-3")]
    pinned = fleet(ready("node-1"), ready("node-2", digest=DIGEST_B), model_sha256=DIGEST_B)
    assert found(pinned, "model-differs") == [
        (Severity.CRITICAL, "node-1 runs model 366146d, the fleet 8f1a191 (pinned)", "asrtop drain node-1")]
    tie = fleet(ready("node-1"), ready("node-2", digest=DIGEST_B))
    assert found(tie, "model-differs") == [
        (Severity.CRITICAL, "the fleet runs 2 models and none is the majority (366146d, 8f1a191): set "
         "cluster.model_sha256", None)]
    unknown = fleet(ready("node-1"), ready("node-2", model_state="hashing"), ready("node-3", model_state="error"))
    assert found(unknown, "model-differs") == []  # unknown is never "differs" (nor "same")
    assert found(fleet(ready("node-1"), ready("node-2"), ready("node-3", digest=DIGEST_B), changing={
        "node-3": "re-created"}), "model-differs") == []


def test_model_changed_while_serving_holds_until_the_process_restarts():
    s = steps()
    s.at(0, fleet(ready("node-1", pid=7)))
    s.at(1, fleet(ready("node-1", pid=7, model_state="hashing")))  # hashing: neither forgets nor fires
    changed = fleet(ready("node-1", pid=7, digest=DIGEST_B))
    s.at(2, changed)
    s.at(11, changed)
    assert not s.of("model-changed-while-serving")
    s.at(12, changed)
    (p,) = s.of("model-changed-while-serving")
    assert (p.severity, p.one_line(), p.action) == (
        Severity.WARNING, "node-1 had its model files changed under the running ASR process (pid 7): files 8f1a191, "
        "loaded 366146d; restart it", "asrtop rollout node-1")
    restarted = fleet(ready("node-1", pid=8, digest=DIGEST_B))
    s.at(13, restarted)
    s.at(43, restarted)
    assert not s.of("model-changed-while-serving")
    assert found(changed, "model-changed-while-serving") == []  # one run has nothing to compare with


def test_model_changed_while_serving_forgets_a_node_gone_from_the_fleet():
    s = steps()
    s.at(0, fleet(ready("node-1", pid=7), ready("node-2", pid=9)))
    s.at(1, fleet(ready("node-2", pid=9), ready("node-3", pid=4)))  # node-1 replaced: what it loaded is forgotten
    back = fleet(ready("node-1", pid=7, digest=DIGEST_B), ready("node-2", pid=9), ready("node-3", pid=4))
    s.at(2, back)
    s.at(30, back)
    assert not s.of("model-changed-while-serving")


def test_balancer_disagree_settles_on_the_state_that_sends_least():
    snap = fleet(("node-1", status("node-1"), {"hx-a": srv("node-1"), "hx-b": srv("node-1", AdminState.MAINT),
                                               "hx-c": srv("node-1")}))
    assert found(snap, "balancer-disagree") == [
        (Severity.WARNING, "node-1 has balancers that disagree: maint on hx-b; ready on hx-a, hx-c", "asrtop maint node-1")]
    assert found(snap, "balancer-disagree") and not found(fleet(*snap_nodes(snap), changing=RECREATE),
                                                          "balancer-disagree")


def snap_nodes(snap):
    return [(n.name, n.status, dict(n.servers)) for n in snap.nodes]


def test_health_down_only_for_a_node_in_rotation():
    for out in (AdminState.DRAIN, AdminState.MAINT):
        assert found(fleet(("node-1", status("node-1"), srv("node-1", out, Health.DOWN))), "health-down") == []
    down = fleet(("node-1", status("node-1"), srv("node-1", health=Health.DOWN)))
    assert found(down, "health-down") and not found(fleet(*snap_nodes(down), changing=RECREATE), "health-down")


def drift(what="drain", now="ready", cause=DRIFT_AGENT, server="node-1", field="admin", user=""):
    return Drift("hx-a", server, field, what, now, cause, T0 - 60, user)


def test_runtime_change_lost_rewords_the_cause_and_reapplies_the_change():
    def lost(*facts, **kw):
        return found(fleet(ready("node-1"), drift=facts, **kw), "runtime-change-lost")

    assert lost(drift()) == [(Severity.CRITICAL, "node-1 lost its drain on hx-a (now ready): its agent check "
                              "(running) answered it; asrtop set it at 23:59:00 UTC", "asrtop drain node-1")]
    assert lost(drift("weight 5", "weight 7", DRIFT_OUTSIDE, field="weight")) == [
        (Severity.WARNING, "node-1 lost its weight 5 on hx-a (now weight 7): changed outside asrtop (another tool "
         "or an operator); asrtop set it at 23:59:00 UTC", "asrtop weight node-1 5")]
    both = lost(drift("backup on", "primary", field="backup"), drift("maint", "drain"))
    assert {p[2] for p in both} == {"asrtop maint node-1", "asrtop backup node-1 on"}  # two findings, one node
    (p,) = lost(drift(server="asr9"))  # a server that is no configured node: named, no command for it
    assert p[1].startswith("asr9 on hx-a (admin) lost its drain on hx-a") and p[2] is None
    assert lost(drift(), changing=RECREATE) == []


def test_forgotten_drain_one_shot_trusts_only_the_audit_log():
    drained = [("node-1", status("node-1"), srv("node-1", AdminState.DRAIN)), ready("node-2")]
    assert found(fleet(*drained), "forgotten-drain") == []  # began just now, as far as one look can tell
    old = DrainRecord("hx-a", "node-1", "drain", T0 - 7300, "ops@bastion")
    assert found(fleet(*drained, drains=[old]), "forgotten-drain") == [
        (Severity.WARNING, "node-1 has been drained for 2 h 01 min (since 21:58:20 UTC by ops@bastion)",
         "asrtop ready node-1")]
    days = DrainRecord("hx-a", "node-1", "drain", T0 - 2 * 86400 - 3600)
    assert found(fleet(*drained, drains=[days]), "forgotten-drain")[0][1] == (
        "node-1 has been drained for 2 d 1 h (since 2025-12-29 23:00 UTC)")
    recent = DrainRecord("hx-a", "node-1", "drain", T0 - 600)
    assert found(fleet(*drained, drains=[recent]), "forgotten-drain") == []
    other = DrainRecord("hx-a", "node-1", "maint", T0 - 7300)  # a record of another state says nothing
    assert found(fleet(*drained, drains=[other]), "forgotten-drain") == []


def test_forgotten_drain_in_the_console_counts_from_the_first_look_per_state():
    maint = fleet(("node-1", status("node-1"), srv("node-1", AdminState.MAINT)), ready("node-2"))
    drain = fleet(("node-1", status("node-1"), srv("node-1", AdminState.DRAIN)), ready("node-2"))
    s = steps()
    s.at(0, drain)
    s.at(1000, maint)  # drain -> maint: a new decision, counted from here
    s.at(4599, maint)
    assert not s.of("forgotten-drain")
    s.at(4600, maint)
    assert [p.one_line() for p in s.of("forgotten-drain")] == [
        "node-1 has been in maintenance for 1 h 00 min (since 00:16:40 UTC)"]
    s = steps()
    s.at(0, fleet(*snap_nodes(drain), drains=[DrainRecord("hx-a", "node-1", "drain", T0 - 7200)]))
    assert s.of("forgotten-drain")  # the audit log already says 2 h: no need to wait another hour


def test_capacity_backups_only_and_below_min_ready_never_both():
    out = [("node-1", status("node-1"), srv("node-1", AdminState.DRAIN)),
           ("node-2", status("node-2"), srv("node-2", AdminState.MAINT, Health.DOWN))]
    backup = ("node-3", status("node-3"), srv("node-3", backup=True))
    assert [p[1].split(":")[0] for p in found(fleet(*out, backup))] == ["only backups serve"]
    assert found(fleet(*out, backup), "below-min-ready", min_ready=3) == []
    nothing = found(fleet(*out), "below-min-ready")
    assert nothing == [(Severity.CRITICAL, "0 of 2 primaries ready, fewer than min_ready 1", "asrtop ready node-1")]
    # no balancer read, or a server being re-created: the balancers cannot tell what serves
    assert found(fleet(("node-1", status("node-1"), None), unreachable={"hx-a": "refused"}), "below-min-ready") == []
    assert found(fleet(*out, changing={"node-1": "re-created"}), "below-min-ready") == []


def test_collector_failing_names_each_collector_and_leaves_others_their_rules():
    snap = fleet(ready("node-1", host_error="host: /proc/meminfo: Permission denied", model_state="missing",
                       model_error="no such directory: /models/x", up=None, asr_error="probe timed out"))
    assert [p[1] for p in found(snap, "collector-failing")] == [
        "node-1 has its agent's host collector failing: host: /proc/meminfo: Permission denied",
        "node-1 has its agent's model collector failing: no such directory: /models/x",
        "node-1 has its agent's asr collector failing: probe timed out"]
    theirs = fleet(ready("node-1", up=False, asr_error="refused", model_state="error", model_error="x"))
    assert found(theirs, "collector-failing") == []  # asr-down-with-traffic's and model-hash-failed's
    assert sorted(p.rule for p in evaluate_once(STATE_RULES, theirs, None, settings()).problems) == [
        "asr-down-with-traffic", "model-hash-failed"]
