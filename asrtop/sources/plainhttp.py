"""A minimal HTTP/1.1 GET over asyncio streams, for one-shot commands (`asrtop status`, `asrtop check`) polling
agents at plain http:// URLs.

Why not aiohttp there: importing aiohttp builds SSL contexts (certificate stores) and loads ~100 modules, a
third of `asrtop status`'s start on a small fleet; a command that asks each agent once over plain HTTP needs
none of it (tests/unit/test_commands_imports.py). The console keeps aiohttp: it polls every second over
kept-alive connections. One request per connection (`Connection: close`), a body by Content-Length, chunked,
or up to the close; one protocol object and one future per request (no stream reader/writer): a 1,000-node
`status` asks 1,000 agents. Failures raise the exceptions below; asrtop.sources.agents.describe_error words them as
it words aiohttp's.
"""

from __future__ import annotations

import asyncio
import functools
from urllib.parse import urlsplit

MAX_BODY = 32 * 2**20  # an agent's status is a few KB: a bigger answer is not one
MAX_HEAD = 64 * 2**10


class PlainHTTPError(Exception):
    """Base of this client's failures."""


class BadURL(PlainHTTPError):
    """Not an http://host[:port]/path URL this client can ask."""


class ConnectFailed(PlainHTTPError):
    """The TCP connection could not be made (DNS, refused, unreachable): as aiohttp's ClientConnectorError."""

    def __init__(self, host: str, port: int, os_error: OSError):
        super().__init__(f"{host}:{port}: {os_error}")
        self.host, self.port, self.os_error = host, port, os_error


class Disconnected(PlainHTTPError):
    """The server closed the connection before an answer's first line."""


class ReadFailed(PlainHTTPError):
    """The connection failed mid-answer (reset): `errno` as the OSError's."""

    def __init__(self, os_error: OSError):
        super().__init__(str(os_error))
        self.errno = os_error.errno
        self.strerror = os_error.strerror


class Truncated(PlainHTTPError):
    """The answer ended before its body did."""


class BadAnswer(PlainHTTPError):
    """The server answered, but not in HTTP/1.x."""


_PLAIN_HOST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


@functools.lru_cache(maxsize=16384)  # each agent's URL, split once per process rather than per request
def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path?query) of an http:// URL; BadURL otherwise."""
    plain = _split_plain(url)
    return plain if plain is not None else _split_any(url)


def _split_plain(url: str) -> tuple[str, int, str] | None:
    """split_url of the usual agent URL, `http://10.0.0.7:9500/v1/status`, without urlsplit (a fifth of a
    1,000-agent `status`'s URL handling); None for anything else (a name in capitals, userinfo, IPv6, a
    fragment, odd characters), which urlsplit reads."""
    if not url.startswith("http://") or not url.isascii() or not url.isprintable() or "#" in url or " " in url:
        return None
    rest = url[7:]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    host, colon, port_text = rest[:end].partition(":")
    if not host or not _PLAIN_HOST.issuperset(host):
        return None
    if colon:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            return None
        port = int(port_text)
    else:
        port = 80
    path, question, query = rest[end:].partition("?")
    return host, port, (path or "/") + (f"?{query}" if question and query else "")


def _split_any(url: str) -> tuple[str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:  # a port out of range, a bad IPv6 literal
        raise BadURL(url) from None
    if parts.scheme != "http" or not parts.hostname:
        raise BadURL(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


async def get(url: str, timeout: float, headers: dict[str, str] | None = None) -> tuple[bytes, int]:
    """GET `url`: (body, status code). The whole exchange, connect included, ends within `timeout` seconds
    (asyncio.TimeoutError otherwise)."""
    host, port, path = split_url(url)
    loop = asyncio.get_running_loop()
    answer = _Answer(_request(host, port, path, tuple((headers or {}).items())), loop.create_future())
    async with asyncio.timeout(timeout):
        try:
            transport, _ = await loop.create_connection(lambda: answer, host, port)
        except OSError as e:
            raise ConnectFailed(host, port, e) from None
        try:
            return await answer.done
        finally:
            transport.close()


@functools.lru_cache(maxsize=16384)
def _request(host: str, port: int, path: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"GET {path} HTTP/1.1", f"Host: {authority}", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Reply:
    """An answer's parser, fed as bytes arrive: `feed` gives (body, code) once the body is complete (None: more
    to come), `end` at the close gives it or says why the answer is not one; both raise this module's errors."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.code: int | None = None
        self.body_at = -1  # where the body starts in buf, once the head is read
        self.length: int | None = None  # Content-Length
        self.chunked = False

    def feed(self, data: bytes) -> tuple[bytes, int] | None:
        self.buf += data
        if self.body_at < 0 and not self._head():
            return None
        body = self._body(eof=False)
        return None if body is None else (body, self.code)  # type: ignore[return-value]

    def end(self) -> tuple[bytes, int]:
        if not self.buf:
            raise Disconnected("closed the connection without answering")
        if self.body_at < 0:
            raise Truncated("the answer ended in its headers") if b"\n" in self.buf else \
                BadAnswer(f"not an HTTP answer: {bytes(self.buf[:60])!r}")
        return self._body(eof=True), self.code  # type: ignore[return-value]

    def _head(self) -> bool:
        """Parse the status line and headers once they are all in; False while they are not."""
        first_end = self.buf.find(b"\n")
        if first_end >= 0:
            version, _, rest = self.buf[:first_end].decode("latin-1").rstrip("\r").partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
                raise BadAnswer(f"not an HTTP answer: {bytes(self.buf[:first_end + 1][:60])!r}")
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise BadAnswer(f"headers over {MAX_HEAD} bytes")
            return False
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        self.code = int(lines[0].partition(" ")[2][:3])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                if not (value.isascii() and value.isdigit()):
                    raise BadAnswer(f"bad Content-Length {value[:20]!r}")
                self.length = int(value)
                if self.length > MAX_BODY:
                    raise BadAnswer(f"answer of {self.length} bytes (at most {MAX_BODY} read)")
            elif name == "transfer-encoding":
                self.chunked = "chunked" in value.lower()
        self.body_at = end + 4
        return True

    def _body(self, eof: bool) -> bytes | None:
        """The body once complete (None: more to come); at the end of the answer, Truncated if it is not."""
        got = len(self.buf) - self.body_at
        if self.chunked:
            body = _dechunk(self.buf, self.body_at)
            if body is None and eof:
                raise Truncated("the chunked answer ended early")
            return body
        if self.length is not None:
            if got >= self.length:
                return bytes(self.buf[self.body_at:self.body_at + self.length])
            if eof:
                raise Truncated(f"received {got} of {self.length} bytes")
            return None
        if got > MAX_BODY:
            raise BadAnswer(f"answer over {MAX_BODY} bytes")
        return bytes(self.buf[self.body_at:]) if eof else None  # no length: up to the close




class _Answer(asyncio.Protocol):
    """One exchange as a protocol (no stream reader/writer, one future): sends the request when connected and
    resolves `done` with (body, code) as soon as the body is complete, or with this module's error."""

    def __init__(self, request: bytes, done: asyncio.Future):
        self.request, self.done = request, done
        self.reply = _Reply()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            got = self.reply.feed(data)
        except PlainHTTPError as e:
            self.done.set_exception(e)
            return
        if got is not None:
            self.done.set_result(got)

    def eof_received(self) -> bool | None:
        self._end()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.done.done():
            self.done.set_exception(ReadFailed(exc) if isinstance(exc, OSError) else exc)
        self._end()

    def _end(self) -> None:
        if self.done.done():
            return
        try:
            got = self.reply.end()
        except PlainHTTPError as e:
            self.done.set_exception(e)
            return
        self.done.set_result(got)


def _dechunk(buf: bytearray, at: int) -> bytes | None:
    """The body of a chunked answer from `at`, None while its last chunk has not come in."""
    out = bytearray()
    while True:
        line_end = buf.find(b"\r\n", at)
        if line_end < 0:
            return None
        size_text = bytes(buf[at:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadAnswer(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            return bytes(out)  # trailers, if any, are not read
        if len(out) + size > MAX_BODY:
            raise BadAnswer(f"answer over {MAX_BODY} bytes")
        start = line_end + 2
        if len(buf) < start + size + 2:
            return None
        out += buf[start:start + size]
        at = start + size + 2
