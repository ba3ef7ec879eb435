"""In-path WebSocket proxy (`--proxy-ws LISTEN`): passes streams through to the stream port and counts them.

Each client WebSocket gets its own upstream WebSocket (same path and query, the client's subprotocols,
e.g. FunASR's "binary"); frames pass both ways unchanged (text stays text, binary stays binary, never
decoded), pings are answered per hop, and a close frame's code and reason are passed on to the other
side. A side that vanishes without a close frame: the other side gets 1001 (client gone) or 1014 (bad
gateway: the service went away). The upstream handshake comes first, so a service that refuses a stream
refuses it to the client (its HTTP status, or 502 when unreachable).

Counted exactly (collectors/streams.py ProxyStreams): streams opened/closed and their ages, data frames
both ways, and seconds of audio the clients sent (binary bytes / 2 / `audio_fs` of the first JSON
message, default 16000; only for `wav_format` pcm or wav, the formats FunASR streams as PCM16).
With `streams=None` nothing is counted: the bare forwarding the benchmark compares against.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from .collectors.streams import DEFAULT_AUDIO_FS, ProxyStreams

# Headers the WebSocket handshake owns (aiohttp writes its own) or that concern one hop only.
_NOT_FORWARDED = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding",
    "Upgrade", "Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol", "Origin", "Content-Length"))
CLOSE_TIMEOUT = 10.0  # seconds one side waits for the other's close reply
PCM_FORMATS = ("pcm", "wav")


def wire_code(code: int | None) -> int:
    """A close code that may be sent on: a close frame without a code (0) or one of the codes RFC 6455
    reserves for "none received" (1005, 1006, 1015) goes on as 1000."""
    return 1000 if not code or code in (1005, 1006, 1015) else code


def audio_scale(first_message: Any) -> float | None:
    """Seconds per byte of the binary frames that follow FunASR's first JSON message; None: not PCM16."""
    try:
        doc = json.loads(first_message)
    except (ValueError, UnicodeDecodeError, TypeError):
        return None
    if not isinstance(doc, dict):
        return None
    if str(doc.get("wav_format", "pcm")).lower() not in PCM_FORMATS:
        return None
    fs = doc.get("audio_fs", DEFAULT_AUDIO_FS)
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not 0 < fs <= 384000:
        fs = DEFAULT_AUDIO_FS
    return 1.0 / (2 * fs)


class WsProxy:
    def __init__(self, upstream: str, streams: ProxyStreams | None, session: aiohttp.ClientSession | None = None):
        self.upstream = upstream.rstrip("/")  # ws://HOST:PORT
        self.streams = streams
        self._session = session
        self._live: set[tuple[web.WebSocketResponse, aiohttp.ClientWebSocketResponse]] = set()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),  # streams last as long as the call
                connector=aiohttp.TCPConnector(limit=0), skip_auto_headers=("User-Agent",))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, app: web.Application) -> None:
        """The agent stops: end every stream on both sides with 1001 at once (never hang the stop on them)."""
        await asyncio.gather(*(ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"asrtop-agent stopping")
                               for pair in list(self._live) for ws in pair), return_exceptions=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=426, headers={"Upgrade": "websocket"},
                                text="asrtop-agent ws proxy: WebSocket only (this port carries streams)\n")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        headers.append(("X-Forwarded-For", request.remote or ""))
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        url = self.upstream + request.rel_url.raw_path_qs
        try:
            up = await self.session().ws_connect(
                url, protocols=protocols, headers=headers, origin=request.headers.get("Origin"), autoclose=False,
                autoping=True, max_msg_size=0, decode_text=False, timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT))
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status or 502, text=f"asrtop-agent ws proxy: {url} refused: {exc.message}\n")
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=502, text=f"asrtop-agent ws proxy: stream service unreachable: {exc}\n")
        client = web.WebSocketResponse(protocols=(up.protocol,) if up.protocol else (), autoclose=False,
                                       autoping=True, compress=False, max_msg_size=0, decode_text=False,
                                       timeout=CLOSE_TIMEOUT)
        try:
            await client.prepare(request)
        except Exception:
            await up.close(code=aiohttp.WSCloseCode.GOING_AWAY)
            raise
        key = self.streams.opened() if self.streams is not None else None
        pair = (client, up)
        self._live.add(pair)
        try:
            done, pending = await asyncio.wait(
                (asyncio.create_task(self._client_to_upstream(client, up)),
                 asyncio.create_task(self._upstream_to_client(up, client))),
                return_when=asyncio.FIRST_COMPLETED)
            if pending:  # the pump that ended closes the other side, whose pump then ends by itself
                _, stuck = await asyncio.wait(pending, timeout=2 * CLOSE_TIMEOUT)
                for task in stuck:
                    task.cancel()
            for task in done:
                task.result()
        finally:
            self._live.discard(pair)
            if not up.closed:
                await up.close(code=aiohttp.WSCloseCode.GOING_AWAY)
            if not client.closed:
                await client.close(code=aiohttp.WSCloseCode.GOING_AWAY)
            if key is not None:
                self.streams.closed(key)
        return client

    async def _client_to_upstream(self, client: web.WebSocketResponse, up: aiohttp.ClientWebSocketResponse) -> None:
        counts = self.streams
        scale = None  # seconds per binary byte, from the first JSON message
        first = True
        while True:
            msg = await client.receive()
            t = msg.type
            if t is WSMsgType.BINARY:
                await up.send_frame(msg.data, WSMsgType.BINARY)
                if counts is not None:
                    counts.frames += 1
                    if scale is not None:
                        counts.audio_seconds += len(msg.data) * scale
            elif t is WSMsgType.TEXT:
                await up.send_frame(msg.data, WSMsgType.TEXT)
                if counts is not None:
                    counts.frames += 1
                    if first:
                        scale = audio_scale(msg.data)
                first = False
            elif t is WSMsgType.CLOSE:  # the client closes: pass its code and reason on, then its answer back
                await up.close(code=wire_code(msg.data), message=(msg.extra or "").encode())
                await client.close(code=wire_code(up.close_code or msg.data))
                return
            elif t is WSMsgType.CLOSING:  # the other pump is closing us
                return
            else:  # CLOSED / ERROR: the client vanished without a close frame
                await up.close(code=aiohttp.WSCloseCode.GOING_AWAY)
                return

    async def _upstream_to_client(self, up: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse) -> None:
        counts = self.streams
        while True:
            msg = await up.receive()
            t = msg.type
            if t is WSMsgType.TEXT or t is WSMsgType.BINARY:
                await client.send_frame(msg.data, t)
                if counts is not None:
                    counts.frames += 1
            elif t is WSMsgType.CLOSE:
                await client.close(code=wire_code(msg.data), message=(msg.extra or "").encode())
                await up.close(code=wire_code(client.close_code or msg.data))
                return
            elif t is WSMsgType.CLOSING:
                return
            else:  # the service vanished without a close frame
                await client.close(code=aiohttp.WSCloseCode.BAD_GATEWAY, message=b"stream service went away")
                return
