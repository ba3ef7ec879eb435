"""Two real agents beside a real simulated node serving FunASR's WebSocket protocol (--ws-port):

- agent P passes the streams through (--proxy-ws) and counts them exactly; its probe is a TCP connect;
- agent C counts the established connections on the stream port (--stream-port) and probes with a
  WebSocket handshake.
Sessions of 1-3 s (offline, online, 2pass) go through P, so C sees P's upstream connections.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time

import httpx

from support.agent_proc import agent, simnode
from support.funasr_ws_client import first_message, raw_exchange, stream_session
from support.netutil import free_port

INTERVAL = 0.2


async def _status(client: httpx.AsyncClient, url: str) -> dict:
    return (await client.get(url + "/v1/status")).json()


async def _until(client: httpx.AsyncClient, url: str, predicate, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = await _status(client, url)
        if predicate(body) or time.monotonic() > deadline:
            assert predicate(body), body["asr"]
            return body
        await asyncio.sleep(0.05)


async def test_stream_counts_probes_and_close_codes_with_real_agents_and_node(tmp_path):
    ws_port, proxy_port = free_port(), free_port()
    common = ("--gpu", "none", "--interval", f"{int(INTERVAL * 1000)}ms", "--stream-port", str(ws_port))
    pcm = {secs: os.urandom(int(16000 * 2 * secs)) for secs in (1.0, 2.0, 3.0)}
    with simnode(tmp_path, ws_port=ws_port, slots=8, rtf=0.01) as node, \
            agent(tmp_path, node.url, *common, "--probe", "tcp", "--proxy-ws", f"127.0.0.1:{proxy_port}") as pa, \
            agent(tmp_path, node.url, *common, "--probe", "ws") as ca:
        proxy_url = f"ws://127.0.0.1:{proxy_port}/"
        offset = time.time() - time.monotonic()  # the agents' collected_at is Unix time; the client's, monotonic
        async with httpx.AsyncClient(timeout=5) as http:
            p0 = await _until(http, pa.url, lambda b: b["asr"]["up"] is True)
            c0 = await _until(http, ca.url, lambda b: b["asr"]["up"] is True)
            assert p0["asr"]["probe"] == {"kind": "tcp", "target": f"127.0.0.1:{node.port}"}
            assert c0["asr"]["probe"] == {"kind": "ws", "target": f"ws://127.0.0.1:{ws_port}/"}
            assert p0["asr"]["streams"]["source"] == "proxy" and c0["asr"]["streams"]["source"] == "connections"

            sessions = []  # (called at, outcome, returned at), monotonic

            async def session(delay: float, secs: float, mode: str):
                await asyncio.sleep(delay)
                t0 = time.monotonic()
                out = await stream_session(proxy_url, pcm[secs], mode=mode, wav_name=f"{mode}-{secs}")
                sessions.append((t0, out, time.monotonic()))

            samples = []

            async def sampler():
                while len(sessions) < 3:
                    samples.append((await _status(http, pa.url), await _status(http, ca.url)))
                    await asyncio.sleep(0.1)

            await asyncio.gather(sampler(), session(0.0, 3.0, "2pass"), session(0.5, 1.0, "online"),
                                 session(0.8, 2.0, "offline"))
            assert all(out.final is not None and out.error is None for _, out, _ in sessions)  # results passed

            def live(t: float) -> list[float]:  # ages of the sessions open at t (between handshake and final)
                return [t - out.first_audio_at for _, out, _ in sessions if out.first_audio_at <= t <= out.received_at[-1]]

            def steady(lo: float, hi: float) -> bool:  # no handshake / close in the window
                return not any(a - 0.03 <= hi and lo <= b + 0.03 for t0, out, t1 in sessions
                               for a, b in ((t0, out.first_audio_at), (out.received_at[-1], t1)))

            judged = 0
            for body_p, body_c in samples:
                for body, slack in ((body_p, 0.05), (body_c, INTERVAL + 0.1)):
                    lo, hi = body["round_started_at"] - offset, body["collected_at"] - offset
                    if not steady(lo, hi):
                        continue
                    st, ages = body["asr"]["streams"], live(hi)
                    assert st["open"] == len(ages) and st["ages"][-1] == [None, len(ages)], (st, ages)
                    if ages:
                        assert -slack <= max(ages) - st["oldest_seconds"] <= slack + (hi - lo), (st, ages)
                    judged += 1
            assert judged >= 20

            chunks = sum(math.ceil(len(pcm[s]) / 1920) for s in pcm)
            results = sum(len(out.results) for _, out, _ in sessions)
            p = (await _until(http, pa.url, lambda b: b["asr"]["streams"]["closed_total"] == 3))["asr"]["streams"]
            c = (await _until(http, ca.url, lambda b: b["asr"]["streams"]["open"] == 0))["asr"]["streams"]
            sim = httpx.get(node.url + "/_sim/stats").json()["streams"]
            assert (p["open"], p["opened_total"], p["oldest_seconds"]) == (0, 3, None)
            assert p["frames_total"] == chunks + 2 * 3 + results  # first message + is_speaking false per stream
            assert abs(p["audio_seconds_total"] - 6.0) < 1e-9 and abs(sim["audio_seconds"] - 6.0) < 1e-3
            assert (c["opened_total"], c["closed_total"]) == (3, 3)  # its own ws probes are not streams

            bad = await raw_exchange(proxy_url, [b"\x00\x01", json.dumps(first_message("online", "x"))])
            assert bad.close_code == 1002 and "first message" in (bad.error or "")  # the node's code and words

            await _until(http, pa.url, lambda b: b["asr"]["streams"]["closed_total"] == 4)
            metrics = (await http.get(pa.url + "/metrics")).text
            assert "asr_streams_opened_total 4.0" in metrics and "asr_stream_frames_total" in metrics

            node.stop()  # both probes see the service go down ...
            p = await _until(http, pa.url, lambda b: b["asr"]["up"] is False)
            c = await _until(http, ca.url, lambda b: b["asr"]["up"] is False)
            assert "tcp probe" in p["asr"]["error"] and "ws probe" in c["asr"]["error"]
            with simnode(tmp_path, port=node.port, ws_port=ws_port, slots=8):  # ... and come back
                await _until(http, pa.url, lambda b: b["asr"]["up"] is True)
                await _until(http, ca.url, lambda b: b["asr"]["up"] is True and b["asr"]["error"] is None)
