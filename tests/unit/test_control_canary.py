"""The rollout's canary against real aiohttp servers on 127.0.0.1: the simulated node for each api, and
small servers that answer each way a canary can fail."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asrtop.control.canary import CanaryResult, ClipError, check_canary, clip_seconds, default_clip, load_clip, run_canary
from asrtop.demo.simnode import NodeSettings, SimNode

CLIP = default_clip()


async def serve(app: web.Application) -> tuple[TestServer, str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, f"127.0.0.1:{server.port}"


@pytest.fixture
async def node():
    """A simulated node at rtf 0.1 (the demo's), on 127.0.0.1."""
    server, address = await serve(SimNode(NodeSettings(rtf=0.1)).app())
    yield address
    await server.close()


def test_shipped_clip_is_a_few_seconds_of_16k_mono():
    assert clip_seconds(CLIP) == 2.5 and CLIP[22:24] == b"\x01\x00"  # mono
    assert int.from_bytes(CLIP[24:28], "little") == 16000


@pytest.mark.parametrize("api", ["openai", "funasr", "gradio"])
async def test_each_api_gets_the_same_transcript_and_passes(node, api):
    result = await run_canary(node, CLIP, api=api)
    assert result.status == 200 and result.error is None and result.audio_seconds == 2.5
    assert result.text.startswith("[segment 1: ") and result.text.count("[segment") == 2
    assert 0.25 <= result.seconds < 2.5  # held for 2.5 s x rtf 0.1 by the node
    assert check_canary(result, result.text, max_rtf=1.0) is None
    assert check_canary(result, None, max_rtf=1.0) is None  # no reference yet: the first node sets it


async def test_wrong_transcript_and_slow_node_fail_in_one_line(node):
    reference = (await run_canary(node, CLIP)).text
    server, bad = await serve(SimNode(NodeSettings(rtf=0.01, model_name="Fun-ASR-Nano-2512-badcanary")).app())
    try:
        why = check_canary(await run_canary(bad, CLIP), reference, max_rtf=1.0)
    finally:
        await server.close()
    assert why.startswith("transcript differs from the reference: got '[segment 1:") and "expected '[segment" in why
    why = check_canary(await run_canary(node, CLIP), reference, max_rtf=0.05)
    assert why.startswith("real-time factor 0.") and "above 0.05 (" in why and "for a 2.50 s clip)" in why
    assert "\n" not in why


def failing_app() -> web.Application:
    async def error(request):
        return web.json_response({"error": "CUDA out of memory", "status": 500}, status=500)

    async def plain(request):
        return web.Response(text="<html>bad gateway</html>\nmore", status=200)

    async def empty(request):
        return web.json_response({"text": "  "})

    async def no_text(request):
        return web.json_response({"data": []})

    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({"text": "late"})

    app = web.Application()
    app.add_routes([web.post("/asr", error), web.post("/v1/audio/transcriptions", plain),
                    web.post("/api/predict/", no_text), web.post("/empty/asr", empty), web.post("/slow/asr", slow)])
    return app


async def test_every_failure_is_one_line_from_a_real_server():
    server, address = await serve(failing_app())
    try:
        r = await run_canary(address, CLIP, api="funasr")
        assert (r.status, r.text) == (500, None)
        assert check_canary(r, None, 1.0) == "HTTP 500: CUDA out of memory"
        r = await run_canary(address, CLIP, api="openai")
        assert check_canary(r, None, 1.0) == "the answer is not JSON: <html>bad gateway</html>"
        r = await run_canary(address, CLIP, api="gradio")
        assert check_canary(r, None, 1.0) == "the answer has no transcript"
        r = await run_canary(f"http://{address}/empty", CLIP, api="funasr")
        assert r.text == "  " and check_canary(r, "x", 1.0) == "empty transcript"
        r = await run_canary(f"http://{address}/slow", CLIP, api="funasr", timeout=0.2)
        assert r.status is None and check_canary(r, None, 1.0) == f"no answer from http://{address}/slow within 0.2 s"
        assert r.seconds < 2
    finally:
        await server.close()


async def test_refused_connection_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = await run_canary(f"127.0.0.1:{port}", CLIP)
    why = check_canary(r, None, 1.0)
    assert r.status is None and why.startswith(f"cannot reach 127.0.0.1:{port}: ") and "\n" not in why


async def test_bad_api_or_clip_is_refused_before_sending():
    with pytest.raises(ValueError, match="canary api must be one of openai, funasr, gradio"):
        await run_canary("127.0.0.1:9", CLIP, api="grpc")
    with pytest.raises(ClipError, match="not a WAV"):
        await run_canary("127.0.0.1:9", b"ID3 not a wav")


def test_load_clip_errors_name_the_file(tmp_path):
    with pytest.raises(ClipError, match=r"^canary clip .*missing.wav: no such file$"):
        load_clip(tmp_path / "missing.wav")
    (tmp_path / "song.mp3").write_bytes(b"ID3\x03" + bytes(100))
    with pytest.raises(ClipError, match=r"^canary clip .*song.mp3: not a WAV file \(no RIFF/WAVE header\)$"):
        load_clip(tmp_path / "song.mp3")
    with pytest.raises(ClipError, match="is a directory"):
        load_clip(tmp_path)
    (tmp_path / "ok.wav").write_bytes(CLIP)
    assert load_clip(tmp_path / "ok.wav") == CLIP


def test_check_without_audio_length_skips_only_the_rtf_bound():
    r = CanaryResult(200, "hello", seconds=9.0, audio_seconds=0.0)
    assert r.rtf is None and check_canary(r, "hello", max_rtf=0.1) is None
    assert check_canary(CanaryResult(200, "hello  world", 0.1, 1.0), " hello world ", 1.0) is None
