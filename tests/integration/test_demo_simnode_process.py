"""The simnode as a real process: CLI, crash knob, port in use, model dir on disk."""

from __future__ import annotations

import subprocess
import sys

import httpx

from support.netutil import free_port, wait_for_port


def start(port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "asrtop.demo.simnode", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_crash_knob_kills_the_process_and_port_in_use_is_one_line(tmp_path):
    port = free_port()
    p = start(port, "--name", "n9", "--model-dir", str(tmp_path / "m"))
    try:
        assert wait_for_port("127.0.0.1", port, timeout=20)
        assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["config.yaml", "model.pt", "tokens.json"]
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["node"] == "n9"
        second = subprocess.run([sys.executable, "-m", "asrtop.demo.simnode", "--port", str(port)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert second.stderr.strip() == f"simnode: cannot listen on 127.0.0.1:{port}: port in use"
        r = httpx.post(f"http://127.0.0.1:{port}/_sim/fault", json={"crash": True})
        assert r.json()["crashing"] is True and r.json()["pid"] == p.pid
        assert p.wait(10) == 70
    finally:
        p.kill()
        p.wait()


def test_sigterm_stops_quietly():
    port = free_port()
    p = start(port)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=20)
        p.terminate()
        assert p.wait(10) == 0
        assert "Traceback" not in p.stderr.read()
    finally:
        p.kill()
        p.wait()
