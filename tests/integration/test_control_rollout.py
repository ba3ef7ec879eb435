"""`asrtop rollout` on the real demo cluster (HAProxy 2.8, agents, simulated nodes on 127.0.0.1).

A hook that fails (exit 8, the node stays drained, a new rollout is refused as unfinished, --abort), Ctrl+C
(the hook finishes and is recorded; --resume goes on), a kill in ready (never readied twice) and a batch of
--max-unavailable. The full rollout under load, the other stops, kill/resume at each stage and the refusals
while one runs: tests/integration/test_rollout_demo.py.
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
