"""`asrtop rollout` on the real demo cluster (HAProxy 2.8, agents, simulated nodes on 127.0.0.1).

The happy path on two nodes (the demo's own hook and the real canary), a hook that fails (exit 8, the node
stays drained, nothing else changes), and what a running rollout refuses: a plain `asrtop drain` of the
node it holds, and a second rollout. (Kill/resume and load: tests/integration/test_rollout_e2e.py.)
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from asrtop.balancers.base import AdminState
from asrtop.balancers.factory import build_balancers
from asrtop.config import load_config
from asrtop.control.audit import AuditLog
from asrtop.control.rollout_model import state_path
from asrtop.demo.cluster import DemoCluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(wheel_haproxy_bin):
    # 3 nodes: node-1 primary, node-2 primary on the old model, node-3 backup; agents report every 0.25 s
    with DemoCluster(nodes=3, haproxy_bin=wheel_haproxy_bin, agent_interval="0.25s") as c:
        yield c


@pytest.fixture
def demo(cluster):
    """The cluster as each test found it: every node ready, no rollout state."""
    yield cluster
    state_path(cluster.workdir / "audit.jsonl").unlink(missing_ok=True)
    balancer = build_balancers(load_config(str(cluster.config_path)))[0]
    for s in balancer.servers():
        if s.admin is not AdminState.READY:
            balancer.set_state(s.name, AdminState.READY)


def asrtop(c: DemoCluster, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asrtop.cli", "--config", str(c.config_path), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def servers(c: DemoCluster):
    return {s.name: s for s in build_balancers(load_config(str(c.config_path)))[0].servers()}


def admin(c: DemoCluster) -> dict[str, str]:
    return {name: s.admin.value for name, s in servers(c).items()}


def rollout_lines(c: DemoCluster) -> list[tuple[str, str, str]]:
    """(node, stage, outcome) of the audit's rollout lines, oldest first."""
    return [(e.node, str(e.value), e.outcome) for e in reversed(list(AuditLog(c.workdir / "audit.jsonl").newest_first()))
            if e.action == "rollout"]


def digest(c: DemoCluster, i: int) -> str | None:
    """What node i's agent reports now (read straight from it: cheaper than `asrtop status`)."""
    with urllib.request.urlopen(c.nodes[i].agent_url + "/v1/status", timeout=5) as r:
        return json.loads(r.read())["model"]["sha256"]


def state(c: DemoCluster) -> dict:
    return json.loads(state_path(c.workdir / "audit.jsonl").read_text())


def test_two_nodes_end_on_one_digest_every_stage_audited(demo):
    before = {n: (s.weight, s.backup) for n, s in servers(demo).items()}
    p = asrtop(demo, "rollout", "node-2", "node-3", "--json")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert events[0]["kind"] == "plan" and [n["name"] for n in events[0]["plan"]["nodes"]] == ["node-3", "node-2"]
    assert events[-1]["kind"] == "end" and events[-1]["exit_code"] == 0
    passed = [(e["node"], e["stage"]) for e in events if e["kind"] == "ok"]
    stages = ["drain", "wait", "hook", "health", "canary", "ready"]
    assert passed == [("node-3", s) for s in stages] + [("node-2", s) for s in stages]
    # node-2 ran the old model: the hook moved it onto the digest node-3 (upgraded first) set as the target
    st = state(demo)
    assert st["status"] == "done" and st["target"] and st["reference_text"]
    assert digest(demo, 1) == digest(demo, 2) == st["target"]
    assert admin(demo) == {"node-1": "ready", "node-2": "ready", "node-3": "ready"}
    assert {n: (s.weight, s.backup) for n, s in servers(demo).items()} == before  # weights and backup as before
    audited = rollout_lines(demo)
    assert [x for x in audited if x[0] == "node-2"] == [("node-2", s, "ok") for s in stages]
    assert audited[0] == ("", "start", "started") and audited[-1] == ("", "end", "ok")


def test_a_failing_hook_stops_at_that_node_which_stays_drained(demo):
    hook = f"{sys.executable} -c \"import sys; print('upgrading {{node}}'); print('no space left on device'); sys.exit(4)\""
    p = asrtop(demo, "rollout", "node-1", "node-3", "--hook", hook)
    assert p.returncode == 8, p.stderr
    err = p.stderr.splitlines()
    assert err[0].startswith("asrtop: rollout stopped at node-3, stage hook: the hook failed (exit 4): no space left on "
                             "device (log: ")
    cfg = f"--config {demo.config_path}"
    assert any(line.endswith(f"asrtop {cfg} rollout --resume") for line in err)
    assert any(line.endswith(f"asrtop {cfg} rollout --resume --from hook") for line in err)
    assert any(line.endswith(f"asrtop {cfg} ready node-3 && asrtop {cfg} rollout --abort") for line in err)
    assert admin(demo)["node-3"] == "drain" and admin(demo)["node-1"] == admin(demo)["node-2"] == "ready"  # node-1 not touched
    reason = err[0].split("stage hook: ", 1)[1]
    assert state(demo)["stopped"] == {"node": "node-3", "stage": "hook", "reason": reason}
    log = Path(err[0].rsplit("(log: ", 1)[1].rstrip(")"))
    assert "upgrading node-3" in log.read_text()
    # a new rollout is refused while this one is unfinished; --abort ends it and names the node left out
    again = asrtop(demo, "rollout", "node-1", "--hook", "true")
    assert again.returncode == 3 and "is unfinished, stopped at node-3 (hook)" in again.stderr
    ab = asrtop(demo, "rollout", "--abort")
    assert ab.returncode == 0 and "left as they are, out of rotation: node-3 (at hook)" in ab.stdout
    assert admin(demo)["node-3"] == "drain" and state(demo)["status"] == "aborted"


def test_a_running_rollout_holds_its_node_against_a_plain_drain_and_a_second_rollout(demo, tmp_path):
    go = tmp_path / "go"
    hook = (f"{sys.executable} -c \"import os, time\nwhile not os.path.exists('{go}'): time.sleep(0.02)\"")
    proc = subprocess.Popen([sys.executable, "-m", "asrtop.cli", "--config", str(demo.config_path), "rollout",
                             "node-1", "--hook", hook], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the rollout runs node-1's hook
            if state_path(demo.workdir / "audit.jsonl").exists():
                nodes = state(demo).get("nodes", {})
                if nodes.get("node-1", {}).get("stage") == "hook":
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("the rollout never reached node-1's hook")
        drain = asrtop(demo, "drain", "node-1")
        assert drain.returncode == 3
        assert "drain node-1: node-1 is held by the rollout running now (started by " in drain.stderr
        assert f"(pid {proc.pid}), now at node-1 (hook))" in drain.stderr
        second = asrtop(demo, "rollout", "node-2", "--hook", "true")
        assert second.returncode == 3
        assert f"refused: a rollout is running: started by " in second.stderr and f"(pid {proc.pid})" in second.stderr
        assert admin(demo)["node-2"] == "ready"  # neither touched node-2
        go.touch()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert admin(demo)["node-1"] == "ready"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_stage(c: DemoCluster, proc: subprocess.Popen, node: str, stage: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if state_path(c.workdir / "audit.jsonl").exists():
            if state(c).get("nodes", {}).get(node, {}).get("stage") == stage:
                return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail(f"the rollout never reached {node}'s {stage}")


def test_ctrl_c_lets_the_hook_finish_records_it_and_resume_goes_on(demo):
    hook = f"{sys.executable} -c \"import time; time.sleep(0.5); print('upgraded {{node}}')\""
    proc = subprocess.Popen([sys.executable, "-m", "asrtop.cli", "--config", str(demo.config_path), "rollout",
                             "node-1", "--hook", hook, "--ramp", "0.4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for_stage(demo, proc, "node-1", "hook")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "SIGINT (Ctrl+C): stopping after the stage in progress is recorded" in out
    assert "interrupted by SIGINT (Ctrl+C) after node-1's hook was recorded; continue it with " \
           f"`asrtop --config {demo.config_path} rollout --resume`" in err
    st = state(demo)
    assert st["status"] == "stopped" and st["nodes"]["node-1"]["stage"] == "hook"
    assert st["nodes"]["node-1"]["status"] == "ok"  # the hook ran to its end, not cut by the Ctrl+C
    assert admin(demo)["node-1"] == "drain"
    p = asrtop(demo, "rollout", "--resume", "--json")
    assert p.returncode == 0, p.stderr
    started = [e["stage"] for e in map(json.loads, p.stdout.splitlines()) if e["kind"] == "start" and "stage" in e]
    assert started == ["health", "canary", "ready"]  # the hook is not run twice
    assert admin(demo)["node-1"] == "ready" and servers(demo)["node-1"].weight == 3
    # --ramp (kept in the state file across the resume): weight 1 while still drained, ready, then up to 3
    sent = [(e.action, e.value) for e in reversed(list(AuditLog(demo.workdir / "audit.jsonl").newest_first("node-1")))
            if e.action in ("ready", "weight")][-3:]
    assert sent == [("weight", 1), ("ready", None), ("weight", 3)]


def test_resume_after_a_kill_in_ready_never_readies_twice(demo):
    """SIGKILLed after the ready was sent and before it was recorded: the state says "running"; the resume
    reads the balancers, finds the node ready, and records it without sending it again."""
    from asrtop.control.rollout_model import (NodeProgress, PlannedNode, RolloutPlan, RolloutSettings,
                                              RolloutState)
    from asrtop.control.rollout_store import write_state

    s = servers(demo)["node-1"]
    plan = RolloutPlan((PlannedNode("node-1", False, s.weight, 0, None, demo.nodes[0].address, demo.nodes[0].agent_url),),
                       (("node-1",),), RolloutSettings(hook=("true",)), None, "the first node upgraded")
    write_state(demo.workdir / "audit.jsonl", RolloutState(
        "20261201T000000Z-dead", "ops@bastion", 999999, time.time(), time.time(), "running", plan,
        {"node-1": NodeProgress("ready", "running", started_at=time.time())}))
    audit = AuditLog(demo.workdir / "audit.jsonl")
    sent_before = sum(1 for e in audit.newest_first("node-1") if e.action == "ready")
    p = asrtop(demo, "rollout", "--resume", "--json")
    assert p.returncode == 0, p.stderr
    ok = [e for e in map(json.loads, p.stdout.splitlines()) if e["kind"] == "ok"]
    assert [(e["node"], e["stage"]) for e in ok] == [("node-1", "ready")]
    assert ok[0]["message"] == "ok: ready on every balancer already (not sent again)"
    assert sum(1 for e in audit.newest_first("node-1") if e.action == "ready") == sent_before


def test_a_wrong_digest_after_the_hook_stops_before_the_canary(demo):
    from asrtop.demo.cluster import OLD_MODEL

    target = digest(demo, 0)  # node-1 runs the fleet's revision now
    hook = f"{sys.executable} -m asrtop.demo.upgrade {{address}} --to {OLD_MODEL}"  # the previous revision
    try:
        p = asrtop(demo, "rollout", "node-1", "--hook", hook, "--expect-model", target, "--json")
        assert p.returncode == 8, p.stderr
        events = [json.loads(x) for x in p.stdout.splitlines()]
        failed = [e for e in events if e["kind"] == "failed"]
        assert [(e["node"], e["stage"]) for e in failed] == [("node-1", "health")]
        assert failed[0]["message"].startswith("failed: node-1 runs model ")
        assert failed[0]["message"].endswith(f"after the hook, the target is {target[:12]} (--expect-model)")
        assert not [e for e in events if e.get("stage") in ("canary", "ready")]  # never put back
        assert events[-1]["kind"] == "end" and events[-1]["exit_code"] == 8
        assert admin(demo)["node-1"] == "drain"
    finally:
        demo.upgrade_node(0)  # back on the fleet's revision for the next test


def test_max_unavailable_drains_a_batch_together_and_is_refused_over_min_ready(demo):
    # node-1, node-2 primaries (min_ready 1): taking both out at once is refused before anything is sent
    p = asrtop(demo, "rollout", "node-1", "node-2", "--max-unavailable", "2", "--hook", "true")
    assert p.returncode == 3, p.stderr
    # the two in plan order, least loaded first: a connection the agent counts at that moment (a balancer
    # check, a just-closed request) can put either first
    assert re.search(r"refused: taking node-(1, node-2|2, node-1) out would leave 0 ready primary node\(s\), "
                     r"min_ready is 1", p.stderr), p.stderr
    assert not state_path(demo.workdir / "audit.jsonl").exists()
    # the backup and one primary fit: both drained together, then each node's stages in turn
    p = asrtop(demo, "rollout", "node-3", "node-1", "--max-unavailable", "2", "--hook", "true", "--json")
    assert p.returncode == 0, p.stderr
    started = [(e["node"], e["stage"]) for e in map(json.loads, p.stdout.splitlines())
               if e["kind"] == "start" and "stage" in e]
    assert started[:3] == [("node-3", "drain"), ("node-1", "drain"), ("node-3", "wait")]
    assert admin(demo) == {"node-1": "ready", "node-2": "ready", "node-3": "ready"}
