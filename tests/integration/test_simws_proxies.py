"""FunASR WebSocket sessions against a real simulated node process (`--ws-port`), directly and through a
real HAProxy (mode http, `timeout tunnel`) and a real nginx (HTTP/1.1 + Upgrade/Connection), 127.0.0.1 only.
The client is written from FunASR's protocol document (tests/support/funasr_ws_client.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from asrtop.demo.audio import speech_like_wav
from support.balancers import ServerSpec, nginx_upstream_block, start_haproxy, start_nginx
from support.funasr_ws_client import first_message, raw_exchange, stream_session, wav_to_pcm
from support.netutil import free_port, wait_for_port

# WebSocket through nginx: HTTP/1.1 upstream and the hop-by-hop Upgrade/Connection headers passed on
# (http-level directives, inherited by the helper's `location /`).
NGINX_WS = """map $http_upgrade $connection_upgrade { default upgrade; '' close; }
proxy_http_version 1.1;
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $connection_upgrade;
"""


@pytest.fixture(scope="module")
def routes(tmp_path_factory, debian_haproxy_bin, nginx_bin):
    """{"direct" | "haproxy" | "nginx": ws URL} to one simulated node, and its HTTP stats URL."""
    tmp = tmp_path_factory.mktemp("simws")
    port, ws_port = free_port(), free_port()
    node = subprocess.Popen([sys.executable, "-m", "asrtop.demo.simnode", "--port", str(port), "--ws-port", str(ws_port),
                             "--rtf", "0.05", "--slots", "16"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    hx = ngx = None
    try:
        spec = [ServerSpec("node-1", ws_port)]
        hx = start_haproxy(debian_haproxy_bin, tmp, spec, backend_extra=["timeout tunnel 1h"])
        ngx = start_nginx(nginx_bin, tmp, NGINX_WS + nginx_upstream_block("fun_asr_backend", spec))
        assert wait_for_port("127.0.0.1", ws_port, timeout=20), node.stderr.read1().decode() if node.poll() else ""
        yield {"direct": f"ws://127.0.0.1:{ws_port}/", "haproxy": f"ws://127.0.0.1:{hx.frontend_port}/",
               "nginx": f"ws://127.0.0.1:{ngx.port}/ws"}, f"http://127.0.0.1:{port}/_sim/stats"
    finally:
        for p in (ngx, hx):
            if p is not None:
                p.stop()
        node.terminate()
        node.wait(10)


async def test_offline_online_2pass_complete_directly_and_through_haproxy_and_nginx(routes):
    urls, stats_url = routes
    pcm, _ = wav_to_pcm(speech_like_wav(1.5, seed=7))
    before = httpx.get(stats_url).json()["streams"]
    fast = [(route, mode) for route in urls for mode in ("offline", "online", "2pass")]
    outs = await asyncio.gather(
        *(stream_session(urls[r], pcm, m, wav_name=f"{r}-{m}", realtime=False) for r, m in fast),
        *(stream_session(urls[r], pcm, "2pass", wav_name=f"{r}-live", chunk_size=(5, 5, 5)) for r in urls))
    after = httpx.get(stats_url).json()["streams"]
    done = dict(zip(fast + [(r, "live") for r in urls], outs))
    for (route, mode), out in done.items():
        assert out.final is not None and out.final["wav_name"] == f"{route}-{mode}", (route, mode, out)
        assert [r for r in out.results if r["is_final"]] == [out.results[-1]] and out.close_code is None
    for mode in ("offline", "online", "2pass"):  # the same transcript whichever way the stream went
        assert len({json.dumps([(r["mode"], r["text"]) for r in done[route, mode].results]) for route in urls}) == 1
    assert [r["mode"] for r in done["nginx", "online"].results] == ["online"] * 3
    for route in urls:  # real time through each proxy: every 300 ms partial within a chunk of its audio
        late = done[route, "live"].lateness()
        assert len(late) == 5 and max(late) < 0.3, (route, late)
    assert after["opened"] - before["opened"] == after["closed_normal"] - before["closed_normal"] == 12
    assert after["open"] == 0 and after["closed_by_server"] == before["closed_by_server"]


@pytest.mark.parametrize("route", ["haproxy", "nginx"])
async def test_protocol_error_close_code_and_line_pass_through_the_proxy(routes, route):
    urls, _ = routes
    out = await raw_exchange(urls[route], [json.dumps({**first_message("online", "x"), "mode": "streaming"})])
    assert (out.close_code, out.error) == (1003, "unknown mode 'streaming': use offline, online or 2pass")
