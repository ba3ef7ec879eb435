"""FunASR's WebSocket protocol for the simulated node (`simnode --ws-port P`: its own port, any path).

As FunASR's runtime/docs/websocket_protocol.md describes it (the `funasr-wss-server` runtime):

- the client's first message is JSON: {"mode": "offline"|"online"|"2pass", "wav_name", "is_speaking": true,
  "wav_format": "pcm", "chunk_size": [5, 10, 5], "chunk_interval", "audio_fs": 16000, "hotwords", "itn"};
  required here: mode, wav_name, is_speaking (true); the others default as above;
- then binary frames of PCM16 mono little-endian audio at audio_fs, then {"is_speaking": false};
- results are JSON {"mode", "wav_name", "text", "is_final", "timestamp"} (timestamp: "[[start_ms, end_ms], ...]").
  online / 2pass: one "online" / "2pass-online" partial per chunk of 60 ms x chunk_size[1] of audio received
  (600 ms for [5, 10, 5]; a client sending in real time gets them in real time), after chunk x rtf x
  slowdown of processing; 2pass: a "2pass-offline" correction at each end of a voiced segment (an energy VAD
  over the stream: 0.3 s of silence, or 15 s of speech). After {"is_speaking": false} exactly one result has
  is_final true: offline -> the whole transcript (the same text as POST /asr on the same audio);
  online -> the last, partial chunk; 2pass -> the last segment's correction (text "" when none is left).
  The connection may then start another session with a new first message (FunASR's client does that).
  error_rate (the fault knob) fails a session's final result: {"error": ...} and close code 1011.

Protocol errors answer one JSON line {"error": "..."} and close the WebSocket (FunASR documents no codes;
these are RFC 6455's): 1002 (protocol error) for a binary frame before the first message, bad JSON, a
message that is not an object, a missing or ill-typed field, a first message whose is_speaking is not true;
1003 (unsupported data) for an unknown mode, a wav_format other than pcm, an audio_fs outside 8000..48000.
The node keeps serving its other streams.

A stream (one WebSocket connection) holds one of the node's slots from the handshake to its close; with
no slot free the handshake is refused with HTTP 503, as the HTTP endpoints refuse past their queue.
Counted in GET /_sim/stats as "streams" (StreamStats).
"""

from __future__ import annotations

import asyncio
import json
import math
from array import array
from dataclasses import dataclass
from operator import mul
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from asrtop.demo.audio import Audio, Segment, vad_segments
from asrtop.demo.revisions import slow_factor, transcript

MODES = ("offline", "online", "2pass")
REQUIRED = ("mode", "wav_name", "is_speaking")
FRAME_S = 0.02  # VAD frame
MIN_GAP_S = 0.3  # silence that ends a voiced segment (as audio.vad_segments bridges shorter gaps)
MIN_SPEECH_S = 0.2  # shorter voiced bursts are dropped, as audio.vad_segments does
MAX_SEGMENT_S = 15.0  # a segment is cut after this much speech (FunASR's VAD cuts long ones too)


class ProtocolError(Exception):
    def __init__(self, message: str, code: int = WSCloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class StreamStats:
    """open: connections now; closed_normal: the client closed with no session in progress (after its
    final result); closed_by_server: the node ended it (protocol error, failure, shutdown) or the connection
    dropped mid-session without a close frame (what a balancer's cut looks like); closed_by_client: the
    client sent a close frame mid-session. opened = open + the three closed counts."""
    open: int = 0
    opened: int = 0
    closed_normal: int = 0
    closed_by_server: int = 0
    closed_by_client: int = 0
    protocol_errors: int = 0
    refused: int = 0  # handshakes answered 503 (no slot free)
    audio_seconds: float = 0.0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["audio_seconds"] = round(self.audio_seconds, 3)
        return d


def segments_text(model_name: str, segments: list[Segment]) -> str:
    """The node's transcript of voiced segments (shared with the HTTP endpoints' recognise())."""
    return transcript(model_name, " ".join(segment_text(i, g) for i, g in enumerate(segments)))


def segment_text(index: int, g: Segment) -> str:
    return f"[segment {index + 1}: {g.length:.2f} s]"


class NodeLike(Protocol):
    """What a stream needs of the SimNode (duck-typed: simnode imports this module, not the reverse)."""
    settings: Any
    streams: StreamStats
    _rng: Any

    async def take_slot_now(self) -> bool: ...

    def give_slot(self) -> None: ...


@dataclass
class Session:
    mode: str
    wav_name: str
    audio_fs: int
    chunk_samples: int


def parse_first(text: str) -> Session:
    """The session a first message opens; ProtocolError (one line, with its close code) otherwise."""
    msg = _json_object(text)
    missing = [k for k in REQUIRED if k not in msg]
    if missing:
        raise ProtocolError(f"first message lacks {', '.join(missing)} (needs mode, wav_name, is_speaking: true)")
    mode = msg["mode"]
    if mode not in MODES:
        raise ProtocolError(f"unknown mode {mode!r}: use offline, online or 2pass", WSCloseCode.UNSUPPORTED_DATA)
    if msg["is_speaking"] is not True:
        raise ProtocolError("the first message must have is_speaking true")
    if not isinstance(msg["wav_name"], str):
        raise ProtocolError("wav_name must be a string")
    fmt = msg.get("wav_format", "pcm")
    if fmt != "pcm":
        raise ProtocolError(f"wav_format {fmt!r} is not supported: send 16-bit PCM (wav_format pcm)",
                            WSCloseCode.UNSUPPORTED_DATA)
    fs = msg.get("audio_fs", 16000)
    if isinstance(fs, bool) or not isinstance(fs, int):
        raise ProtocolError(f"audio_fs must be an integer sample rate, got {fs!r}")
    if not 8000 <= fs <= 48000:
        raise ProtocolError(f"audio_fs {fs} is not supported (8000..48000)", WSCloseCode.UNSUPPORTED_DATA)
    chunk = msg.get("chunk_size", [5, 10, 5])
    if isinstance(chunk, str):  # FunASR's server also takes "5,10,5"
        chunk = [int(x) if x.strip().isdigit() else x for x in chunk.split(",")]
    if (not isinstance(chunk, list) or len(chunk) != 3
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in chunk) or chunk[1] < 1):
        raise ProtocolError(f"chunk_size must be three integers like [5, 10, 5], got {msg.get('chunk_size')!r}")
    interval = msg.get("chunk_interval", 10)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ProtocolError(f"chunk_interval must be a positive integer, got {interval!r}")
    if not isinstance(msg.get("hotwords", ""), (str, dict)):
        raise ProtocolError("hotwords must be a string (FunASR sends a JSON object as a string)")
    if not isinstance(msg.get("itn", True), bool):
        raise ProtocolError(f"itn must be true or false, got {msg.get('itn')!r}")
    return Session(mode, msg["wav_name"], fs, round(0.06 * chunk[1] * fs))


def _json_object(text: str) -> dict:
    try:
        msg = json.loads(text)
    except ValueError:
        raise ProtocolError(f"not JSON: {text[:60]!r}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {text[:60]!r}")
    return msg


class StreamVad:
    """The energy VAD of audio.vad_segments, frame by frame: a voiced frame is above a tenth of the
    loudest frame so far and above the noise floor; a segment ends after MIN_GAP_S of silence."""

    def __init__(self, fs: int) -> None:
        self.frame = int(fs * FRAME_S)
        self.step = max(1, self.frame // 40)  # a strided subset of each frame, as audio.vad_segments
        self.loudest = 0.0
        self.floor = 32768 * 0.003
        self.frames = 0
        self.start: int | None = None  # frame index where the open segment began
        self.last_voiced = 0  # frame index after the last voiced frame

    def feed(self, samples: array, at: int) -> tuple[bool, Segment | None]:
        """The frame at samples[at:]: (voiced, the segment it closed)."""
        p = samples[at:at + self.frame:self.step]
        energy = math.sqrt(sum(map(mul, p, p)) / len(p))
        self.loudest = max(self.loudest, energy)
        voiced = energy >= max(self.loudest * 0.1, self.floor)
        k = self.frames
        self.frames += 1
        if voiced:
            if self.start is None:
                self.start = k
            self.last_voiced = k + 1
            if (self.last_voiced - self.start) * FRAME_S >= MAX_SEGMENT_S:
                return True, self.close()
            return True, None
        if self.start is not None and (self.frames - self.last_voiced) * FRAME_S >= MIN_GAP_S:
            return False, self.close()
        return False, None

    def close(self) -> Segment | None:
        """End the open segment (None when none is open or it is too short)."""
        if self.start is None:
            return None
        g = Segment(round(self.start * FRAME_S, 3), round(self.last_voiced * FRAME_S, 3))
        self.start = None
        return g if g.length >= MIN_SPEECH_S else None


class Stream:
    """One WebSocket connection: sessions one after another, results as the audio arrives."""

    def __init__(self, node: NodeLike, ws: web.WebSocketResponse) -> None:
        self.node, self.ws = node, ws
        self.session: Session | None = None

    def _work(self, seconds: float) -> float:
        s = self.node.settings
        return seconds * s.rtf * s.slowdown * slow_factor(s.model_name)

    async def _send(self, mode: str, text: str, final: bool, stamps: list) -> None:
        assert self.session is not None
        await self.ws.send_str(json.dumps({"mode": mode, "wav_name": self.session.wav_name, "text": text,
                                           "is_final": final, "timestamp": json.dumps(stamps)}))

    def start(self, session: Session) -> None:
        self.session = session
        self.pcm = bytearray()  # offline: the whole audio; streaming: bytes not yet framed
        self.samples_done = 0
        self.chunk_index = 0
        self.voiced_in_chunk = 0
        self.vad = StreamVad(session.audio_fs)
        self.segments = 0
        self.corrections: asyncio.Task | None = None  # 2pass-offline passes, one after another

    async def audio(self, data: bytes) -> None:
        sess = self.session
        assert sess is not None
        self.node.streams.audio_seconds += len(data) / 2 / sess.audio_fs
        self.pcm += data
        if sess.mode == "offline":
            return
        n = self.vad.frame
        usable = len(self.pcm) // (2 * n) * (2 * n)
        if not usable:
            return
        samples = array("h")
        samples.frombytes(self.pcm[:usable])
        del self.pcm[:usable]
        for i in range(0, len(samples), n):
            voiced, closed = self.vad.feed(samples, i)
            self.voiced_in_chunk += voiced
            self.samples_done += n
            if closed is not None and sess.mode == "2pass":
                self._correct(closed, final=False)
            if self.samples_done >= (self.chunk_index + 1) * sess.chunk_samples:
                await self._partial(self.samples_done, final=False)

    async def _partial(self, end_sample: int, final: bool) -> None:
        sess = self.session
        assert sess is not None
        start_sample = self.chunk_index * sess.chunk_samples
        seconds = (end_sample - start_sample) / sess.audio_fs
        await asyncio.sleep(self._work(seconds))
        voiced = self.voiced_in_chunk * FRAME_S
        self.chunk_index += 1
        self.voiced_in_chunk = 0
        mode = "online" if sess.mode == "online" else "2pass-online"
        text = f"[chunk {self.chunk_index}: {voiced:.2f} s voiced]" if seconds > 0 else ""
        await self._send(mode, text, final, [[start_sample * 1000 // sess.audio_fs, end_sample * 1000 // sess.audio_fs]])

    def _correct(self, g: Segment | None, final: bool) -> None:
        self.segments += g is not None
        index, previous = self.segments - 1, self.corrections

        async def correction() -> None:
            if previous is not None:
                await previous
            await asyncio.sleep(self._work(g.length if g else 0.0))
            text = "" if g is None else transcript(self.node.settings.model_name, segment_text(index, g))
            stamps = [[int(g.start * 1000), int(g.end * 1000)]] if g else []
            await self._send("2pass-offline", text, final, stamps)

        self.corrections = asyncio.create_task(correction())

    async def finish(self) -> None:
        """{"is_speaking": false}: the rest of the audio, then the one result with is_final true."""
        sess = self.session
        assert sess is not None
        s = self.node.settings
        if sess.mode == "offline":
            samples = array("h", bytes(self.pcm[: len(self.pcm) // 2 * 2]))
            audio = Audio(sess.audio_fs, 1, 2, len(samples), samples)
            await asyncio.sleep(self._work(audio.duration))
            self._maybe_fail()
            segs = vad_segments(audio)
            await self._send("offline", segments_text(s.model_name, segs), True,
                             [[int(g.start * 1000), int(g.end * 1000)] for g in segs])
        else:
            rest = len(self.pcm) // 2
            if rest:  # a last, short VAD frame: counted as audio, not as voice
                self.samples_done += rest
            if sess.mode == "2pass":
                if self.samples_done > self.chunk_index * sess.chunk_samples:
                    await self._partial(self.samples_done, final=False)
                self._maybe_fail()
                self._correct(self.vad.close(), final=True)
                await self.corrections
            else:
                self._maybe_fail()
                await self._partial(self.samples_done, final=True)
        self.session = None

    def _maybe_fail(self) -> None:
        s = self.node.settings
        if s.error_rate > 0 and self.node._rng.random() < s.error_rate:
            raise InferenceFailure(f"{s.name}: simulated inference failure")


class InferenceFailure(Exception):
    pass


async def handle(node: NodeLike, request: web.Request) -> web.StreamResponse:
    """GET (any path) with a WebSocket upgrade: one stream for the connection's life."""
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    if not ws.can_prepare(request).ok:
        return web.json_response({"error": "this port speaks FunASR's WebSocket protocol: connect with a "
                                  "WebSocket upgrade", "status": 400}, status=400)
    if not await node.take_slot_now():
        node.streams.refused += 1
        s = node.settings
        return web.json_response({"error": f"{s.name}: all {s.slots} slots busy", "status": 503}, status=503,
                                 headers={"Retry-After": "1"})
    st = node.streams
    st.open += 1
    st.opened += 1
    stream = Stream(node, ws)
    how: str | None = None
    open_sockets = request.app[SOCKETS]
    open_sockets.add(ws)
    try:
        await ws.prepare(request)
        how = await _serve(stream, ws)
    except ProtocolError as e:
        st.protocol_errors += 1
        how = "closed_by_server"
        await _close(ws, e.code, str(e))
    except InferenceFailure as e:
        how = "closed_by_server"
        await _close(ws, WSCloseCode.INTERNAL_ERROR, str(e))
    except ConnectionError:  # a result could not be written: the connection is gone (see below)
        pass
    finally:
        # No verdict yet: the connection dropped (aiohttp cancels the handler, or a write failed), which
        # ends a session in progress from outside the client, e.g. a balancer's cut.
        how = how or ("closed_normal" if stream.session is None else "closed_by_server")
        open_sockets.discard(ws)
        if stream.session is not None and stream.corrections is not None:
            stream.corrections.cancel()
        st.open -= 1
        setattr(st, how, getattr(st, how) + 1)
        node.give_slot()
    return ws


async def _serve(stream: Stream, ws: web.WebSocketResponse) -> str:
    """Read until the connection ends; how it ended, as a StreamStats counter name."""
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.BINARY:
            if stream.session is None:
                raise ProtocolError("binary audio before the JSON first message")
            await stream.audio(msg.data)
        elif msg.type is WSMsgType.TEXT:
            if stream.session is None:
                stream.start(parse_first(msg.data))
            elif _json_object(msg.data).get("is_speaking") is False:
                await stream.finish()
            # other text mid-session (FunASR clients resend settings): nothing to do
        elif msg.type is WSMsgType.CLOSE:  # the client's close frame
            return "closed_normal" if stream.session is None else "closed_by_client"
        elif msg.type is WSMsgType.CLOSING:  # the node is closing it (shutdown)
            return "closed_by_server"
        else:  # CLOSED / ERROR: the connection dropped without a close frame
            return "closed_normal" if stream.session is None else "closed_by_server"


async def _close(ws: web.WebSocketResponse, code: int, message: str) -> None:
    if not ws.closed:
        try:
            await ws.send_str(json.dumps({"error": message}))
        except (ConnectionError, RuntimeError):
            pass
        await ws.close(code=code, message=message[:120].encode())


SOCKETS = web.AppKey("sockets", set)


def stream_app(node: NodeLike) -> web.Application:
    app = web.Application()
    app[SOCKETS] = set()

    async def going_away(app: web.Application) -> None:  # a stopping or restarting node
        for ws in list(app[SOCKETS]):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")

    async def h_stream(request: web.Request) -> web.StreamResponse:
        return await handle(node, request)

    app.on_shutdown.append(going_away)
    app.router.add_route("GET", "/{tail:.*}", h_stream)
    return app
