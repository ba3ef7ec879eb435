"""The simulated node's FunASR WebSocket protocol, in process (aiohttp test servers on 127.0.0.1), driven by
the client written from FunASR's protocol document (tests/support/funasr_ws_client.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from array import array

import aiohttp
import httpx
import pytest
from aiohttp.test_utils import TestServer

from asrtop.demo.audio import speech_like_wav
from asrtop.demo.simnode import NodeSettings, SimNode
from asrtop.demo.simws import stream_app
from support.funasr_ws_client import first_message, raw_exchange, stream_session, wav_to_pcm


def tone_and_silence(pattern: list[tuple[float, bool]], rate: int = 16000) -> bytes:
    """PCM16: a square tone where voiced, digital silence elsewhere."""
    out = array("h")
    for seconds, voiced in pattern:
        out.extend((8000 if (i // 20) % 2 else -8000) if voiced else 0 for i in range(int(seconds * rate)))
    return out.tobytes()


class Node:
    def __init__(self, **settings) -> None:
        self.node = SimNode(NodeSettings(**settings))

    async def __aenter__(self) -> "Node":
        self.ws_server = TestServer(stream_app(self.node), host="127.0.0.1")
        self.http_server = TestServer(self.node.app(), host="127.0.0.1")
        await self.ws_server.start_server()
        await self.http_server.start_server()
        self.url = str(self.ws_server.make_url("/"))
        self.http = httpx.AsyncClient(base_url=str(self.http_server.make_url("")), timeout=30)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()
        await self.ws_server.close()
        await self.http_server.close()

    async def streams(self) -> dict:
        return (await self.http.get("/_sim/stats")).json()["streams"]


async def test_offline_online_2pass_sessions_complete_and_offline_matches_http():
    wav = speech_like_wav(2.0, seed=3)
    pcm, _ = wav_to_pcm(wav)
    async with Node(rtf=0.01) as n:
        off, on, two = await asyncio.gather(*(stream_session(n.url, pcm, m, wav_name=m, realtime=False,
                                                             hotwords='{"阿里巴巴": 20}') for m in ("offline", "online", "2pass")))
        http_text = (await n.http.post("/asr", files={"file": ("a.wav", wav)})).json()["text"]
        streams = await n.streams()
    # offline: one result, final, the node's transcript of the whole audio (as POST /asr answers it)
    assert [(r["mode"], r["is_final"], r["wav_name"]) for r in off.results] == [("offline", True, "offline")]
    assert off.final["text"] == http_text and http_text.startswith("[segment 1:")
    assert json.loads(off.final["timestamp"])[0][0] >= 0
    # online: one partial per 600 ms chunk of audio, then the last part as the final result
    assert [r["mode"] for r in on.results] == ["online"] * 4 and [r["is_final"] for r in on.results] == [False] * 3 + [True]
    assert [json.loads(r["timestamp"]) for r in on.results] == [[[0, 600]], [[600, 1200]], [[1200, 1800]], [[1800, 2000]]]
    # 2pass: the same partials as 2pass-online, corrections as 2pass-offline, exactly one final
    assert len(two.of_mode("2pass-online")) == 4 and two.of_mode("2pass-offline")
    assert [r for r in two.results if r["is_final"]] == [two.results[-1]] and two.final["mode"] == "2pass-offline"
    assert on.close_code is off.close_code is two.close_code is None  # the client closed, after the final
    assert streams == {"open": 0, "opened": 3, "closed_normal": 3, "closed_by_server": 0, "closed_by_client": 0,
                       "protocol_errors": 0, "refused": 0, "audio_seconds": 6.0}


async def test_2pass_corrections_at_segment_ends_and_audio_fs_scales_seconds():
    # 8 kHz: two voiced bursts with a 0.6 s pause (a VAD segment end) between them
    pcm = tone_and_silence([(0.8, True), (0.6, False), (0.8, True), (0.1, False)], rate=8000)
    async with Node(rtf=0.0) as n:
        out = await stream_session(n.url, pcm, "2pass", audio_fs=8000, chunk_size=(5, 5, 5), realtime=False)
        streams = await n.streams()
    corrections = out.of_mode("2pass-offline")
    assert [(r["text"], r["is_final"], json.loads(r["timestamp"])) for r in corrections] == [
        ("[segment 1: 0.80 s]", False, [[0, 800]]), ("[segment 2: 0.80 s]", True, [[1400, 2200]])]
    assert [json.loads(r["timestamp"])[0] for r in out.of_mode("2pass-online")] == [
        [0, 300], [300, 600], [600, 900], [900, 1200], [1200, 1500], [1500, 1800], [1800, 2100], [2100, 2300]]
    assert streams["audio_seconds"] == 2.3  # 18,400 samples at 8 kHz, not at 16 kHz


async def test_online_partials_paced_in_real_time_and_slowdown_makes_them_late():
    pcm = tone_and_silence([(0.96, True)])
    async with Node(rtf=0.1) as n:
        normal = await stream_session(n.url, pcm, "online", chunk_size=(5, 4, 5), realtime=True)  # 240 ms chunks
        n.node.settings.slowdown = 4.0  # the fault knob: 0.4 x real time per chunk
        slow = await stream_session(n.url, pcm, "online", chunk_size=(5, 4, 5), realtime=True)
    late, later = normal.lateness(), slow.lateness()
    assert len(late) == 4 and all(0.02 <= x < 0.24 for x in late)  # 24 ms of work, well within a chunk
    assert len(later) == 4 and all(x >= 0.09 for x in later)  # 96 ms of work per chunk


async def test_protocol_errors_get_a_line_and_a_close_code_while_another_stream_goes_on():
    pcm = tone_and_silence([(0.9, True)])
    ok = first_message("2pass", "bad")
    async with Node(rtf=0.0, slots=8) as n:
        good = asyncio.create_task(stream_session(n.url, pcm, "2pass", wav_name="good", chunk_size=(5, 5, 5)))
        await asyncio.sleep(0.2)
        cases = [([b"\x00\x01"], 1002, "binary audio before the JSON first message"),
                 (["{nope"], 1002, "not JSON: '{nope'"),
                 ([json.dumps({**ok, "mode": "3pass"})], 1003, "unknown mode '3pass': use offline, online or 2pass"),
                 ([json.dumps({"mode": "online"})], 1002,
                  "first message lacks wav_name, is_speaking (needs mode, wav_name, is_speaking: true)"),
                 ([json.dumps({**ok, "wav_format": "mp3"})], 1003,
                  "wav_format 'mp3' is not supported: send 16-bit PCM (wav_format pcm)"),
                 ([json.dumps(ok), b"\x00" * 640, "[1, 2"], 1002, "not JSON: '[1, 2'")]
        outs = await asyncio.gather(*(raw_exchange(n.url, msgs) for msgs, _, _ in cases))
        assert not good.done()
        g = await good
        streams = await n.streams()
    assert [(o.close_code, o.error) for o in outs] == [(code, line) for _, code, line in cases]
    assert g.final is not None and g.final["wav_name"] == "good" and len(g.of_mode("2pass-online")) == 3
    assert streams["protocol_errors"] == 6 and streams["closed_by_server"] == 6 and streams["closed_normal"] == 1


async def test_a_stream_holds_a_slot_for_its_life_and_a_full_node_refuses_the_handshake():
    pcm = tone_and_silence([(0.6, True)])
    async with Node(rtf=0.0, slots=2, queue=0) as n:
        async with aiohttp.ClientSession() as s:
            a, b = await s.ws_connect(n.url), await s.ws_connect(n.url)
            stats = (await n.http.get("/_sim/stats")).json()
            refused = await stream_session(n.url, pcm, "online", session=s)
            http = await n.http.post("/asr", files={"file": ("a.wav", speech_like_wav(0.5))})
            await a.close()
            after = await stream_session(n.url, pcm, "offline", realtime=False, session=s)
            await b.close()
        streams = await n.streams()
    assert stats["in_flight"] == 2 and stats["streams"]["open"] == 2
    assert refused.handshake_status == 503 and http.status_code == 503  # no slot, and no queue for HTTP
    assert after.final is not None
    assert streams == {"open": 0, "opened": 3, "closed_normal": 3, "closed_by_server": 0, "closed_by_client": 0,
                       "protocol_errors": 0, "refused": 1, "audio_seconds": 0.6}


async def _abrupt(url: str, messages: list[tuple[int, bytes]]) -> None:
    """Handshake, send frames, then drop the TCP connection without a close frame (a balancer's cut)."""
    host, port = url.split("//")[1].strip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    for opcode, payload in messages:
        mask = os.urandom(4)
        size = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        writer.write(bytes([0x80 | opcode]) + size + mask +
                     bytes(x ^ mask[i % 4] for i, x in enumerate(payload)))
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.transport.abort()


async def test_stats_tell_who_ended_a_stream_and_error_rate_fails_the_final_with_1011():
    pcm = tone_and_silence([(0.6, True)])
    async with Node(rtf=0.0, error_rate=1.0, seed=1) as n:
        failed = await stream_session(n.url, pcm, "2pass", realtime=False)
        n.node.settings.error_rate = 0.0
        async with aiohttp.ClientSession() as s:  # the client leaves mid-session, with a close frame
            ws = await s.ws_connect(n.url)
            await ws.send_str(json.dumps(first_message("online", "leaving")))
            await ws.send_bytes(pcm)
            await ws.close()
        await _abrupt(n.url, [(1, json.dumps(first_message("online", "cut")).encode()), (2, b"\x00" * 64)])
        await _abrupt(n.url, [])  # an idle connection dropped: nothing was in progress
        for _ in range(100):
            streams = await n.streams()
            if streams["open"] == 0:
                break
            await asyncio.sleep(0.02)
    assert failed.error == "node-1: simulated inference failure" and failed.close_code == 1011 and failed.final is None
    assert streams == {"open": 0, "opened": 4, "closed_normal": 1, "closed_by_server": 2, "closed_by_client": 1,
                       "protocol_errors": 0, "refused": 0, "audio_seconds": 1.202}


@pytest.mark.parametrize("path", ["/", "/ws/asr"])
async def test_plain_get_is_a_400_line_on_any_path(path):
    async with Node() as n:
        r = await n.http.get(n.url.rstrip("/") + path)
    assert r.status_code == 400 and "WebSocket" in r.json()["error"]


async def test_a_stopping_node_closes_its_streams_with_1001_and_counts_them_as_closed_by_server():
    n = Node(rtf=0.0)
    await n.__aenter__()
    try:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(n.url)
            await ws.send_str(json.dumps(first_message("online", "live")))
            await ws.send_bytes(tone_and_silence([(0.6, True)]))
            assert json.loads((await ws.receive()).data)["mode"] == "online"
            stopping = asyncio.create_task(n.ws_server.close())  # the runner's shutdown (SIGTERM, an upgrade)
            msg = await ws.receive()
            await stopping
            assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1001, "node shutting down")
    finally:
        await n.__aexit__()
    assert n.node.streams.closed_by_server == 1 and n.node.streams.open == 0 and n.node.stats.in_flight == 0


async def test_one_connection_carries_sessions_one_after_another_as_funasr_s_client_does():
    pcm = tone_and_silence([(0.6, True)])
    async with Node(rtf=0.0) as n:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(n.url) as ws:
                finals = []
                for mode in ("offline", "online"):
                    await ws.send_str(json.dumps(first_message(mode, f"wav-{mode}")))
                    await ws.send_bytes(pcm)
                    await ws.send_str(json.dumps({"is_speaking": False}))
                    while not (r := json.loads((await ws.receive()).data))["is_final"]:
                        pass
                    finals.append((r["mode"], r["wav_name"]))
        streams = await n.streams()
    assert finals == [("offline", "wav-offline"), ("online", "wav-online")]
    assert (streams["opened"], streams["closed_normal"], streams["audio_seconds"]) == (1, 1, 1.2)
