"""--probe http|tcp|ws against a real loopback service going down and coming back; --stream-port's open
streams (established connections, aged from first seen) against real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from support.wsnode import WsNode
from asrtop_agent.collectors.asr import AsrCollector
from asrtop_agent.collectors.probe import make_probe, parse_probe
from asrtop_agent.collectors.sockets import SockDiag
from asrtop_agent.collectors.streams import ConnectionStreams

from test_agent_asr import FakePsutil


@pytest.mark.parametrize("kind, target", [("http", "http://127.0.0.1:{port}/health"),
                                          ("tcp", "127.0.0.1:{port}"), ("ws", "ws://127.0.0.1:{port}/")])
async def test_each_probe_sees_the_service_go_down_and_come_back(kind, target):
    node = await WsNode().start()
    probe = make_probe(kind, None, node.http_url, timeout=1.0)
    try:
        assert (probe.kind, probe.target) == (kind, target.format(port=node.port))
        up, latency, error = await probe.check()
        assert up is True and latency > 0 and error is None
        await node.stop()
        up, latency, error = await probe.check()
        assert up is False and latency is None and probe.target in error and kind in error
        await node.start()
        assert (await probe.check())[0] is True
    finally:
        await probe.close()
        await node.stop()
    if kind == "ws":
        assert node.open == 0 and len(node.protocols) == 2  # two handshakes, each closed at once, no stream left


async def test_a_ws_probe_on_a_plain_http_port_is_down_with_the_status():
    node = await WsNode().start()
    probe = make_probe("ws", "/health", node.http_url, timeout=1.0)
    try:
        up, latency, error = await probe.check()
    finally:
        await probe.close()
        await node.stop()
    assert up is False and latency is not None and "answered HTTP 200 (no WebSocket)" in error


def test_probe_specs_parse_or_say_why_in_one_line():
    assert parse_probe("http") == ("http", None) and parse_probe("http:/healthz") == ("http", "/healthz")
    assert parse_probe("tcp") == ("tcp", None) and parse_probe("ws:/asr") == ("ws", "/asr")
    for bad, why in [("grpc", "use http[:PATH], tcp or ws[:PATH]"), ("tcp:/x", "tcp takes no path"),
                     ("ws:asr", "the path starts with /")]:
        with pytest.raises(ValueError, match=".*") as err:
            parse_probe(bad)
        assert why in str(err.value) and "\n" not in str(err.value)
    assert make_probe("http", None, "http://h:1", health_path="/ready").target == "http://h:1/ready"
    assert make_probe("ws", None, "http://h:1", stream_port=10095).target == "ws://h:10095/"


async def test_connection_streams_follow_real_clients_within_one_interval():
    """Streams of 1-3 s started 0.4 s apart, scanned every 0.25 s: each scan's open count is the clients'
    (exact between transitions) and the oldest age lags the client's by at most one interval."""
    interval = 0.25
    node = await WsNode().start()
    tracker = ConnectionStreams(node.port, SockDiag())
    started: dict[int, float] = {}
    ended: set[int] = set()
    in_transition: set[int] = set()

    async def stream(i: int, seconds: float, s: aiohttp.ClientSession):
        await asyncio.sleep(0.4 * i)
        in_transition.add(i)
        ws = await s.ws_connect(node.url, protocols=("binary",))
        started[i] = time.monotonic()
        in_transition.discard(i)
        await ws.send_str(json.dumps({"mode": "online", "wav_format": "pcm"}))
        while time.monotonic() - started[i] < seconds:
            await ws.send_bytes(bytes(1920))
            await ws.receive()
            await asyncio.sleep(0.06)
        in_transition.add(i)
        await ws.close()
        await asyncio.sleep(0.02)  # the service's side closes its socket a moment after the close handshake
        ended.add(i)
        in_transition.discard(i)

    async def scanner():
        judged = 0
        for _ in range(14):
            await asyncio.sleep(interval)
            if in_transition:
                continue
            snap = tracker.collect()
            now = time.monotonic()
            live = [now - t for i, t in started.items() if i not in ended]
            assert snap.open == len(live)
            if live:
                assert 0 <= max(live) - snap.oldest_seconds <= interval + 0.05
            judged += 1
        return judged

    try:
        async with aiohttp.ClientSession() as s:
            judged, *_ = await asyncio.gather(scanner(), *(stream(i, t, s) for i, t in enumerate((3.0, 1.0, 2.0))))
    finally:
        await node.stop()
    assert judged >= 10
    final = tracker.collect()
    assert (final.open, final.opened_total, final.closed_total) == (0, 3, 3)


async def test_the_collector_reports_streams_and_probe_and_its_ws_probe_is_no_stream():
    node = await WsNode().start()
    col = AsrCollector(node.http_url, psutil_mod=FakePsutil, connections=SockDiag(), stream_port=node.port,
                       probe=make_probe("ws", None, node.http_url, stream_port=node.port, timeout=1.0))
    try:
        for _ in range(4):
            snap = await col.collect()
        async with aiohttp.ClientSession() as s, s.ws_connect(node.url) as ws:
            await ws.send_str(json.dumps({"mode": "offline"}))
            live = await col.collect()
    finally:
        await col.close()
        await node.stop()
    assert (snap.probe_kind, snap.probe_target, snap.up) == ("ws", node.url + "/", True)
    assert snap.streams.source == "connections" and snap.streams.opened_total == 0  # 4 probes, no stream
    assert live.streams.open == 1 and live.streams.opened_total == 1 and live.streams.oldest_seconds < 0.5


def test_flags_parse_and_a_bad_one_is_one_line(capsys):
    from asrtop_agent.__main__ import main, parse_args

    opts = parse_args(["--asr-url", "http://127.0.0.1:7860", "--probe", "ws:/asr", "--stream-port", "10095",
                       "--proxy-ws", "127.0.0.1:10096"])
    assert (opts.probe, opts.stream_port, opts.proxy_ws) == (("ws", "/asr"), 10095, ("127.0.0.1", 10096))
    assert opts.stream_url == "ws://127.0.0.1:10095"
    plain = parse_args(["--asr-url", "http://127.0.0.1:7860", "--health-path", "/ready"])
    assert (plain.probe, plain.health_path, plain.stream_port, plain.proxy_ws) == (("http", None), "/ready", None, None)
    assert plain.stream_url == "ws://127.0.0.1:7860"
    for bad in (["--probe", "grpc"], ["--stream-port", "70000"]):
        assert main(["--asr-url", "http://127.0.0.1:7860", *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("asrtop-agent: error: argument")
