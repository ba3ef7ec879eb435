"""The demo's fault knobs on a real simulated node process (one for the module, left as found), seen
through `python -m asrtop.demo.fault`, the node's /_sim/stats and a real agent with the simulated GPU; the
crash loop through a small demo cluster that restarts crashed nodes as systemd would."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from asrtop.demo import fault
from asrtop.demo.cluster import DemoCluster
from support.agent_proc import agent, simnode, wait_status

MiB = 2**20


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    with simnode(tmp, fault_state=tmp / "node.faults.json") as p:
        p.address = f"127.0.0.1:{p.port}"
        p.fault_state = tmp / "node.faults.json"
        yield p


@pytest.fixture(autouse=True)
def cleared(node):
    yield
    assert fault.main([node.address, "--clear"]) == 0


def stats(node) -> dict:
    return httpx.get(node.url + "/_sim/stats", timeout=5).json()


def test_gpu_leak_grows_the_reported_vram_at_about_the_rate_and_the_simulated_gpu_shows_it(node, tmp_path, capsys):
    with agent(tmp_path, node.url, "--gpu", "simulated", "--interval", "0.2") as a:
        before = wait_status(a.url, lambda b: b["asr"]["up"] is True)["gpus"][0]["memory_used_bytes"]
        assert fault.main([node.address, "--gpu-leak", "200"]) == 0
        assert "GPU leak 200 MiB/s" in capsys.readouterr().out
        t0, b0 = time.monotonic(), stats(node)["gpu_leaked_bytes"]
        time.sleep(1.0)
        t1, b1 = time.monotonic(), stats(node)["gpu_leaked_bytes"]
        assert (b1 - b0) / (t1 - t0) == pytest.approx(200 * MiB, rel=0.2)
        # the agent's simulated GPU (demo only) carries the node's simulated leak
        grown = wait_status(a.url, lambda b: b["gpus"][0]["memory_used_bytes"] >= before + 200 * MiB)
        gpu = grown["gpus"][0]
        assert grown["gpu_source"] == "simulated" and gpu["processes"][0]["gpu_memory_bytes"] == gpu["memory_used_bytes"]
        assert fault.main([node.address, "--clear"]) == 0
        wait_status(a.url, lambda b: b["gpus"][0]["memory_used_bytes"] == before)


def test_rss_leak_really_allocates_and_clear_releases_it(node):
    proc = psutil.Process(node.pid)
    base = proc.memory_info().rss
    assert fault.main([node.address, "--rss-leak", "200"]) == 0
    deadline = time.monotonic() + 10
    while stats(node)["rss_leaked_bytes"] < 150 * MiB and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.memory_info().rss - base >= 140 * MiB  # resident, not only promised
    assert fault.main([node.address, "--clear"]) == 0
    assert stats(node)["rss_leaked_bytes"] == 0
    assert proc.memory_info().rss - base < 60 * MiB


def test_a_bad_knob_changes_nothing_and_is_one_line(node, capsys):
    r = httpx.post(node.url + "/_sim/fault", json={"gpu_leak_mb_s": 5, "error_rate": 7}, timeout=5)
    assert r.status_code == 400 and r.json()["error"] == "error_rate must be a number in 0..1, got 7"
    r = httpx.post(node.url + "/_sim/fault", json={"gpu_leak": 5}, timeout=5)
    assert r.status_code == 400 and "unknown fault knob 'gpu_leak'" in r.json()["error"]
    s = stats(node)
    assert (s["gpu_leak_mb_s"], s["error_rate"]) == (0, 0)
    for argv, line in (([node.address, "--errors", "2"], "argument --errors: must be in [0, 1], got 2"),
                       ([node.address], "nothing to do: give a fault"),
                       (["10.1.2.3:80", "--clear"], "refusing 10.1.2.3:80: asrtop.demo.fault only talks to simulated"),
                       (["node-1", "--clear"], "expected HOST:PORT")):
        assert fault.main(argv) == 2
        err = capsys.readouterr().err
        assert line in err and err.count("\n") == 1, err
    assert fault.main(["127.0.0.1:1", "--clear", "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "no simulated node answered at 127.0.0.1:1 within 0.3 s" in err and err.count("\n") == 1


def test_several_knobs_at_once_and_clear_first(node, capsys):
    assert fault.main([node.address, "--slow", "4", "--errors", "0.25", "--gpu-hot"]) == 0
    assert capsys.readouterr().out.strip().endswith("slowdown x4, errors 25%, GPU hot (simulated)")
    assert fault.main([node.address, "--clear", "--slow", "2"]) == 0  # clear first, then the new knob
    s = stats(node)
    assert (s["slowdown"], s["error_rate"], s["gpu_hot"]) == (2, 0, False)


def test_crash_loop_restarts_until_cleared(wheel_haproxy_bin):
    with DemoCluster(nodes=1, haproxy_bin=wheel_haproxy_bin, rtf=0.01, agent_interval="0.2s",
                     restart_crashed=True) as c:
        first = c.nodes[0].pid
        c.fault(0, crash_loop=0.6)
        assert (c.workdir / "faults" / "node-1.json").exists()  # kept for the next start
        seen = {first}
        deadline = time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:  # the agent sees a new pid again and again
            pid = httpx.get(c.nodes[0].agent_url + "/v1/status", timeout=5).json()["asr"]["pid"]
            if pid:
                seen.add(pid)
            time.sleep(0.1)
        assert len(seen) >= 3 and c.nodes[0].restarts >= 2
        assert c.fault(0, clear=True)["crash_loop"] is None  # retried until the node is up between crashes
        assert not (c.workdir / "faults" / "node-1.json").exists()
        settled = c.nodes[0].pid
        time.sleep(2.0)  # longer than a crash-loop life (0.6 s) plus the restart back-off (1 s)
        assert c.nodes[0].pid == settled and c.nodes[0].proc.poll() is None
