"""Drains under streaming load, end to end on 127.0.0.1: the demo's real HAProxy (HTTP and WebSocket backends,
two [[balancers]] entries), simulated FunASR nodes serving WebSocket streams, agents with --stream-port, and
the streaming load generator; `asrtop drain` runs as the operator runs it (a process reading the cluster file).

- drain --wait: no stream that started before the drain is cut, every stream gets its final result, new
  streams go to the other nodes, the wait shows live streams and the oldest one's age, and ends only when the
  last stream on the node has ended;
- --cutoff: exactly the number of streams it announces is cut (the load counts them as cut by the
  server/balancer), and the cut is in the audit log.
Streams of a few seconds; the shared demo cluster is left as found (the node is readied again)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request

from asrtop.demo.haproxycfg import WS_BACKEND


def _until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _start(gen):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("report", gen.run()), daemon=True)
    t.start()
    return t, out


def _asrtop(cluster, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "asrtop.cli", "--config", str(cluster.config_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _streams(cluster, name) -> dict:
    i = next(i for i, n in enumerate(cluster.nodes) if n.name == name)
    return cluster.node_stats(i)["streams"]


def _busiest(cluster) -> tuple[str, int]:
    """The node with the most streams open through HAProxy's WebSocket backend now, and how many."""
    scur = {name: int(r["scur"]) for name, r in cluster.server_states(WS_BACKEND).items()}
    server = max(sorted(scur), key=lambda s: scur[s])
    node = next(n.name for n in cluster.nodes if n.name == server or getattr(n, "server", None) == server)
    return node, scur[server]


def _agent_streams(cluster, name) -> int:
    """Live streams the node's agent reports now (it sees a new connection within its 1 s interval)."""
    url = next(n.agent_url for n in cluster.nodes if n.name == name)
    with urllib.request.urlopen(url + "/v1/status", timeout=2) as r:
        return ((json.loads(r.read()).get("asr") or {}).get("streams") or {}).get("open") or 0


def _ready(cluster, node):
    p = _asrtop(cluster, "ready", node, "--force")  # as found: the demo's odd-model node passes the model guard
    assert p.wait(30) == 0, p.stderr.read()


def test_drain_wait_follows_live_streams_to_the_last_one_and_cuts_none(demo_cluster, tmp_path):
    from asrtop.demo.load import LoadGenerator

    gen = LoadGenerator(demo_cluster.url, 0, ws_url=demo_cluster.ws_url, streams=4, stream_count=7,
                        stream_mix="100:2s", stream_modes="50:online,50:2pass", audio_dir=tmp_path)
    thread, out = _start(gen)
    _until(lambda: gen.stream_counts.snapshot().open == 4, what="4 live streams")
    _until(lambda: _busiest(demo_cluster)[1] >= 1, what="a stream through HAProxy")
    victim, _ = _busiest(demo_cluster)
    _until(lambda: _agent_streams(demo_cluster, victim) >= 1, what="the agent to see the stream")
    before = _streams(demo_cluster, victim)
    drain = _asrtop(demo_cluster, "drain", victim, "--wait", "--timeout", "30")
    try:
        first = drain.stdout.readline()
        assert first.startswith(f"drain {victim}: done on haproxy, haproxy-ws"), first
        time.sleep(0.1)  # a handshake HAProxy routed just before the drain reaches the node now
        at_drain = _streams(demo_cluster, victim)
        rest, err = drain.communicate(timeout=30)
        assert drain.returncode == 0, err
        open_at_end = _streams(demo_cluster, victim)["open"]
        lines = rest.splitlines()
        waiting = [x for x in lines if x.startswith(f"{victim}: ") and "live stream" in x]
        assert any("(oldest " in x for x in waiting), lines  # live streams and the oldest one's age
        assert any(" 0 live streams" in x or ": 0 live streams" in x for x in waiting), lines
        assert lines[-1] == f"{victim} is empty: safe to upgrade"
        assert open_at_end == 0  # it ended only once the last stream had ended
        thread.join(30)
        s = out["report"].streams
        # every stream, on the drained node too, ran to its end and got its final result: none was cut
        assert (s.started, s.finished, s.cut_by_server, s.no_final, s.refused) == (7, 7, 0, 0, 0), s.line()
        after = _streams(demo_cluster, victim)
        assert after["closed_by_server"] == before["closed_by_server"]
        assert after["opened"] == at_drain["opened"]  # streams started after the drain went elsewhere
    finally:
        if drain.poll() is None:
            drain.kill()
        _ready(demo_cluster, victim)


def test_cutoff_cuts_exactly_the_streams_it_announces_and_audits_the_cut(demo_cluster, tmp_path):
    from asrtop.demo.load import LoadGenerator

    # Streams long enough to be open still at the cut, whatever the box's pace: the waits below, the agent's 1 s
    # interval, asrtop's start and the 1 s cutoff come before it. With 4 s streams, one full-suite run here had all
    # 4 finish with every result and none cut, after asrtop announced 2 (the agent's count, up to 1 s old): they
    # had ended before the cut. Not reproduced alone, nor beside two busy cores (3 runs each).
    gen = LoadGenerator(demo_cluster.url, 0, ws_url=demo_cluster.ws_url, streams=4, stream_count=4,
                        stream_mix="100:10s", stream_modes="100:online", audio_dir=tmp_path)
    thread, out = _start(gen)
    _until(lambda: gen.stream_counts.snapshot().open == 4, what="4 live streams")
    _until(lambda: sum(int(r["scur"]) for r in demo_cluster.server_states(WS_BACKEND).values()) == 4,
           what="4 streams through HAProxy")
    victim, carried = _busiest(demo_cluster)
    _until(lambda: _agent_streams(demo_cluster, victim) == carried, what="the agent to see the streams")
    drain = _asrtop(demo_cluster, "drain", victim, "--cutoff", "1", "--yes", "--timeout", "20")
    try:
        text, err = drain.communicate(timeout=30)
        assert drain.returncode == 0, err
        # the confirmation's lines, then the announcement before anything is cut
        assert f"streams still open after 1 s will be cut ({carried} open now)" in text, text
        said = re.search(rf"^cutting (\d+) streams? still open on {victim} after 1 s", text, re.M)
        assert said, text
        announced = int(said.group(1))
        assert announced == carried
        assert f"cut {announced} stream" in text and text.rstrip().endswith(f"{victim} is empty: safe to upgrade")
        thread.join(30)
        s = out["report"].streams
        assert s.cut_by_server == announced, s.line()  # exactly the announced streams, reported as cut
        assert (s.finished, s.no_final) == (4 - announced, 0), s.line()
        audit = [json.loads(x) for x in (demo_cluster.workdir / "audit.jsonl").read_text().splitlines()]
        cut = [r for r in audit if r["action"] == "cut" and r["node"] == victim][-1]
        assert cut["streams"] == announced and cut["outcome"] == "done"
        assert [b["name"] for b in cut["balancers"]] == ["haproxy", "haproxy-ws"]
    finally:
        if drain.poll() is None:
            drain.kill()
        _ready(demo_cluster, victim)
