"""The agent's WebSocket proxy (--proxy-ws) on loopback between real aiohttp clients and a FunASR-style
service: results and close codes pass through, streams / frames / audio are counted exactly."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from support.netutil import free_port
from support.wsnode import WsNode
from asrtop_agent.collectors.streams import ProxyStreams
from asrtop_agent.proxy_ws import WsProxy


@pytest.fixture
async def node():
    n = await WsNode().start()
    yield n
    await n.stop()


@pytest.fixture
async def proxy(node):
    counts = ProxyStreams()
    p = WsProxy(node.url, counts)
    runner = web.AppRunner(p.app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    p.url, p.counts = f"ws://127.0.0.1:{port}", counts
    yield p
    await runner.cleanup()
    await p.close()


FIRST = {"mode": "online", "wav_name": "call-1", "wav_format": "pcm", "chunk_size": [5, 10, 5], "audio_fs": 8000,
         "hotwords": "", "itn": True, "is_speaking": True}


async def test_results_and_close_codes_pass_through_and_are_counted_exactly(node, proxy):
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(proxy.url + "/asr?x=1", protocols=("binary",))
        assert ws.protocol == "binary" and node.protocols == ["binary"]  # the subprotocol went both ways
        await ws.send_str(json.dumps(FIRST))
        partials = []
        for _ in range(3):
            await ws.send_bytes(b"\x01\x00" * 800)  # 1600 bytes = 0.1 s at 8 kHz
            partials.append(json.loads((await ws.receive()).data))
        await ws.send_str(json.dumps({"is_speaking": False}))
        final = json.loads((await ws.receive()).data)
        assert [p["text"] for p in partials] == ["chunk 1", "chunk 2", "chunk 3"] and final["is_final"] is True
        assert node.first_messages == [FIRST]
        await ws.close(code=4001, message=b"caller hung up")
        assert node.client_closes == [(4001, "caller hung up")]  # the client's code and reason reached the node

        ws = await s.ws_connect(proxy.url, protocols=("binary",))
        await ws.send_str(json.dumps({"mode": "offline", "wav_format": "pcm"}))  # audio_fs 16000 by default
        await ws.send_bytes(bytes(3200))
        await ws.receive()
        assert proxy.counts.snapshot().open == 1
        await ws.send_str(json.dumps({"close": 4002, "reason": "slot reclaimed"}))
        closing = await ws.receive()
        assert (closing.type, closing.data, closing.extra) == (WSMsgType.CLOSE, 4002, "slot reclaimed")
    snap = await _settled(proxy.counts)
    assert (snap.open, snap.opened_total, snap.closed_total) == (0, 2, 2)
    assert snap.frames_total == (1 + 3 + 3 + 1 + 1) + (1 + 1 + 1 + 1)  # data frames both ways, both streams
    assert snap.audio_seconds_total == pytest.approx(3 * 1600 / 2 / 8000 + 3200 / 2 / 16000)


async def _settled(counts, open_=0):
    for _ in range(100):  # the proxy's handler finishes just after the client saw the close
        snap = counts.snapshot()
        if snap.open == open_:
            return snap
        await asyncio.sleep(0.01)
    return snap


async def test_plain_http_gets_426_a_dead_service_502_and_a_vanished_one_1014(node, proxy):
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url.replace("ws://", "http://")) as r:
            assert r.status == 426 and "WebSocket only" in await r.text()
        ws = await s.ws_connect(proxy.url)
        await ws.send_str(json.dumps({"vanish": True}))
        gone = await ws.receive()
        assert (gone.type, gone.data) == (WSMsgType.CLOSE, aiohttp.WSCloseCode.BAD_GATEWAY)
        await node.stop()
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(proxy.url)
        assert err.value.status == 502
    snap = await _settled(proxy.counts)
    assert (snap.opened_total, snap.closed_total) == (1, 1)  # the refused stream never opened


async def test_stream_counts_and_ages_match_the_clients_at_every_sample(proxy):
    """Streams of 1-3 s, started 0.5 s apart: at each sample the proxy's open count is the clients' own and
    the oldest age matches (within the time a handshake takes); audio seconds are the bytes sent."""
    started: dict[int, float] = {}
    ended: set[int] = set()
    in_transition: set[int] = set()  # handshaking or closing: the client's bookkeeping lags the proxy's
    sent = [0]

    async def stream(i: int, seconds: float, s: aiohttp.ClientSession):
        await asyncio.sleep(0.5 * i)
        in_transition.add(i)
        ws = await s.ws_connect(proxy.url, protocols=("binary",))
        started[i] = time.monotonic()
        in_transition.discard(i)
        await ws.send_str(json.dumps({**FIRST, "audio_fs": 16000}))
        while time.monotonic() - started[i] < seconds:
            await ws.send_bytes(bytes(1920))  # 60 ms of 16 kHz PCM16, paced like a microphone
            sent[0] += 1920
            await ws.receive()
            await asyncio.sleep(0.06)
        in_transition.add(i)
        await ws.close()
        ended.add(i)
        in_transition.discard(i)

    async def sampler():
        judged = 0
        for _ in range(12):
            await asyncio.sleep(0.25)
            if in_transition:
                continue
            now = time.monotonic()
            snap = proxy.counts.snapshot()
            live = [now - t for i, t in started.items() if i not in ended]
            assert snap.open == len(live) and snap.ages[-1] == (None, len(live))
            if live:
                # the proxy sees a stream from its upstream handshake, the client from ws_connect's return: on a
                # loaded machine that gap has measured over 50 ms; streams start 0.5 s apart, so 0.2 s still
                # tells which stream is the oldest
                assert abs(snap.oldest_seconds - max(live)) < 0.2
            judged += 1
        return judged

    async with aiohttp.ClientSession() as s:
        judged, *_ = await asyncio.gather(sampler(), *(stream(i, secs, s) for i, secs in enumerate((3.0, 1.0, 2.0))))
    assert judged >= 6  # samples taken while no client was mid-handshake or mid-close
    snap = await _settled(proxy.counts)
    assert (snap.opened_total, snap.closed_total) == (3, 3)
    assert snap.audio_seconds_total == pytest.approx(sent[0] / 2 / 16000)


async def test_stopping_the_proxy_ends_open_streams_with_1001_on_both_sides_at_once(node):
    p = WsProxy(node.url, ProxyStreams())
    runner = web.AppRunner(p.app(), access_log=None)  # aiohttp's default shutdown timeout: 60 s
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"ws://127.0.0.1:{port}/")
        await ws.send_str(json.dumps(FIRST))
        t0 = time.monotonic()
        stopping = asyncio.create_task(runner.cleanup())
        msg = await ws.receive()
        await stopping
        assert time.monotonic() - t0 < 2
    await p.close()
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "asrtop-agent stopping")
    assert node.client_closes == [(1001, "asrtop-agent stopping")] and p.streams.snapshot().open == 0


def test_audio_scale_and_close_codes_that_may_go_on_the_wire():
    from asrtop_agent.proxy_ws import audio_scale, wire_code

    assert audio_scale(json.dumps(FIRST)) == 1 / 16000 and audio_scale(b'{"mode": "online"}') == 1 / 32000
    assert audio_scale(b'{"wav_format": "mp3"}') is None and audio_scale(b"not json") is None
    assert audio_scale(b'{"audio_fs": "fast"}') == 1 / 32000  # a nonsense rate: FunASR's default
    assert [wire_code(c) for c in (0, 1005, 1006, 1015, 1002, 4001)] == [1000, 1000, 1000, 1000, 1002, 4001]
