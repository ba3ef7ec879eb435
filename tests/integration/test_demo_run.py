"""`asrtop demo` glue: the status fallback when the console is missing, and headless output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asrtop.demo import run as demo_run

ROOT = Path(__file__).resolve().parents[2]


def test_console_fallback_prints_status_every_second(demo_cluster, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "asrtop.tui.run", None)  # the console is not installed
    ticks = []

    def fake_sleep(s):
        ticks.append(s)
        if len(ticks) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(demo_run.time, "sleep", fake_sleep)
    with pytest.raises(KeyboardInterrupt):
        demo_run._console(demo_cluster)
    out = capsys.readouterr().out
    assert ticks == [1.0, 1.0] and out.count("(Ctrl+C stops the demo)") == 2
    for n in demo_cluster.nodes:
        assert n.name in out


def test_headless_prints_load_report_and_node_counts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asrtop.cli", "demo", "--headless", "--nodes", "2", "--load", "3",
                        "--streams", "2", "--stream-mix", "100:1s", "--duration", "2"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "starting 2 nodes..." in r.stderr and "ready in" in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("load: ") and ", failures none" in lines[0]
    sent = int(lines[0].split()[1])
    rows = {ln.split()[0]: ln.split() for ln in lines if ln.startswith("node-")}
    assert set(rows) == {"node-1", "node-2"}
    assert rows["node-1"][1] == "UP" and "(backup)" in " ".join(rows["node-2"])
    assert sum(int(v[2]) for v in rows.values()) == sent  # every request reached exactly one node
    # the streams through HAProxy's WebSocket frontend: 1 s each, so some finished within the 2 s run
    streams = [ln for ln in lines if ln.startswith("streams: ")]
    assert len(streams) == 1, r.stdout
    started, finished = int(streams[0].split()[1]), int(streams[0].split()[3])
    assert started >= 2 and finished >= 2, streams[0]
    assert "0 by the server/balancer" in streams[0] and streams[0].endswith(
        "every stream that ended on its own got its final result"), streams[0]
    assert sum(int(v[4]) for v in rows.values()) == started  # every stream reached exactly one node


# The demo's stop-signal handler, hit while Python runs exec'd string code (what dataclass/namedtuple creation
# in a lazy import does; asrtop.demo.run imports the load generator right after the cluster is up). Run as
# `python -m`, like the console script's module, because that is the path where CPython turns a bare
# KeyboardInterrupt out of exec'd code into a self-kill with SIGINT.
SIGNAL_IN_EXEC = """
import signal, sys
from asrtop.demo.run import on_stop_signal
signal.signal(signal.SIGTERM, on_stop_signal)
try:
    exec("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    print("no signal handled", file=sys.stderr)
except KeyboardInterrupt:
    print("stopped", file=sys.stderr)
sys.exit(130)
"""


def test_stop_signal_during_exec_code_still_exits_130(tmp_path):
    (tmp_path / "signal_in_exec.py").write_text(SIGNAL_IN_EXEC)
    r = subprocess.run([sys.executable, "-m", "signal_in_exec"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert r.stderr.strip() == "stopped" and r.returncode == 130, (r.returncode, r.stderr)


def test_sigterm_during_headless_prints_the_report_then_130(demo_cluster, capsys, tmp_path):
    """SIGTERM (a real one, through the demo's own handler) ends a headless run with the load report and the
    node table, as a normal end does, without waiting for the requests still in flight."""
    import signal
    import threading

    # 1 s clips: the requests cut by the signal end soon after it
    loader = demo_run.LoadThread(demo_cluster.url, 2, 60, clip_seconds=(1,), audio_dir=tmp_path).start()
    before = signal.signal(signal.SIGTERM, demo_run.on_stop_signal)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = demo_run.run_headless(demo_cluster, loader, 60)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, before)
        loader.thread.join(30)  # the cut requests finish on their own; leave the shared cluster idle
    out, err = capsys.readouterr()
    assert code == 130
    assert "stopped by a signal" in err
    lines = out.splitlines()
    assert lines[0].startswith("load: ") and "at concurrency 2" in lines[0]
    assert {ln.split()[0] for ln in lines if ln.startswith("node-")} == {n.name for n in demo_cluster.nodes}


def test_the_demo_keeps_a_drain_across_a_reload(demo_cluster):
    """The demo's HAProxy loads a server-state-file, so the demo shows what a well-set balancer says (no "drain
    is lost on a reload" on every action) and asrtop keeps that file current."""
    from support.control_cluster import run_cli

    cfg = (demo_cluster.workdir / "haproxy.cfg").read_text()
    assert f"server-state-file {demo_cluster.workdir / 'server-state'}" in cfg
    p = run_cli(demo_cluster.config_path, "drain", "node-1", "--dry-run")
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert "drain survives a reload (server-state-file" in out and "is lost on a reload" not in out, out
