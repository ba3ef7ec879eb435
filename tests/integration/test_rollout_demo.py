"""`asrtop rollout` end to end on the real demo cluster: 4 simulated nodes, their agents, HAProxy 2.8.

One cluster for the module (fast drains: rtf 0.02, agents every 200 ms); each test leaves every node ready
at its weight, no rollout unfinished, no fault set (the `clean` fixture makes sure). `asrtop rollout --json`
runs as a real process; the kill tests SIGKILL it when a given event is read, then `--resume` it.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from pathlib import Path

import pytest

from asrtop.control.rollout_model import STAGES
from asrtop.demo.cluster import OLD_MODEL, UPGRADE_TO
from asrtop.demo.haproxycfg import WS_BACKEND, admin_command
from asrtop.demo.load import clips
from support.rollout import (Fleet, Load, RolloutRun, cli, hold_busy, hook_line, hook_runs, recording_hook,
                             revision_digest, rollout, rollout_cluster, stage_audit, upgrade_argv, wait_hook_started,
                             wait_hooks_ended)

pytestmark = pytest.mark.timeout(120)

LOAD_CLIPS = (3, 5)  # seconds of audio: at rtf 0.02 the shortest requests that still keep 100 streams in flight
TARGET, OLD = revision_digest(UPGRADE_TO), revision_digest(OLD_MODEL)  # computed from the files, not read
STOPPED = 8  # asrtop.exitcodes.ROLLOUT_STOPPED, spelled out: the documented number is what scripts see


@pytest.fixture(scope="module")
def demo(wheel_haproxy_bin):
    with rollout_cluster(wheel_haproxy_bin) as c:
        yield c


@pytest.fixture
def fleet(demo, tmp_path):
    """The cluster as the test found it; afterwards: no rollout unfinished, every node ready at its weight,
    no fault knob set, no hook still running."""
    f = Fleet(demo)
    f.hook_log = tmp_path / "hooks.jsonl"
    yield f
    wait_hooks_ended(f.hook_log)
    st = f.state()
    if st is not None and st.status in ("running", "stopped"):
        cli(demo.config_path, "rollout", "--abort")
    for n in demo.nodes:
        if demo.node_model(n.index) and demo.node_model(n.index).endswith(("-badcanary", "-slow")):
            demo.upgrade_node(n.index, UPGRADE_TO)
        demo.fault(n.index, error_rate=0.0, slowdown=1.0)
        for backend in (demo.backend, WS_BACKEND):  # both balancers of the cluster file: a killed run drained both
            for cmd in (f"set server {backend}/{n.server} state ready",
                        f"set server {backend}/{n.server} weight {n.weight}"):
                admin_command(demo.admin_socket, cmd)
    wait_all_up(f)


def wait_all_up(f: Fleet, timeout: float = 10.0) -> dict:
    """HAProxy's rows once every server's health check sees it UP again (a restarted node is DOWN for a few
    checks: that is HAProxy's view of the restart, not the rollout's doing)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = f.balancer()
        if all(status == "UP" for status, _, _ in rows.values()) or time.monotonic() > deadline:
            return rows


def settled_status(f: Fleet, node: str, timeout: float = 10.0) -> str:
    """The node's HAProxy status once its health check has risen again after a restart (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        status = f.balancer()[node][0]
        if not status.startswith("DOWN") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def as_built(demo) -> dict[str, tuple[str, str, str]]:
    return {n.name: ("UP", str(n.weight), "1" if n.backup else "0") for n in demo.nodes}


def run_commands(text: str, config: Path) -> list[tuple[str, int, str]]:
    """Run the `asrtop ...` commands a stop message names (joined by &&), as an operator would copy them."""
    out = []
    for cmd in text.split("&&"):
        argv = shlex.split(cmd.strip())
        assert argv[0] == "asrtop", cmd
        p = cli(config, *[a for a in argv[1:] if a not in ("--config", str(config))])
        out.append((cmd.strip(), p.returncode, p.stderr.strip()))
    return out


def ready_lines(lines: list[dict]) -> dict[str, int]:
    """node -> how many times it was actually put back in rotation: the Controller's own `ready` audit
    lines that changed a balancer."""
    out: dict[str, int] = {}
    for rec in lines:
        if rec.get("action") == "ready" and rec.get("outcome") in ("done", "changed"):
            out[rec["node"]] = out.get(rec["node"], 0) + 1
    return out


def stop_text(out) -> str:
    """Everything the stopped rollout said: stderr and the JSON events' messages."""
    return out.stderr + "\n".join(e.get("message", "") for e in out.events)


# --- the whole fleet, under load ---------------------------------------------------------------------------
def test_full_rollout_under_load_moves_every_node_and_loses_nothing(demo, fleet):
    for n in demo.nodes:  # the demo's shape: node-2 on the previous revision, the rest on the new one
        shape = OLD_MODEL if n.name == "node-2" else UPGRADE_TO
        if demo.node_model(n.index) != shape:
            demo.upgrade_node(n.index, shape)
        fleet.wait_digest(n.name, OLD if n.name == "node-2" else TARGET)
    before, mark = fleet.balancer(), fleet.audit_mark()
    assert before == as_built(demo)
    hook = recording_hook(fleet.hook_log, upgrade_argv(UPGRADE_TO))

    load = Load(demo.url, 100, duration=60, clip_seconds=LOAD_CLIPS)
    load.wait_in_flight(80)
    out = rollout(demo.config_path, "--hook", hook_line(hook), timeout=90)
    report = load.finish()
    assert out.rc == 0, out.describe()

    # client side: every request answered, 200
    assert report.sent > 100 and report.failures == {} and report.successes == report.sent, report.summary()
    # node side: each node's counters before its upgrade (the hook read them: the restart resets them) plus
    # now; every POST the load made arrived once and got one answer, all 200 (the canary's included)
    runs = hook_runs(fleet.hook_log)
    pre = [r["stats"] for r in runs if r["event"] == "start"]
    assert sorted(r["node"] for r in runs if r["event"] == "start") == sorted(n.name for n in demo.nodes)
    stats = pre + list(fleet.sim_stats().values())
    assert sum(s["by_endpoint"].get("/asr", 0) for s in stats) == report.sent
    assert all(s["received"] == s["answered"] and set(s["by_status"]) <= {"200"} for s in stats), stats

    # every node on one digest, the one the first upgraded node verified; node-2 moved off the old one
    st = fleet.state()
    assert st.status == "done" and st.target == TARGET
    assert fleet.digests() == {n.name: TARGET for n in demo.nodes}
    assert {demo.node_model(n.index) for n in demo.nodes} == {UPGRADE_TO}
    # every stage of every node: an ok event and an ok audit line, in order; each node readied once
    audit = fleet.audit_since(mark)
    assert stage_audit(audit) == {n.name: [(s, "ok") for s in STAGES] for n in demo.nodes}
    assert ready_lines(audit) == {n.name: 1 for n in demo.nodes}
    for n in demo.nodes:
        assert [s for node, s in out.stages("ok") if node == n.name] == list(STAGES)
    # weights and backup flags as before
    assert wait_all_up(fleet) == before
    print(f"\nfull rollout under 100 streams: {out.seconds:.1f} s; {report.summary()}")


# --- stops -------------------------------------------------------------------------------------------------
def test_hook_fails_stops_at_that_node_and_leaves_the_rest(demo, fleet):
    before, mark = fleet.balancer(), fleet.audit_mark()
    out = rollout(demo.config_path, "--hook", hook_line(recording_hook(fleet.hook_log, exit_code=1)))
    assert out.rc == STOPPED, out.describe()
    failed = [e for e in out.events if e.get("kind") == "failed"]
    assert len(failed) == 1 and failed[0]["stage"] == "hook", out.describe()
    node = failed[0]["node"]
    # one node tried; it stays drained; every other node untouched
    assert [r["node"] for r in hook_runs(fleet.hook_log) if r["event"] == "start"] == [node]
    now = fleet.balancer()
    assert now[node][0] == "DRAIN" and now[node][1:] == before[node][1:]
    assert {n: v for n, v in now.items() if n != node} == {n: v for n, v in before.items() if n != node}
    assert set(stage_audit(fleet.audit_since(mark))) == {node}
    assert fleet.state().status == "stopped" and fleet.state().stopped["node"] == node
    # the message: node, stage, reason (the hook's exit and its last line), the commands to go on with
    text = stop_text(out)
    assert f"rollout stopped at {node}, stage hook" in text and "failing on purpose" in text, text
    assert "rollout --resume" in text and "rollout --resume --from hook" in text, text
    # `asrtop status` says where it stopped and how to go on, in the same words
    status = cli(demo.config_path, "status")
    assert f"stopped at {node} (hook)" in status.stdout and "rollout --resume --from hook" in status.stdout, status.stdout
    back = [ln.split(":  ", 1)[1] for ln in out.stderr.splitlines() if "put " + node + " back" in ln]
    assert back, out.stderr
    # ...and they work: the node is back as it was, the rollout ended
    assert [rc for _, rc, _ in run_commands(back[0], demo.config_path)] == [0, 0]
    assert wait_all_up(fleet) == before and fleet.state().status == "aborted"


def test_wrong_digest_after_the_hook_stops_before_ready(demo, fleet):
    mark = fleet.audit_mark()
    hook = recording_hook(fleet.hook_log, upgrade_argv(OLD_MODEL))  # installs the previous revision
    out = rollout(demo.config_path, "node-1", "--expect-model", TARGET, "--health-timeout", "5",
                  "--hook", hook_line(hook))
    assert out.rc == STOPPED, out.describe()
    assert out.stages("failed") == [("node-1", "health")]
    assert "ready" not in [s for _, s in out.stages("start")]
    assert settled_status(fleet, "node-1") == "DRAIN"  # once HAProxy's check of the restart has risen
    assert fleet.digests()["node-1"] == OLD
    text = stop_text(out)  # names the node, the stage, the digest it runs and the one it should
    assert "node-1, stage health" in text and OLD[:12] in text and TARGET[:12] in text, text
    assert ready_lines(fleet.audit_since(mark)) == {}


@pytest.mark.parametrize("broken", ["error_rate", "badcanary"])
def test_canary_fails_stops_before_ready(demo, fleet, broken):
    mark = fleet.audit_mark()
    args = []
    if broken == "error_rate":  # the node comes back on the right model but answers 500 (its fault knob)
        hook = recording_hook(fleet.hook_log, upgrade_argv(UPGRADE_TO), fault={"error_rate": 1.0})
    else:  # a revision that drops words: compared with the transcript a good node gives
        hook = recording_hook(fleet.hook_log, upgrade_argv(UPGRADE_TO + "-badcanary"))
        args = ["--canary-text", good_transcript(demo)]
    out = rollout(demo.config_path, "node-3", *args, "--hook", hook_line(hook))
    assert out.rc == STOPPED, out.describe()
    assert out.stages("failed") == [("node-3", "canary")], out.describe()
    assert "ready" not in [s for _, s in out.stages("start")]
    # still drained; HAProxy's own check of the restarted node may not have risen yet ("DOWN 1/2"): its
    # view of the restart, not the rollout's doing (the health stage asks the agent, not HAProxy)
    assert settled_status(fleet, "node-3") == "DRAIN"
    assert ready_lines(fleet.audit_since(mark)) == {}
    why = {"error_rate": "500", "badcanary": "differs"}[broken]
    assert why in fleet.state().stopped["reason"], fleet.state().stopped
    demo.upgrade_node(2, UPGRADE_TO)


def good_transcript(demo) -> str:
    from asrtop.control.canary import default_clip, run_canary

    res = asyncio.run(run_canary(demo.nodes[0].address, default_clip(), "openai", 10.0))
    assert res.status == 200 and res.text, res
    return res.text


# --- asrtop killed, then --resume ----------------------------------------------------------------------------
KILLS = {  # when -> (the nodes rolled, the event that gets asrtop SIGKILLed, how often each node's hook runs)
    # node-4 busy with a slow request: the wait lasts; the hook has not run yet
    "wait": (["node-4"], ("node-4", "wait", "progress"), {"node-4": 1}),
    # killed once the hook has started (a slow first run: 3 s before it upgrades); it runs on (its own process
    # group) and --resume runs the hook again, never while the first run still could restart the node
    "hook": (["node-2"], None, {"node-2": 2}),
    # node-4 done, node-2 not started: neither is redone
    "between": (["node-4", "node-2"], ("node-4", "ready", "ok"), {"node-4": 1, "node-2": 1}),
}


@pytest.mark.parametrize("when", list(KILLS))
def test_killed_then_resumed_finishes_like_an_uninterrupted_run(demo, fleet, when):
    """asrtop SIGKILLed during a node's wait, during its hook, or between two nodes; `--resume` finishes
    it: every node readied exactly once, none skipped, all on the target digest, the fleet as before."""
    nodes, kill_at, hooks = KILLS[when]
    before, mark = fleet.balancer(), fleet.audit_mark()
    hook = recording_hook(fleet.hook_log, upgrade_argv(UPGRADE_TO), first_sleep=3.0 if when == "hook" else None)
    busy = None
    if when == "wait":  # one 5 s clip, 30x slower than node-4's rtf 0.02: 3 s in flight
        demo.fault(3, slowdown=30.0)
        busy = hold_busy(demo.nodes[3].url, clips((5,))[0][1])
        wait_in_flight(fleet, "node-4")
    run = RolloutRun(demo.config_path, *nodes, "--hook", hook_line(hook), kill_at=kill_at)
    if when == "hook":
        wait_hook_started(fleet.hook_log, "node-2")
        run.kill()
        kill_at = ("node-2", "hook", None)
    first = run.wait(60)
    assert first.killed and first.rc == -9, first.describe()
    if when == "wait":  # killed while the wait saw the request in flight
        seen = [e["in_flight"] for e in first.events if e["kind"] == "progress"]
        assert seen and seen[0] >= 1, first.events
    if when == "hook":
        assert [r["event"] for r in hook_runs(fleet.hook_log)] == ["start"], "killed after the hook ended"
    st = fleet.state()
    assert st.status == "running" and st.progress(kill_at[0]).stage == kill_at[1], st

    second = rollout(demo.config_path, "--resume", timeout=60)  # at once, as the operator would
    assert second.rc == 0, second.describe()
    if busy:
        assert busy() == [200]  # the request the wait waited for was not cut
    audit = fleet.audit_since(mark)
    assert ready_lines(audit) == {n: 1 for n in nodes}
    assert {n: [s for s, o in v if s == "ready" and o == "ok"] for n, v in stage_audit(audit).items()} == \
        {n: ["ready"] for n in nodes}
    assert fleet.state().status == "done"
    started = [r["node"] for r in hook_runs(fleet.hook_log) if r["event"] == "start"]
    assert {n: started.count(n) for n in set(started)} == hooks
    wait_hooks_ended(fleet.hook_log)
    readied = {e["node"]: e["at"] for e in first.events + second.events
               if e["kind"] == "ok" and e.get("stage") == "ready"}
    for r in hook_runs(fleet.hook_log):  # no hook run was still busy with a node once it was back in rotation
        assert r["event"] != "end" or r["at"] < readied[r["node"]], (r, readied)
    assert {n: fleet.digests()[n] for n in nodes} == {n: TARGET for n in nodes}
    assert wait_all_up(fleet) == before


def wait_in_flight(fleet: Fleet, node: str, timeout: float = 10.0) -> None:
    """Until the node's agent counts the held request (so the rollout's wait sees it too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (fleet.agent_status(node).get("asr") or {}).get("in_flight"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{node}'s agent shows nothing in flight")


# --- exclusive ---------------------------------------------------------------------------------------------
def test_second_rollout_and_single_action_on_a_held_node_are_refused(demo, fleet, tmp_path):
    release = tmp_path / "release-hook"  # the hook holds node-1's upgrade open until the refusals are in
    run = RolloutRun(demo.config_path, "node-1", "--hook", hook_line(recording_hook(fleet.hook_log, hold=release)))
    run.wait_event("node-1", "hook", "start")
    second, drain = both(cli, (demo.config_path, "rollout", "node-3", "--hook", "true"),
                         (demo.config_path, "drain", "node-1"))
    assert run.proc.poll() is None, "the rollout ended before the refusals were tried"
    release.touch()
    out = run.wait(60)
    assert out.rc == 0, out.describe()
    assert second.returncode == 3, second.stderr
    assert "rollout" in second.stderr and f"pid {run.proc.pid}" in second.stderr, second.stderr
    assert drain.returncode == 3, drain.stderr
    assert "rollout" in drain.stderr and "node-1" in drain.stderr, drain.stderr
    assert fleet.balancer()["node-3"] == as_built(demo)["node-3"]


def both(fn, a: tuple, b: tuple):
    """fn(*a) and fn(*b) at once (two asrtop processes side by side), their results in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:
        fa, fb = ex.submit(fn, *a), ex.submit(fn, *b)
        return fa.result(), fb.result()


# --- plan-time refusal -------------------------------------------------------------------------------------
def test_max_unavailable_over_min_ready_is_refused_at_plan_time(demo, fleet, tmp_path):
    cfg = tmp_path / "asrtop.toml"  # the demo's file with min_ready 2: of 3 primaries only 1 may be out
    cfg.write_text(demo.config_path.read_text().replace("min_ready = 1", "min_ready = 2"))
    hook = hook_line(recording_hook(fleet.hook_log, upgrade_argv(UPGRADE_TO)))
    before, mark, state = fleet.balancer(), fleet.audit_mark(), fleet.state()
    ok = cli(cfg, "rollout", "--max-unavailable", "1", "--hook", hook, "--dry-run")
    refused = cli(cfg, "rollout", "--max-unavailable", "2", "--hook", hook)
    assert ok.returncode == 0, ok.stderr
    assert refused.returncode == 3 and "min_ready" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert fleet.balancer() == before and fleet.audit_since(mark) == [] and hook_runs(fleet.hook_log) == []
    assert fleet.state() == state
