"""Simulated FunASR node: WAV parsing, VAD segments, non-audio -> 400, slots/queue -> 503, counters."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from array import array

import httpx
import pytest
from aiohttp.test_utils import TestServer

from asrtop.demo.audio import AudioError, read_wav, speech_like_wav, vad_segments
from asrtop.demo.simnode import NodeSettings, SimNode, ensure_model_dir, parse_args


def wav_bytes(samples: list[int], rate: int = 16000, width: int = 2, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 1:
            w.writeframes(bytes((s + 128) & 0xFF for s in samples))
        else:
            w.writeframes(array("h" if width == 2 else "i", samples).tobytes())
    return buf.getvalue()


def tone_and_silence(pattern: list[tuple[float, bool]], rate: int = 16000) -> list[int]:
    out: list[int] = []
    for seconds, voiced in pattern:
        n = int(seconds * rate)
        out += [(8000 if (i // 20) % 2 else -8000) if voiced else 0 for i in range(n)]
    return out


def test_read_wav_duration_from_header_and_channels():
    a = read_wav(wav_bytes([0] * 32000, rate=16000))
    assert (a.sample_rate, a.channels, a.duration) == (16000, 1, 2.0)
    stereo = read_wav(wav_bytes([100, -100] * 8000, rate=8000, channels=2))
    assert stereo.duration == 1.0 and set(stereo.samples) == {100}
    assert read_wav(wav_bytes([5, -5] * 4000, rate=8000, width=1)).duration == 1.0


@pytest.mark.parametrize("body", [b"", b"hello world", b"RIFF\x00\x00\x00\x00WAVE", b"ID3\x03" + bytes(100)])
def test_read_wav_rejects_non_audio(body):
    with pytest.raises(AudioError):
        read_wav(body)


def test_vad_finds_voiced_bursts_between_pauses():
    samples = tone_and_silence([(0.5, False), (1.0, True), (1.0, False), (2.0, True), (0.5, False)])
    segs = vad_segments(read_wav(wav_bytes(samples)))
    assert len(segs) == 2
    assert segs[0].start == pytest.approx(0.5, abs=0.05) and segs[0].end == pytest.approx(1.5, abs=0.05)
    assert segs[1].start == pytest.approx(2.5, abs=0.05) and segs[1].end == pytest.approx(4.5, abs=0.05)


def test_vad_silence_has_no_segments_and_short_gaps_are_bridged():
    assert vad_segments(read_wav(wav_bytes([0] * 16000))) == []
    samples = tone_and_silence([(1.0, True), (0.1, False), (1.0, True)])
    assert len(vad_segments(read_wav(wav_bytes(samples)))) == 1


def test_speech_like_signal_has_several_segments():
    a = read_wav(speech_like_wav(10, seed=3))
    assert a.duration == 10.0
    assert 2 <= len(vad_segments(a)) <= 20


def test_model_dir_created_and_differs_by_model_name(tmp_path):
    a = ensure_model_dir(tmp_path / "a", "m1")
    ensure_model_dir(tmp_path / "b", "m2")
    assert [p.name for p in a] == ["config.yaml", "model.pt", "tokens.json"]
    assert (tmp_path / "a/model.pt").read_bytes() != (tmp_path / "b/model.pt").read_bytes()
    assert ensure_model_dir(tmp_path / "c", "m1") and (tmp_path / "c/model.pt").read_bytes() == (tmp_path / "a/model.pt").read_bytes()
    (tmp_path / "a/model.pt").write_bytes(b"x")
    ensure_model_dir(tmp_path / "a", "m1")  # a non-empty dir is never overwritten
    assert (tmp_path / "a/model.pt").read_bytes() == b"x"


def test_cli_rejects_out_of_range(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--port", "1", "--slots", "0"])
    assert "--slots" in capsys.readouterr().err


async def _client(node: SimNode):
    server = TestServer(node.app(), host="127.0.0.1")
    await server.start_server()
    return server, httpx.AsyncClient(base_url=str(server.make_url("")), timeout=30)


async def test_endpoints_answer_funasr_shapes(tmp_path):
    node = SimNode(NodeSettings(rtf=0.01, model_dir=tmp_path / "m"))
    server, c = await _client(node)
    wav = wav_bytes(tone_and_silence([(0.3, False), (1.0, True), (0.7, False)]))
    try:
        r = await c.post("/asr", files={"file": ("a.wav", wav, "audio/wav")}, data={"language": "zh"})
        body = r.json()
        assert r.status_code == 200 and body["duration"] == 2.0 and len(body["segments"]) == 1
        assert body["text"] == "[segment 1: 1.00 s]" and body["processing_time"] >= 0.02 and body["language"] == "zh"
        r = await c.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data={"response_format": "text"})
        assert r.text.strip() == body["text"]
        r = await c.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data={"response_format": "verbose_json"})
        assert r.json()["segments"][0]["id"] == 0 and r.json()["duration"] == 2.0
        assert (await c.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                             data={"response_format": "srt"})).status_code == 400
        path = tmp_path / "a.wav"
        path.write_bytes(wav)
        r = await c.post("/api/predict/", json={"data": [str(path), ["hot"], "zh", True]})
        assert r.json()["data"] == [body["text"]]
        r = await c.post("/api/predict/", json={"data": [base64.b64encode(wav).decode(), [], "zh", True]})
        assert r.json()["data"] == [body["text"]]
        r = await c.post("/api/predict/", json={"data": [{"path": str(path)}, [], "zh", True]})
        assert r.json()["data"] == [body["text"]]
        h = (await c.get("/health")).json()
        assert h["status"] == "ok" and h["models_loaded"] == ["Fun-ASR-Nano-2512"]
        assert (await c.get("/v1/models")).json()["data"][0]["id"] == "Fun-ASR-Nano-2512"
    finally:
        await c.aclose()
        await server.close()


async def test_non_audio_is_400_json(tmp_path):
    node = SimNode(NodeSettings(rtf=0.0))
    server, c = await _client(node)
    try:
        for r in [await c.post("/asr", files={"file": ("x.wav", b"not audio at all")}),
                  await c.post("/asr", data={"language": "zh"}),
                  await c.post("/api/predict/", json={"data": [str(tmp_path / "missing.wav")]}),
                  await c.post("/api/predict/", content=b"{nope"),
                  await c.post("/api/predict/", json={"data": ["data:audio/wav;base64,@@@"]})]:
            assert r.status_code == 400 and r.json()["error"]
        stats = (await c.get("/_sim/stats")).json()
        assert stats["received"] == stats["answered"] == 5 and stats["by_status"] == {"400": 5}
    finally:
        await c.aclose()
        await server.close()


async def test_slots_then_queue_then_503(tmp_path):
    node = SimNode(NodeSettings(rtf=4.0, slots=2, queue=3))
    server, c = await _client(node)
    wav = wav_bytes([1000, -1000] * 2000)  # 0.25 s -> each request holds a slot for 1 s
    st = node.stats
    try:
        tasks = [asyncio.create_task(c.post("/asr", files={"file": ("a.wav", wav)})) for _ in range(8)]
        for _ in range(500):  # until every request is in a slot, queued, or answered (the 503s)
            await asyncio.sleep(0.01)
            if st.in_flight + st.queued + st.answered == 8:
                break
        peak = (st.in_flight, st.queued, st.by_status.get("503"))
        codes = sorted(r.status_code for r in await asyncio.gather(*tasks))
        assert peak == (2, 3, 3)
        assert codes == [200] * 5 + [503] * 3
        stats = (await c.get("/_sim/stats")).json()
        assert stats["received"] == stats["answered"] == 8
        assert stats["by_status"] == {"200": 5, "503": 3} and stats["in_flight"] == stats["queued"] == 0
    finally:
        await c.aclose()
        await server.close()


async def test_fault_knobs(tmp_path):
    node = SimNode(NodeSettings(rtf=0.0, seed=1))
    server, c = await _client(node)
    wav = wav_bytes([0] * 1600)
    try:
        assert (await c.post("/_sim/fault", json={"error_rate": 1})).json()["error_rate"] == 1.0
        r = await c.post("/asr", files={"file": ("a.wav", wav)})
        assert r.status_code == 500 and "simulated" in r.json()["error"]
        assert (await c.post("/_sim/fault", json={"error_rate": 2})).status_code == 400
        answer = (await c.post("/_sim/fault", json={"error_rate": 0, "slowdown": 3})).json()
        assert (answer["error_rate"], answer["slowdown"]) == (0.0, 3.0)
        assert (await c.post("/asr", files={"file": ("a.wav", wav)})).status_code == 200
    finally:
        await c.aclose()
        await server.close()
