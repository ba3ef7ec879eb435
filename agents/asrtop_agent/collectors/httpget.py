"""One HTTP GET on a plain blocking socket, for the health probe: a status code without a client library.

aiohttp's client (the probe's first transport) cost more per probe than the rest of a collection round and most
of the agent's memory; asyncio streams (its second) still took several event-loop turns and the transport and
stream objects of a connection every round: the largest part of an idle agent's user CPU. A health check needs
a request line, a status line and the body drained, so it runs as a few blocking calls in the collection's
worker thread (AsrCollector: with the round's socket read), against one deadline.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

MAX_BODY = 1 << 20  # a health answer is small; what is longer is left unread (the connection closes anyway)
MAX_HEAD = 64 * 1024  # status line and headers
_CHUNK = 16384


class BadAnswer(ValueError):
    """Not an HTTP/1.x answer."""


def _recv(sock: socket.socket, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(left)
    return sock.recv(_CHUNK)


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """(status, body) of `GET url` over a fresh connection (Connection: close), blocking. Raises TimeoutError
    after `timeout` seconds in all, OSError when the connection fails, BadAnswer/EOFError on a broken answer."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    https = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    request = (f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: asrtop-agent\r\n"
               f"Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")
    sock = socket.create_connection((parts.hostname, parts.port or (443 if https else 80)), timeout=timeout)
    try:
        if https:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        sock.sendall(request)
        data = b""
        while (end := _head_end(data)) < 0:
            chunk = _recv(sock, deadline)
            if not chunk:
                raise EOFError("the connection closed before the answer's headers ended")
            data += chunk
            if len(data) > MAX_HEAD:
                raise BadAnswer("headers too long")
        lines = data[:end].decode("latin-1").splitlines()
        version, _, rest = (lines[0] if lines else "").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise BadAnswer("not an HTTP/1.x answer")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        body = data[end:]
        want = MAX_BODY if length is None else min(length, MAX_BODY)  # no length: until close
        while len(body) < want:
            chunk = _recv(sock, deadline)
            if not chunk:
                if length is not None:
                    raise EOFError("the connection closed before the answer's body ended")
                break
            body += chunk
    finally:
        sock.close()
    return int(code), body[:want]


def _head_end(data: bytes) -> int:
    """Offset just past the blank line that ends the headers (CRLF or bare LF lines); -1 while not there."""
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    ends = [i + n for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    return min(ends) if ends else -1
