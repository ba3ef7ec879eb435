"""In-path reverse proxy (`--proxy LISTEN`): forwards any method/path to the ASR service and counts exactly.

Bodies stream both ways in chunks (a multi-GB upload never sits in memory). Only a small JSON response
(<= 64 KiB, Content-Length known) is held whole, to read the audio `duration` FunASR's /asr returns.
"""

from __future__ import annotations

import time
from typing import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from .collectors.requests import MAX_DURATION_BODY, RequestCounters, audio_seconds

CHUNK = 256 * 1024
# Request bodies up to this size (Content-Length known) are read whole and sent in one write: fewer
# syscalls and wake-ups per request; larger ones stream chunk by chunk.
WHOLE_BODY = 1024 * 1024
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host"))


class AsrProxy:
    def __init__(self, upstream: str, counters: RequestCounters, clock: Callable[[], float] = time.perf_counter,
                 session: aiohttp.ClientSession | None = None):
        self.upstream = upstream.rstrip("/")
        self.counters = counters
        self.clock = clock
        self._session = session

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # no total timeout: an ASR request on a long file legitimately takes minutes
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                auto_decompress=False, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def _body(self, request: web.Request) -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(CHUNK):
            self.counters.bytes_received += len(chunk)
            yield chunk

    async def handle(self, request: web.Request) -> web.StreamResponse:
        c = self.counters
        key = c.started()
        t0 = self.clock()
        status: int | None = None
        audio = None
        try:
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
            peer = request.remote or ""
            headers.append(("X-Forwarded-For", peer))
            headers.append(("X-Forwarded-Host", request.host))
            length = request.content_length
            if not request.body_exists:
                data = None
            elif length is not None and length <= WHOLE_BODY:
                data = await request.read()
                c.bytes_received += len(data)
            else:
                data = self._body(request)
            try:
                upstream = await self.session().request(
                    request.method, self.upstream + request.rel_url.raw_path_qs, headers=headers, data=data,
                    allow_redirects=False)
            except (aiohttp.ClientError, OSError) as exc:
                status = 502
                return web.Response(status=502, text=f"asrtop-agent proxy: ASR service unreachable: {exc}\n")
            async with upstream:
                resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for k, v in upstream.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        resp.headers.add(k, v)
                length = upstream.content_length
                small_json = (length is not None and length <= MAX_DURATION_BODY
                              and upstream.content_type == "application/json")
                if length is None:
                    resp.enable_chunked_encoding()
                await resp.prepare(request)
                status = upstream.status  # headers are out: the client has its answer
                if small_json:
                    body = await upstream.read()
                    audio = audio_seconds(body)
                    await resp.write(body)
                    c.bytes_sent += len(body)
                else:
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        await resp.write(chunk)
                        c.bytes_sent += len(chunk)
                await resp.write_eof()
                return resp
        finally:
            c.finished(status, self.clock() - t0, audio, key)
