"""The agent as a real process on loopback, beside the simulated FunASR node: both endpoints, bad input."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asrtop.agentstatus import parse_status
from support.netutil import free_port
from support.agent_proc import agent, simnode, wait_status


def metrics(url: str) -> dict[tuple[str, tuple], float]:
    r = httpx.get(url + "/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def manifest(root) -> str:
    lines = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            data = open(full, "rb").read()
            lines.append(f"{os.path.relpath(full, root)}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def test_agent_reports_simnode_model_and_simulated_gpu(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pt").write_bytes(os.urandom(2_500_000))
    (model / "config.yaml").write_text("model: FunASRNano\n")
    with simnode(tmp_path) as node, agent(tmp_path, node.url, "--model-dir", str(model), "--gpu", "simulated",
                                          "--node", "node-a", "--interval", "200ms") as ag:
        body = wait_status(ag.url, lambda b: b["model"]["state"] == "ok" and b["asr"]["up"]
                           and b["asr"]["process_rss_bytes"])
        st = parse_status(body)
        assert st.node == "node-a" and st.interval_seconds == 0.2
        assert st.asr.pid == node.pid and st.asr.in_flight_source == "connections"
        assert st.asr.probe_latency_seconds > 0 and st.asr.requests is None
        assert st.model.sha256 == manifest(model) and st.model.files == 2
        assert st.gpu_source == "simulated" and st.gpus[0].name.startswith("Simulated ")
        assert st.host.memory_total_bytes > 0
        m = metrics(ag.url)
        assert m[("asr_service_up", ())] == 1
        assert m[("asr_node_info", (("agent_version", "0.1.0"), ("gpu_source", "simulated"), ("node", "node-a")))] == 1
        assert m[("asr_model_info", (("sha256", st.model.sha256),))] == 1
        assert m[("asr_model_state", (("state", "ok"),))] == 1
        assert ("asr_service_in_flight_requests", (("source", "connections"),)) in m
        assert not any(k[0] == "asr_requests_total" for k in m)  # no proxy, no exact counts
        gpu_info = [k for k in m if k[0] == "asr_gpu_info"]
        assert len(gpu_info) == 1 and dict(gpu_info[0][1])["name"].startswith("Simulated ")
        files = httpx.get(ag.url + "/v1/model", timeout=5).json()
        assert {f["path"]: f["sha256"] for f in files["files"]}["config.yaml"] == \
            hashlib.sha256(b"model: FunASRNano\n").hexdigest()
        # an upgrade changes a file: the background re-check comes every 30 s (SLOW_INTERVAL), a read
        # with ?after=now (asrtop's after a deploy) lists the dirs at once, and its hashing ends in 'ok'
        (model / "config.yaml").write_text("model: FunASRNano-v2\n")
        forced = httpx.get(ag.url + "/v1/status", params={"after": "now"}, timeout=15).json()
        assert forced["model"]["state"] in ("hashing", "ok") and forced["model"]["sha256"] != st.model.sha256
        body = wait_status(ag.url, lambda b: b["model"]["state"] == "ok" and b["model"]["sha256"] != st.model.sha256)
        assert body["model"]["sha256"] == manifest(model)
        assert httpx.get(ag.url + "/healthz", timeout=5).status_code == 200


def test_asr_restart_is_followed(tmp_path):
    port = free_port()
    with simnode(tmp_path, port=port) as first, agent(tmp_path, first.url, "--gpu", "none", "--interval", "200ms") as ag:
        wait_status(ag.url, lambda b: b["asr"]["pid"] == first.pid)
        first.stop()
        down = wait_status(ag.url, lambda b: b["asr"]["up"] is False and b["asr"]["pid"] is None)
        assert "nothing listens" in down["asr"]["process_error"]
        with simnode(tmp_path, port=port) as second:
            back = wait_status(ag.url, lambda b: b["asr"]["up"] is True and b["asr"]["pid"] == second.pid)
            assert back["asr"]["process_rss_bytes"] > 0


def test_hostile_node_never_crashes_the_agent(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "ok.bin").write_bytes(b"x")
    os.symlink(tmp_path / "vanished", model / "weights.bin")  # unreadable even for root
    dead = f"http://127.0.0.1:{free_port()}"
    with agent(tmp_path, dead, "--model-dir", str(model), "--model-dir", str(tmp_path / "absent"),
               "--interval", "200ms") as ag:  # default --gpu nvml, and this machine has no driver
        body = wait_status(ag.url, lambda b: b["asr"]["up"] is False and b["model"]["state"] == "error")
        assert body["gpu_source"] == "none" and "NVML" in body["gpu_error"] and body["gpus"] == []
        assert body["asr"]["error"] and body["asr"]["pid"] is None and body["asr"]["probe_latency_seconds"] is None
        states = {d["path"]: (d["state"], d["error"]) for d in body["model"]["dirs"]}
        assert states[str(model)][0] == "error" and "weights.bin" in states[str(model)][1]
        assert states[str(tmp_path / "absent")][0] == "missing"
        m = metrics(ag.url)
        assert m[("asr_service_up", ())] == 0 and m[("asr_model_state", (("state", "error"),))] == 1
        assert not any(k[0].startswith("asr_gpu_") for k in m)
        assert ("asr_service_probe_latency_seconds", ()) not in m
        time.sleep(0.5)
        assert ag.popen.poll() is None


def run_agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asrtop_agent", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("args, needle", [
    (["--asr-url", "http://127.0.0.1:1", "--bogus"], "unrecognized arguments: --bogus"),
    (["--asr-url", "http://127.0.0.1:1", "--interval", "soon"], "bad interval"),
    (["--asr-url", "http://127.0.0.1:1", "--interval", "0s"], "out of range"),
    (["--asr-url", "ftp://x"], "bad --asr-url"),
    (["--asr-url", "http://127.0.0.1:1", "--listen", "nope"], "bad listen address"),
    (["--asr-url", "http://127.0.0.1:1", "--gpu", "amd"], "invalid choice"),
    ([], "--asr-url"),
])
def test_bad_input_is_one_line_and_nonzero(args, needle):
    out = run_agent(*args)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("which", ["--listen", "--proxy"])
def test_port_in_use_is_one_line_and_nonzero(which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        args = ["--asr-url", "http://127.0.0.1:1", "--gpu", "none"]
        args += ["--listen", busy] if which == "--listen" else ["--listen", f"127.0.0.1:{free_port()}", "--proxy", busy]
        out = run_agent(*args)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0] and busy in lines[0], out.stderr


def test_started_by_hand_it_says_where_it_listens(tmp_path):
    """One line on stderr at start: node, status and metrics URLs, the proxy port and where it forwards."""
    with agent(tmp_path, "http://127.0.0.1:1", "--gpu", "none", "--node", "node-a", proxy=True) as ag:
        deadline = time.monotonic() + 10
        while "asrtop-agent" not in ag.output() and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = ag.output().splitlines()
    where, proxy = ag.url.removeprefix("http://"), ag.proxy_url.removeprefix("http://")
    assert lines[0] == (f"asrtop-agent 0.1.0: node node-a: status http://{where}/v1/status, metrics "
                        f"http://{where}/metrics, proxy {proxy} -> http://127.0.0.1:1 (the balancer's address "
                        "for this node); ASR http://127.0.0.1:1, GPU none")
