"""One HTTP GET on asyncio streams, for the health probe: a status code without a client library.

aiohttp's client (the probe's earlier transport) costs more per probe than the rest of a collection round and
most of the agent's memory; a health check needs a request line, a status line and the body drained.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

MAX_BODY = 1 << 20  # a health answer is small; what is longer is left unread (the connection closes anyway)


class BadAnswer(ValueError):
    """Not an HTTP/1.x answer."""


async def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """(status, body) of `GET url` over a fresh connection (Connection: close). Raises TimeoutError after
    `timeout` seconds in all, OSError when the connection fails, BadAnswer/EOFError on a broken answer."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    ssl_context = None
    if https:
        import ssl

        ssl_context = ssl.create_default_context()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or (443 if https else 80),
                                                       ssl=ssl_context)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: asrtop-agent\r\n"
                         f"Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1"))
            version, _, rest = (await reader.readline()).decode("latin-1").partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise BadAnswer("not an HTTP/1.x answer")
            length = None
            while (line := await reader.readline()) not in (b"\r\n", b"\n"):
                if not line:
                    raise asyncio.IncompleteReadError(b"", None)
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if length is not None:
                body = await reader.readexactly(min(length, MAX_BODY))
            else:  # chunked or until close: the raw rest (a probe looks at the status only)
                body = await reader.read(MAX_BODY)
        finally:
            writer.close()
    return int(code), body
