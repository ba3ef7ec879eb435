"""Streaming load through the demo's real HAProxy WebSocket frontend to real simulated nodes: the counts."""

from __future__ import annotations

import threading
import time

import pytest

from asrtop.demo.haproxycfg import WS_BACKEND, admin_command


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """One clip cache for the module (the clip is made once)."""
    return tmp_path_factory.mktemp("audio")


def _run_in_thread(gen):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("report", gen.run()), daemon=True)
    t.start()
    return t, out


def _until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _streams_opened(cluster) -> int:
    return sum(cluster.node_stats(i)["streams"]["opened"] for i in range(len(cluster.nodes)))


def test_streams_finish_and_a_balancer_cut_is_counted_as_cut_by_the_server(demo_cluster, audio):
    from asrtop.demo.load import LoadGenerator

    before = _streams_opened(demo_cluster)
    gen = LoadGenerator(demo_cluster.url, 0, ws_url=demo_cluster.ws_url, streams=3, stream_count=3,
                        stream_mix="100:2s", stream_modes="34:2pass,33:online,33:offline", audio_dir=audio)
    thread, out = _run_in_thread(gen)
    _until(lambda: gen.stream_counts.snapshot().open == 3)
    live = gen.stream_counts.snapshot()  # the counts, live, while the streams run
    assert (live.started, live.open, live.finished, live.cut_by_server) == (3, 3, 0, 0)
    _until(lambda: sum(int(r["scur"]) for r in demo_cluster.server_states(WS_BACKEND).values()) == 3)
    busy = {name: int(r["scur"]) for name, r in demo_cluster.server_states(WS_BACKEND).items() if int(r["scur"])}
    victim = sorted(busy)[0]
    admin_command(demo_cluster.admin_socket, f"shutdown sessions server {WS_BACKEND}/{victim}")
    thread.join(30)
    streams = out["report"].streams
    cut = busy[victim]
    assert (streams.started, streams.open, streams.finished, streams.cut_by_server, streams.cut_by_stop,
            streams.no_final, streams.refused) == (3, 0, 3 - cut, cut, 0, 0, 0)
    assert streams.ended_without_final == cut and streams.reasons == {"connection closed (no close frame)": cut}
    finished = [r for r in out["report"].stream_records if r.outcome == "finished"]
    # every finished stream got its results: online/2pass partials (one per 600 ms chunk of its 2 s) and the
    # final; offline, the one final transcript
    assert all(r.results >= (1 if r.mode == "offline" else 4) for r in finished), finished
    assert streams.results >= sum(r.results for r in finished)
    assert len(finished) == 3 - cut and all(r.final_delay is not None and r.audio_sent == 2.0 for r in finished)
    assert f"{cut} stream(s) ended without their final result" in streams.line()
    assert _streams_opened(demo_cluster) - before == 3  # each started stream reached exactly one node


def test_streams_open_past_the_grace_are_cut_by_the_load_itself(demo_cluster, audio):
    from asrtop.demo.load import LoadGenerator

    gen = LoadGenerator(demo_cluster.url, 0, ws_url=demo_cluster.ws_url, streams=2, duration=0.3,
                        stream_grace=0.5, stream_mix="100:30s", audio_dir=audio)
    t0 = time.monotonic()
    report = gen.run()
    assert time.monotonic() - t0 < 5
    s = report.streams
    assert (s.started, s.open, s.finished, s.cut_by_stop, s.cut_by_server, s.ended_without_final) == (2, 0, 0, 2, 0, 0)
    assert "2 cut (0 by the server/balancer, 2 by the load's stop)" in s.line()
    assert "every stream that ended on its own got its final result" in s.line()
    _until(lambda: sum(demo_cluster.node_stats(i)["streams"]["open"] for i in range(4)) == 0)


def test_a_drain_reaches_both_backends_and_agents_watch_the_stream_port(demo_cluster):
    """The cluster file's second balancer (haproxy-ws) names the streams' backend: one drain, both backends;
    each agent was started with the node's WebSocket port as its stream port."""
    import json
    import urllib.request

    from asrtop.demo.haproxycfg import BACKEND
    from support.control_cluster import run_cli

    def status(name):
        return {b: demo_cluster.server_states(b)[name]["status"] for b in (BACKEND, WS_BACKEND)}

    node = demo_cluster.nodes[2]
    drained = run_cli(demo_cluster.config_path, "drain", node.name)
    try:
        assert drained.returncode == 0, drained.stderr
        assert f"drain {node.name}: done on haproxy, haproxy-ws" in drained.stdout + drained.stderr
        assert status(node.name) == {BACKEND: "DRAIN", WS_BACKEND: "DRAIN"}
    finally:
        ready = run_cli(demo_cluster.config_path, "ready", node.name)
    assert ready.returncode == 0, ready.stderr
    assert status(node.name) == {BACKEND: "UP", WS_BACKEND: "UP"}
    for n in demo_cluster.nodes:
        with urllib.request.urlopen(n.agent_url + "/v1/status", timeout=5) as r:
            streams = json.loads(r.read())["asr"].get("streams")
        assert streams is not None and streams["source"] == "connections", (n.name, streams)
