"""A tiny in-process FunASR-style WebSocket service for the agent's stream tests and benchmark.

FunASR's protocol (runtime/docs/websocket_protocol.md) reduced to what the agent sees: a JSON first
message, binary PCM chunks each answered at once by an `online` partial result, `{"is_speaking": false}`
answered by the final result (`is_final: true`). Test-only control: a text `{"close": CODE, "reason": R}`
makes the service close the stream with that code; `{"vanish": true}` drops the TCP connection without a
close frame. It records the close codes and reasons clients sent, and serves GET /health.
"""

from __future__ import annotations

import json

from aiohttp import WSMsgType, web

from support.netutil import free_port


class WsNode:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.client_closes: list[tuple[int | None, str]] = []  # (code, reason) of clients' close frames
        self.first_messages: list[dict] = []
        self.protocols: list[str | None] = []
        self.open = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> "WsNode":
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/{tail:.*}", self._stream)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("binary",), max_msg_size=0)
        await ws.prepare(request)
        self.protocols.append(ws.ws_protocol)
        self.open += 1
        wav_name, chunks = "?", 0
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.CLOSE:  # autoclose answers it; the code and reason are the client's
                    self.client_closes.append((msg.data, msg.extra or ""))
                    break
                if msg.type is not WSMsgType.BINARY and msg.type is not WSMsgType.TEXT:
                    break
                if msg.type is WSMsgType.BINARY:
                    chunks += 1
                    await ws.send_str(json.dumps({"mode": "online", "text": f"chunk {chunks}", "wav_name": wav_name,
                                                  "is_final": False}))
                    continue
                doc = json.loads(msg.data)
                if "mode" in doc:
                    self.first_messages.append(doc)
                    wav_name = doc.get("wav_name", "?")
                elif doc.get("is_speaking") is False:
                    await ws.send_str(json.dumps({"mode": "offline", "text": f"{chunks} chunks", "wav_name": wav_name,
                                                  "is_final": True}))
                elif "close" in doc:
                    await ws.close(code=doc["close"], message=doc.get("reason", "").encode())
                    break
                elif doc.get("vanish"):
                    request.transport.abort()
                    break
        finally:
            self.open -= 1
        return ws
