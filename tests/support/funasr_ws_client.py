"""A FunASR WebSocket client for tests, written from FunASR's runtime/docs/websocket_protocol.md (not from
asrtop.demo.simws): a JSON first message, binary PCM16 chunks, {"is_speaking": false}, JSON results until
one has is_final true.

    out = await stream_session("ws://127.0.0.1:PORT", pcm, mode="2pass", realtime=False)
    out.final["text"], out.texts("2pass-offline"), out.close_code

Chunks are 60 ms x chunk_size[1] / chunk_interval of audio (FunASR's client: 60 ms for [5, 10, 5] and
interval 10), sent on an absolute real-time schedule (a microphone's pace: chunk i leaves once its audio is recorded,
at (i + 1) x its length after the start) unless realtime=False.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from dataclasses import dataclass, field

import aiohttp


def wav_to_pcm(wav: bytes) -> tuple[bytes, int]:
    """The PCM frames of a 16-bit mono WAV and its sample rate (what FunASR's client sends)."""
    with wave.open(io.BytesIO(wav), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, "16-bit mono WAV expected"
        return w.readframes(w.getnframes()), w.getframerate()


@dataclass
class SessionOutcome:
    results: list[dict] = field(default_factory=list)  # every JSON message received, in order
    received_at: list[float] = field(default_factory=list)  # time.monotonic() of each
    first_audio_at: float | None = None
    sent: list[tuple[float, float]] = field(default_factory=list)  # (audio end in ms, time.monotonic()) per frame
    handshake_status: int | None = None  # set when the handshake was refused (e.g. 503)
    close_code: int | None = None  # the server's close code when it closed first
    error: str | None = None  # the server's {"error": ...}

    @property
    def final(self) -> dict | None:
        return next((r for r in self.results if r.get("is_final") is True), None)

    def of_mode(self, mode: str) -> list[dict]:
        return [r for r in self.results if r.get("mode") == mode]

    def texts(self, mode: str) -> list[str]:
        return [r["text"] for r in self.of_mode(mode)]

    def lateness(self, modes: tuple[str, ...] = ("online", "2pass-online"), schedule: bool = True) -> list[float]:
        """Seconds each partial came after the end of its audio (its timestamp's end) was due to leave this
        client on the real-time schedule (schedule=False: after it really left: the server's and the
        network's part only, without this client's own lag)."""
        assert self.first_audio_at is not None
        out = []
        for r, t in zip(self.results, self.received_at):
            if r.get("mode") in modes and not r.get("is_final"):
                end_ms = json.loads(r["timestamp"])[-1][1]
                if schedule:
                    out.append(t - (self.first_audio_at + end_ms / 1000))
                else:
                    out.append(t - next(at for audio_end, at in self.sent if audio_end >= end_ms))
        return out


def first_message(mode: str, wav_name: str, chunk_size=(5, 10, 5), chunk_interval: int = 10,
                  audio_fs: int = 16000, hotwords: str = "", itn: bool = True) -> dict:
    return {"mode": mode, "wav_name": wav_name, "wav_format": "pcm", "is_speaking": True,
            "chunk_size": list(chunk_size), "chunk_interval": chunk_interval, "audio_fs": audio_fs,
            "hotwords": hotwords, "itn": itn}


async def stream_session(url: str, pcm: bytes, mode: str = "2pass", *, wav_name: str = "test",
                         chunk_size=(5, 10, 5), chunk_interval: int = 10, audio_fs: int = 16000,
                         hotwords: str = "", realtime: bool = True, timeout: float = 30.0,
                         session: aiohttp.ClientSession | None = None) -> SessionOutcome:
    """One session on its own connection, closed by this client after the final result."""
    out = SessionOutcome()
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        try:
            ws = await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5), max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            out.handshake_status = e.status
            return out
        async with ws:
            await ws.send_str(json.dumps(first_message(mode, wav_name, chunk_size, chunk_interval, audio_fs, hotwords)))
            reader = asyncio.create_task(_read(ws, out))
            stride = int(60 * chunk_size[1] / chunk_interval / 1000 * audio_fs) * 2
            step_s = stride / 2 / audio_fs
            out.first_audio_at = t0 = time.monotonic()
            for i, at in enumerate(range(0, len(pcm), stride)):
                if reader.done():
                    break
                if realtime:  # a microphone hands over a chunk once it is recorded
                    await asyncio.sleep(max(0.0, t0 + (i + 1) * step_s - time.monotonic()))
                await ws.send_bytes(pcm[at:at + stride])
                out.sent.append((min(at + stride, len(pcm)) * 500 / audio_fs, time.monotonic()))
            if not reader.done():
                await ws.send_str(json.dumps({"is_speaking": False}))
            await asyncio.wait_for(reader, timeout)
    finally:
        if own:
            await session.close()
    return out


async def _read(ws: aiohttp.ClientWebSocketResponse, out: SessionOutcome) -> None:
    """Results until the one with is_final true (then this client closes) or the server's close."""
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        body = json.loads(msg.data)
        out.results.append(body)
        out.received_at.append(time.monotonic())
        if "error" in body:
            out.error = body["error"]
        elif body.get("is_final") is True:
            return
    out.close_code = ws.close_code


async def raw_exchange(url: str, messages: list[str | bytes], timeout: float = 10.0) -> SessionOutcome:
    """Send these messages as they are (str: a text frame, bytes: a binary frame), then read until the
    server closes: for protocol errors."""
    out = SessionOutcome()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            for m in messages:
                await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
            await asyncio.wait_for(_read(ws, out), timeout)
            if out.close_code is None:  # a final result came: read on until the server closes
                await asyncio.wait_for(_read(ws, out), timeout)
    return out
