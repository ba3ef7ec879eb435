"""`asrtop check` on fake fleets with test rules: Nagios status and exit, the summary line, perfdata, problem
lines, rules not evaluated, --json, and UNKNOWN when the fleet cannot be read."""

from __future__ import annotations

import asyncio
import io
import json

from asrtop.check_report import Perf, run_check
from asrtop.commands import fleet_snapshot
from asrtop.config import ClusterConfig
from asrtop.problems.engine import Rule
from asrtop.problems.model import Finding, Severity
from tui.fakes import FakeFleet


def differs(ctx):
    for name in ctx.snapshot.nodes_differing_from_target():
        yield Finding("model-differs", name, Severity.CRITICAL,
                      f"runs model {ctx.snapshot.node(name).model_digest[:7]}, the fleet {ctx.snapshot.target_digest[:7]}",
                      f"asrtop drain {name}")


def stale(ctx):
    for v in ctx.snapshot.nodes:
        if v.stale:
            yield Finding("agent-stale", v.name, Severity.WARNING, "has a stale agent")


def leak(ctx):  # needs history: a GPU memory series that only grows
    for v in ctx.snapshot.nodes:
        s = [x for x in ctx.history.series(v.name, "gpu_mem") if x is not None]
        if len(s) >= 2 and all(b > a for a, b in zip(s, s[1:])):
            yield Finding("gpu-memory-leak", v.name, Severity.WARNING, "leaks GPU memory", f"asrtop drain {v.name}")


RULES = (Rule("model-differs", "Model differs", differs), Rule("agent-stale", "Agent stale", stale),
         Rule("gpu-memory-leak", "GPU memory leak", leak, needs_history=True))


async def one_sample(source):
    """fleet_snapshot without its second sample (which waits ~1 s when only agents count requests)."""
    try:
        return await source.snapshot()
    finally:
        await source.close()


def check(fleet: FakeFleet, as_json: bool = False, config: ClusterConfig | None = None, rules=RULES,
          snapshot_once=fleet_snapshot):
    out = io.StringIO()
    code = asyncio.run(run_check(config or ClusterConfig(path=None), fleet, snapshot_once, as_json=as_json,
                                 rules=rules, out=out))
    assert fleet.closed  # the source is closed whatever happened
    return code, out.getvalue()


def test_ok_names_the_nodes_and_lists_rules_without_history():
    code, out = check(FakeFleet(odd_model=()))
    first, *rest = out.splitlines()
    assert code == 0
    assert first == ("OK: 6 nodes, no problems | problems=0;;;0 critical=0;;0;0 warning=0;0;;0 nodes=6;;;0 "
                     "ready=5;;1:;0;6 stale=0;;;0;6 down=0;;;0;6")
    assert rest == ["not evaluated (need history: the console or [cluster] prometheus): gpu-memory-leak"]


def test_critical_names_the_worst_problem_first_then_every_problem_with_its_action():
    code, out = check(FakeFleet(odd_model=(4,), dead_agents=(2,)))
    lines = out.splitlines()
    assert code == 2
    summary, perf = lines[0].split(" | ")
    assert summary == "CRITICAL: node-4 runs model ffee998, the fleet a1b2c3d (+1 more)"
    assert perf.split() == ["problems=2;;;0", "critical=1;;0;0", "warning=1;0;;0", "nodes=6;;;0", "ready=5;;1:;0;6",
                            "stale=1;;;0;6", "down=0;;;0;6"]
    assert lines[1] == "CRITICAL node-4 runs model ffee998, the fleet a1b2c3d; action: asrtop drain node-4"
    assert lines[2] == "WARNING node-2 has a stale agent"


def test_warning_only_exits_1_and_min_ready_is_the_ready_threshold():
    code, out = check(FakeFleet(odd_model=(), dead_agents=(3,)), config=ClusterConfig(path=None, min_ready=4))
    assert code == 1 and out.startswith("WARNING: node-3 has a stale agent | ")
    assert " ready=5;;4:;0;6 " in out


def test_json_has_status_exit_problems_not_evaluated_and_perfdata():
    code, out = check(FakeFleet(odd_model=(4,)), as_json=True)
    doc = json.loads(out)
    assert code == 2 and doc["status"] == "CRITICAL" and doc["exit"] == 2
    assert doc["problems"] == [{"rule": "model-differs", "severity": "CRITICAL", "node": "node-4", "subject": None,
                                "where": "node-4", "text": "runs model ffee998, the fleet a1b2c3d",
                                "line": "node-4 runs model ffee998, the fleet a1b2c3d", "action": "asrtop drain node-4"}]
    assert doc["not_evaluated"] == ["gpu-memory-leak"]
    assert doc["perfdata"] == {"problems": 1, "critical": 1, "warning": 0, "nodes": 6, "ready": 5, "stale": 0,
                               "down": 0}


def test_unknown_when_nothing_can_be_read():
    fleet = FakeFleet(balancer_error="haproxy-a: cannot connect to /run/haproxy.sock",
                      dead_agents=(1, 2, 3, 4, 5, 6))
    code, out = check(fleet)
    assert code == 3
    assert out == ("UNKNOWN: cannot read the fleet: no balancer could be read (haproxy-a: cannot connect to "
                   "/run/haproxy.sock) and no agent answered\n")
    code, out = check(FakeFleet(balancer_error="haproxy-a: refused", dead_agents=(1, 2, 3, 4, 5, 6)), as_json=True)
    assert code == 3 and json.loads(out)["status"] == "UNKNOWN"


def test_a_fleet_read_in_part_is_judged_not_unknown():
    # the balancer is down but the agents answer: what the rules find decides (here: none of the test rules)
    code, out = check(FakeFleet(odd_model=(), balancer_error="haproxy-a: refused"), snapshot_once=one_sample)
    assert code == 0 and out.startswith("OK: 6 nodes")


def test_rules_with_history_run_when_prometheus_gives_it(monkeypatch):
    import asrtop.sources.prometheus_history as ph

    async def fake_fetch(url, snap, settings, refresh):
        assert url == "http://prom:9090"
        return ph.PrometheusHistory([1.0, 2.0, 3.0], {"node-1": {"gpu_mem": [0.1, 0.2, 0.3]},
                                                       "node-2": {"gpu_mem": [0.2, 0.2, 0.2]}})
    monkeypatch.setattr(ph, "fetch_history", fake_fetch)
    code, out = check(FakeFleet(odd_model=()), config=ClusterConfig(path=None, prometheus="http://prom:9090"))
    assert code == 1
    assert out.splitlines()[1:] == ["WARNING node-1 leaks GPU memory; action: asrtop drain node-1"]


def test_prometheus_that_cannot_answer_says_why_the_history_rules_were_not_evaluated():
    cfg = ClusterConfig(path=None, prometheus="http://127.0.0.1:1")
    fleet = FakeFleet(odd_model=())
    code, out = check(fleet, config=cfg)
    assert code == 0
    assert out.splitlines()[1].startswith("not evaluated (no history: Prometheus at http://127.0.0.1:1: ")
    assert out.splitlines()[1].endswith("): gpu-memory-leak")


def test_perfdata_items_follow_the_nagios_format():
    assert Perf("ready", 3, crit="2:", max=4).text() == "ready=3;;2:;0;4"
    assert Perf("problems", 0).text() == "problems=0;;;0"
    assert Perf("x", 1, min=None).text() == "x=1"
