"""A minimal HTTP/1.1 GET over asyncio streams, for one-shot commands (`asrtop status`, `asrtop check`) polling
agents at plain http:// URLs.

Why not aiohttp there: importing aiohttp builds SSL contexts (certificate stores) and loads ~100 modules, a
third of `asrtop status`'s start on a small fleet; a command that asks each agent once over plain HTTP needs
none of it (tests/unit/test_commands_imports.py). The console keeps aiohttp: it polls every second over
kept-alive connections. One request per connection (`Connection: close`), a body by Content-Length, chunked,
or up to the close. Failures raise the exceptions below; asrtop.sources.agents.describe_error words them as
it words aiohttp's.
"""

from __future__ import annotations

import asyncio
import functools
from urllib.parse import urlsplit

MAX_BODY = 32 * 2**20  # an agent's status is a few KB: a bigger answer is not one
MAX_HEADER_LINES = 100


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


@functools.lru_cache(maxsize=16384)  # each agent's URL, split once per process rather than per request
def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path?query) of an http:// URL; BadURL otherwise."""
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
    async with asyncio.timeout(timeout):
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as e:
            raise ConnectFailed(host, port, e) from None
        try:
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            lines = [f"GET {path} HTTP/1.1", f"Host: {authority}", "Connection: close",
                     *(f"{k}: {v}" for k, v in (headers or {}).items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            return await _answer(reader)
        except OSError as e:
            raise ReadFailed(e) from None
        except ValueError:  # a line over the stream's 64 KiB limit
            raise BadAnswer("a header line over 64 KiB") from None
        finally:
            writer.close()


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, int]:
    first = await reader.readline()
    if not first:
        raise Disconnected("closed the connection without answering")
    version, _, rest = first.decode("latin-1").rstrip("\r\n").partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
        raise BadAnswer(f"not an HTTP answer: {first[:60]!r}")
    length: int | None = None
    chunked = False
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise Truncated("the answer ended in its headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            if not value.isdigit():
                raise BadAnswer(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
    else:
        raise BadAnswer(f"more than {MAX_HEADER_LINES} header lines")
    if chunked:
        return await _chunks(reader), int(code)
    if length is not None:
        if length > MAX_BODY:
            raise BadAnswer(f"answer of {length} bytes (at most {MAX_BODY} read)")
        try:
            return await reader.readexactly(length), int(code)
        except asyncio.IncompleteReadError as e:
            raise Truncated(f"received {len(e.partial)} of {length} bytes") from None
    body = await reader.read(MAX_BODY + 1)  # no length: up to the close
    if len(body) > MAX_BODY:
        raise BadAnswer(f"answer over {MAX_BODY} bytes")
    return body, int(code)


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise Truncated(f"received {len(out)} bytes, then the chunked answer ended")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadAnswer(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers, up to the blank line
                pass
            return bytes(out)
        if len(out) + size > MAX_BODY:
            raise BadAnswer(f"answer over {MAX_BODY} bytes")
        try:
            out += await reader.readexactly(size)
            await reader.readexactly(2)  # the chunk's CRLF
        except asyncio.IncompleteReadError:
            raise Truncated(f"received {len(out)} bytes, then the chunked answer ended") from None
