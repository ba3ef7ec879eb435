"""The agent's HTTP face: /metrics, /v1/status, /v1/model, /healthz — all served from the last snapshot.

Plain HTTP/1.1 on asyncio streams, no web framework: four read-only GET routes do not need one, and
aiohttp's import alone doubled the agent's memory (it still serves the optional --proxy, loaded only then).

Bodies are rendered on the first scrape of a snapshot and kept with it (Snapshot.rendered), gzipped once
as well when a scraper sends `Accept-Encoding: gzip`: with no scrapes nothing is rendered, and repeated
scrapes of one snapshot cost a lookup and a socket write (`/v1/status?view=brief`, the subset a one-shot
`asrtop status` reads, is one more such body). The one exception is asked for:
`/v1/status?after=T` (T: Unix time on the agent's clock, or `now`: when the request arrived) waits for a
snapshot whose collection round began at or after T (CollectionLoop.fresh), 503 when none comes in time.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import socket
import time
from typing import Awaitable, Callable, NamedTuple
from urllib.parse import parse_qs, urlsplit

from .snapshot import FRESH_TIMEOUT, Snapshot

log = logging.getLogger("asrtop_agent")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text format
JSON = "application/json"
KEEPALIVE_SECONDS = 75.0  # an idle keep-alive connection is closed after this
MAX_HEADERS = 100
MAX_METHOD = 16  # letters; a longer "method" is not HTTP
MAX_REQUEST_BODY = 64 * 1024  # GETs carry none; a client that sends one gets it read and ignored up to this
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = JSON
    gzipped: bool = False
    vary: bool = False  # the body depends on Accept-Encoding


def parse_after(text: str, now: Callable[[], float]) -> float:
    """`?after=` as a time on the agent's clock; ValueError (one line) when it is neither a number nor `now`."""
    if text == "now":
        return now()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"bad after={text!r}: give a Unix time in seconds (e.g. 1763712000.25) or 'now'")
    return value


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header admits gzip: listed (or `*`) with a q-value above 0."""
    if not header:
        return False
    qs: dict[str, float] = {}
    for part in header.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        qs[name.lower()] = q
    q = qs.get("gzip", qs.get("x-gzip", qs.get("*", 0.0)))
    return q > 0


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)


def _render_metrics(snap: Snapshot) -> bytes:
    from . import metrics  # prometheus_client loads with the first scrape of /metrics, not at start

    return metrics.render(snap)


def _render_status(snap: Snapshot) -> bytes:
    from . import status

    return status.render_status(snap)


def _render_status_brief(snap: Snapshot) -> bytes:
    from . import status

    return status.render_status_brief(snap)


# /v1/status?view=: the full body (the default), or the brief one a one-shot `asrtop status` reads (status.BRIEF_KEYS)
STATUS_VIEWS = {"full": ("status", _render_status), "brief": ("status.brief", _render_status_brief)}


def _render_model(snap: Snapshot) -> bytes:
    from . import status

    return status.render_model(snap)


def _error(status: int, line: str) -> Reply:
    return Reply(status, json.dumps({"error": line}).encode())


def _body(snap: Snapshot, key: str, render: Callable[[Snapshot], bytes], content_type: str, gz: bool) -> Reply:
    """The snapshot's body, gzipped when asked (each form rendered once per snapshot)."""
    if gz:
        body = snap.rendered(key + ".gz", lambda s: _gzip(s.rendered(key, render)))
        return Reply(200, body, content_type, gzipped=True, vary=True)
    return Reply(200, snap.rendered(key, render), content_type, vary=True)


class AgentHttp:
    """`latest`: the last snapshot; `fresh(T)`: one whose round began at or after T (`now`: the same clock)."""

    def __init__(self, latest: Callable[[], Snapshot], fresh: Callable[[float], Awaitable[Snapshot]],
                 now: Callable[[], float]):
        self.latest, self.fresh, self.now = latest, fresh, now
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def reply(self, method: str, target: str, headers: dict[str, str]) -> Reply:
        """What a request gets, framing aside."""
        if method not in ("GET", "HEAD"):
            return _error(405, f"{method} not allowed: the agent is read-only (GET)")
        url = urlsplit(target)
        gz = accepts_gzip(headers.get("accept-encoding"))
        if url.path == "/metrics":
            return _body(self.latest(), "metrics", _render_metrics, METRICS_CONTENT_TYPE, gz)
        if url.path == "/v1/status":
            query = parse_qs(url.query) if url.query else {}
            view = query.get("view", ("full",))[-1]
            if view not in STATUS_VIEWS:
                return _error(400, f"bad view={view!r}: give view=brief or view=full (the default)")
            key, render = STATUS_VIEWS[view]
            after = query.get("after")
            if not after:
                return _body(self.latest(), key, render, JSON, gz)
            try:
                t = parse_after(after[-1], self.now)
            except ValueError as e:
                return _error(400, str(e))
            try:
                snap = await self.fresh(t)
            except TimeoutError:
                return _error(503, f"no collection round began at or after {t:.3f} within {FRESH_TIMEOUT:g} s "
                                   f"(the ASR probe or a collector hangs)")
            return _body(snap, key, render, JSON, gz)
        if url.path == "/v1/model":
            return _body(self.latest(), "model", _render_model, JSON, gz)
        if url.path == "/healthz":
            return Reply(200, b"ok\n", "text/plain; charset=utf-8")
        return _error(404, f"no such path {url.path!r} (try /metrics, /v1/status, /v1/model, /healthz)")

    # -- HTTP/1.1 framing ---------------------------------------------------------------------------------
    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._connection, sock=sock)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for w in list(self._writers):
            w.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        request = await _read_request(reader)
                except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                    return
                if request is None:  # the client closed
                    return
                if isinstance(request, Reply):  # malformed: answer and close
                    writer.write(_head(request, keep=False) + request.body)
                    await writer.drain()
                    return
                method, target, keep, headers = request
                try:
                    reply = await self.reply(method, target, headers)
                except Exception as exc:  # a rendering bug answers 500, the agent goes on serving
                    log.exception("%s %s failed", method, target)
                    reply = _error(500, f"internal error: {type(exc).__name__}: {exc}")
                head_only = method == "HEAD"
                writer.write(_head(reply, keep) + (b"" if head_only else reply.body))
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _read_method(reader: asyncio.StreamReader) -> str | Reply | None:
    """The request line's method, read byte by byte (from the stream's buffer, no system call each), so that a
    connection sending anything else (junk, a TLS hello) is answered 400 at once instead of being held until
    its first line ends; None at EOF."""
    name = bytearray()
    while True:
        b = await reader.read(1)
        if not b:
            return None
        if b in (b"\r", b"\n") and not name:
            continue  # RFC 9112 2.2: ignore empty lines before a request line
        if b == b" " and name:
            return name.decode("ascii")
        if not b"A" <= b <= b"Z" or len(name) >= MAX_METHOD:
            return _error(400, "malformed request line")
        name += b


async def _read_request(reader: asyncio.StreamReader):
    """(method, target, keep_alive, headers), None at EOF, or a Reply (400/413) for a malformed request."""
    method = await _read_method(reader)
    if method is None or isinstance(method, Reply):
        return method
    try:
        parts = (await reader.readline()).decode("latin-1").split()
        if len(parts) != 2 or not parts[1].startswith("HTTP/1."):
            return _error(400, "malformed request line")
        target, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                return _error(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        else:
            return _error(400, f"more than {MAX_HEADERS} header lines")
    except ValueError:  # a line over the stream's limit (64 KiB)
        return _error(400, "request line or header too long")
    if "transfer-encoding" in headers:
        return _error(400, "request bodies are not accepted")
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_REQUEST_BODY:
        return _error(413, f"request body over {MAX_REQUEST_BODY} bytes")
    if int(length):
        await reader.readexactly(int(length))
    conn = headers.get("connection", "").lower()
    keep = "keep-alive" in conn if version == "HTTP/1.0" else "close" not in conn
    return method, target, keep, headers


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(t: float) -> str:
    """RFC 9110 IMF-fixdate (English names whatever the locale)."""
    g = time.gmtime(t)
    return (f"{_DAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year} "
            f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} GMT")


def _head(reply: Reply, keep: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Unknown')}", f"Date: {http_date(time.time())}",
             f"Content-Type: {reply.content_type}", f"Content-Length: {len(reply.body)}"]
    if reply.gzipped:
        lines.append("Content-Encoding: gzip")
    if reply.vary:
        lines.append("Vary: Accept-Encoding")
    lines.append("Connection: keep-alive" if keep else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def make_app(latest: Callable[[], Snapshot], fresh: Callable[[float], Awaitable[Snapshot]],
             now: Callable[[], float]) -> AgentHttp:
    """The agent's HTTP server (start it on a bound socket with `await app.start(sock)`)."""
    return AgentHttp(latest, fresh, now)
