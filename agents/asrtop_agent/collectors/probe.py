"""Is the ASR service up? Three probes (`--probe`), each giving (up, latency, error):

- `http[:PATH]` GET {asr_url}{PATH}: up on a 2xx/3xx answer (the default, PATH /health or --health-path);
- `tcp`: a plain TCP connect to the ASR port (for a service without an HTTP health endpoint);
- `ws[:PATH]`: a WebSocket handshake on the stream port (or the ASR URL), closed at once: no stream is sent.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable
from urllib.parse import urlsplit

ProbeResult = tuple[bool, "float | None", "str | None"]
# Every probe has `kind`, `target`, `blocking`, async `check()` and `close()`; a `blocking` one also has
# `check_blocking()`, the same check as plain calls, which AsrCollector runs in its worker thread.
PROBE_KINDS = ("http", "tcp", "ws")


def parse_probe(text: str) -> tuple[str, str | None]:
    """`http`, `http:/health`, `tcp`, `ws`, `ws:/path` -> (kind, path or None); ValueError with one line."""
    kind, sep, path = text.strip().partition(":")
    if kind not in PROBE_KINDS:
        raise ValueError(f"bad --probe {text!r} (use http[:PATH], tcp or ws[:PATH])")
    if kind == "tcp" and sep:
        raise ValueError(f"bad --probe {text!r}: tcp takes no path (it connects to the ASR port)")
    if sep and not path.startswith("/"):
        raise ValueError(f"bad --probe {text!r}: the path starts with / (e.g. {kind}:/health)")
    return kind, (path or None) if sep else None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme in ("https", "wss") else 80)


class HttpProbe:
    """A GET on a plain blocking socket (httpget.py), not aiohttp's client nor asyncio streams: the default
    probe keeps aiohttp out of the agent's memory and costs the least per round. A fresh connection each time,
    as a balancer's check makes. `check_blocking` runs in a worker thread (AsrCollector: with the round's
    socket read); `check` is the same from the event loop."""

    kind = "http"
    blocking = True  # check_blocking() may run in a worker thread

    def __init__(self, url: str, path: str, timeout: float, clock: Callable[[], float], session: Any = None):
        self.target = url.rstrip("/") + (path if path.startswith("/") else "/" + path)
        self.timeout, self.clock = timeout, clock  # session: unused (the aiohttp probe's), kept for callers

    async def check(self) -> ProbeResult:
        return await asyncio.to_thread(self.check_blocking)

    def check_blocking(self) -> ProbeResult:
        from .httpget import http_get

        t0 = self.clock()
        try:
            status, _ = http_get(self.target, self.timeout)
        except TimeoutError:
            return False, None, f"health probe {self.target} timed out after {self.timeout:g}s"
        except (OSError, ValueError, EOFError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return False, None, f"health probe {self.target} failed: {reason}"
        latency = self.clock() - t0
        if 200 <= status < 400:
            return True, latency, None
        return False, latency, f"health probe {self.target} answered HTTP {status}"

    async def close(self) -> None:
        pass


class TcpProbe:
    kind = "tcp"
    blocking = False  # check() on the event loop only

    def __init__(self, host: str, port: int, timeout: float, clock: Callable[[], float]):
        self.host, self.port = host, port
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.timeout, self.clock = timeout, clock

    async def check(self) -> ProbeResult:
        t0 = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            return False, None, f"tcp probe {self.target} timed out after {self.timeout:g}s"
        except OSError as exc:
            return False, None, f"tcp probe {self.target} failed: {exc.strerror or exc}"
        latency = self.clock() - t0
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True, latency, None

    async def close(self) -> None:
        pass


class WsProbe:
    kind = "ws"
    blocking = False

    def __init__(self, url: str, timeout: float, clock: Callable[[], float], session: Any = None):
        self.target, self.timeout, self.clock, self._session = url, timeout, clock, session

    async def check(self) -> ProbeResult:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, force_close=True))
        t0 = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                ws = await self._session.ws_connect(self.target, autoping=False, max_msg_size=0)
                latency = self.clock() - t0  # the handshake: the service accepts streams
                await ws.close()
        except TimeoutError:
            return False, None, f"ws probe {self.target} timed out after {self.timeout:g}s"
        except aiohttp.WSServerHandshakeError as exc:
            return False, self.clock() - t0, f"ws probe {self.target} answered HTTP {exc.status} (no WebSocket)"
        except aiohttp.ClientError as exc:
            return False, None, f"ws probe {self.target} failed: {exc or type(exc).__name__}"
        return True, latency, None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def stream_url(asr_url: str, stream_port: int | None) -> str:
    """The streaming service: ws:// on the ASR host's stream port, else the ASR URL as ws(s)://."""
    if stream_port:
        host, _ = _host_port(asr_url)
        return f"ws://{'[%s]' % host if ':' in host else host}:{stream_port}"
    return asr_url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)


def make_probe(kind: str, path: str | None, asr_url: str, *, stream_port: int | None = None,
               health_path: str = "/health", timeout: float = 2.0,
               clock: Callable[[], float] = time.perf_counter, session: Any = None):
    """The probe of `--probe KIND[:PATH]`: http uses PATH or --health-path; ws goes to the stream port when
    there is one (on the ASR URL's host), else to the ASR URL itself."""
    host, port = _host_port(asr_url)
    if kind == "tcp":
        return TcpProbe(host, port, timeout, clock)
    if kind == "ws":
        return WsProbe(stream_url(asr_url, stream_port) + (path or "/"), timeout, clock, session)
    return HttpProbe(asr_url, path or health_path, timeout, clock, session)
