"""Many plain-HTTP GETs at once, one per agent, for a one-shot command (`asrtop status`, `asrtop check`).

Why not one asyncio connection per agent (asrtop.sources.plainhttp.get): at 1,000 agents the event loop's
machinery per connection (connect future, transport, protocol, callbacks, the selector's bookkeeping) cost
~0.3 ms of CPU each, most of `status`'s time at that size. Here one thread drives every exchange with
non-blocking sockets on one epoll (~0.05 ms each, tests/benchmarks/bench_status_scale.py), and works out
the answers (`then`: JSON and the status's validation) while no socket is ready, the rest after the last one.
Why not each one as it arrives: at 1,000 loopback agents (answers always ready) that interleaving of socket
calls and parsing cost 82-84 ms of the thread's CPU against 55-62 ms for the same exchanges and parsing done
apart (the same process, alternated; issue 17's closing note); where answers take a network's time to come,
the parsing fills the waits as before.
Names that are not IP literals are resolved first, on the loop's resolver threads, as asyncio would.
Same answers and the same errors as plainhttp.get (its `_Reply` parses them), so the same words.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from asrtop.sources.plainhttp import ConnectFailed, PlainHTTPError, ReadFailed, _Reply, _request, split_url

# One exchange's outcome: what `then` made of (body, code) -- or (body, code) itself without one -- or the
# exception it ended with; the seconds from its start to the answer's end; the wall time (time.time()) then.
Outcome = tuple[Any, float, float]

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_ERR = select.EPOLLERR | select.EPOLLHUP
_NONBLOCKING_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK  # no setblocking call after
_RECV_SIZE = 262144
_STOP_CHECK = 0.05  # seconds between looks at `stop` while nothing happens


async def get_all(urls: Sequence[str], timeout: float, headers: dict[str, str] | None = None,
                  concurrency: int = 256, then: Callable[[bytes, int], Any] | None = None) -> list[Outcome]:
    """GET every URL, at most `concurrency` exchanges at once, each (connect included) ending within `timeout`
    seconds of its start (TimeoutError otherwise): one Outcome per URL, in order. Never raises for one URL."""
    loop = asyncio.get_running_loop()
    header_items = tuple((headers or {}).items())
    plans: list[Any] = []
    names: dict[tuple[str, int], Any] = {}
    for url in urls:
        try:
            host, port, path = split_url(url)
        except PlainHTTPError as e:
            plans.append(e)
            continue
        plans.append((host, port, _request(host, port, path, header_items)))
        if _literal(host) is None:
            names[host, port] = None
    if names:
        found = await asyncio.gather(*(_resolve(loop, host, port, timeout) for host, port in names),
                                     return_exceptions=True)
        names = dict(zip(names, found))
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_exchange_all, plans, names, timeout, max(1, concurrency), then, stop)
    finally:
        stop.set()  # cancelled: the thread gives up within _STOP_CHECK


def _literal(host: str) -> int | None:
    """The address family of an IP literal, None for a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            pass
    return None


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int, timeout: float) -> list:
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:  # socket.gaierror included
        raise ConnectFailed(host, port, e) from None
    return [(family, addr) for family, _, _, _, addr in infos]


class _Exchange:
    __slots__ = ("index", "host", "port", "request", "addresses", "sock", "reply", "started", "deadline", "sent",
                 "last_error")

    def __init__(self, index: int, host: str, port: int, request: bytes, addresses: list, started: float,
                 timeout: float):
        self.index, self.host, self.port, self.request = index, host, port, request
        self.addresses = addresses  # still to try, in order: [(family, sockaddr)]
        self.sock: socket.socket | None = None
        self.reply = _Reply()
        self.started, self.deadline = started, started + timeout
        self.sent = 0
        self.last_error: OSError | None = None


def _exchange_all(plans: list, names: dict, timeout: float, concurrency: int,
                  then: Callable[[bytes, int], Any] | None, stop: threading.Event) -> list[Outcome]:
    """The thread: every exchange on one epoll. Blocking; returns when all have ended or `stop` is set."""
    out: list[Any] = [None] * len(plans)
    waiting = deque(range(len(plans)))
    live: dict[int, _Exchange] = {}  # fd -> exchange
    by_start: deque[_Exchange] = deque()  # in start order = deadline order (one timeout for all)
    ep = select.epoll()
    # One receive buffer for every exchange (one thread): recv(256 KiB) would map, shrink and unmap a fresh
    # buffer per answer (three syscalls and page faults each), the answer itself being a few KB.
    inbox = bytearray(_RECV_SIZE)
    inbox_view = memoryview(inbox)

    unread: deque[int] = deque()  # indexes of answers `then` has yet to work out

    def finish(ex: _Exchange, result: Any) -> None:
        if ex.sock is not None:
            live.pop(ex.sock.fileno(), None)
            ex.sock.close()  # closing the only descriptor takes it off the epoll too: no epoll_ctl
            ex.sock = None
        out[ex.index] = (result, time.perf_counter() - ex.started, time.time())
        if then is not None and not isinstance(result, BaseException):
            unread.append(ex.index)

    def work_out(i: int) -> None:
        assert then is not None
        answer, latency, at = out[i]
        try:
            result = then(*answer)
        except Exception as e:
            result = e
        out[i] = (result, latency, at)

    def connect(ex: _Exchange) -> None:
        """Start a connection to the next address; when none is left, the exchange fails with the last error."""
        while ex.addresses:
            family, addr = ex.addresses.pop(0)
            sock = socket.socket(family, _NONBLOCKING_STREAM)
            err = sock.connect_ex(addr)
            if err in (0, errno.EINPROGRESS):
                # On loopback and near agents the handshake is often done when connect returns: the request
                # goes out now and the socket waits for the answer alone, not for "writable" first.
                try:
                    ex.sent = sock.send(ex.request)
                except BlockingIOError:  # still connecting
                    ex.sent = 0
                except OSError as e:  # the connection failed (refused, unreachable): the next address
                    sock.close()
                    ex.last_error = e
                    continue
                ex.sock = sock
                live[sock.fileno()] = ex
                ep.register(sock.fileno(), _IN if ex.sent >= len(ex.request) else _OUT)
                return
            sock.close()
            ex.last_error = OSError(err, os.strerror(err))
        finish(ex, ConnectFailed(ex.host, ex.port, ex.last_error or OSError(errno.EHOSTUNREACH, "no address")))

    def start(i: int) -> None:
        plan = plans[i]
        now = time.perf_counter()
        if isinstance(plan, BaseException):
            out[i] = (plan, 0.0, time.time())
            return
        host, port, request = plan
        family = _literal(host)
        addresses = names.get((host, port)) if family is None else [(family, (host, port))]
        if isinstance(addresses, BaseException):
            out[i] = (addresses, 0.0, time.time())
            return
        ex = _Exchange(i, host, port, request, list(addresses or ()), now, timeout)
        by_start.append(ex)
        connect(ex)

    def ready(ex: _Exchange, events: int) -> None:
        sock = ex.sock
        assert sock is not None
        if ex.sent < len(ex.request):  # connecting, or the request not all written yet
            if ex.sent == 0:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    live.pop(sock.fileno(), None)
                    sock.close()
                    ex.sock, ex.last_error = None, OSError(err, os.strerror(err))
                    connect(ex)  # the next address, if any
                    return
            try:
                ex.sent += sock.send(ex.request[ex.sent:])
            except BlockingIOError:
                return
            except OSError as e:
                finish(ex, ReadFailed(e))
                return
            if ex.sent >= len(ex.request):
                ep.modify(sock.fileno(), _IN)
            return
        try:
            got_bytes = sock.recv_into(inbox)
        except BlockingIOError:
            return
        except OSError as e:
            finish(ex, ReadFailed(e))
            return
        try:
            got = ex.reply.feed(inbox_view[:got_bytes]) if got_bytes else ex.reply.end()
        except PlainHTTPError as e:
            finish(ex, e)
            return
        if got is not None:
            finish(ex, got)

    try:
        while (waiting or live) and not stop.is_set():
            while waiting and len(live) < concurrency:
                start(waiting.popleft())
            while by_start and (by_start[0].sock is None or by_start[0].deadline <= time.perf_counter()):
                ex = by_start.popleft()
                if ex.sock is not None:
                    finish(ex, TimeoutError())
            if not live:
                continue
            ready_now = ep.poll(0)
            if not ready_now:
                if unread:  # nothing ready: work out an answer meanwhile
                    work_out(unread.popleft())
                    continue
                wait = (min(_STOP_CHECK, max(0.0, by_start[0].deadline - time.perf_counter())) if by_start
                        else _STOP_CHECK)
                ready_now = ep.poll(wait)
            for fd, events in ready_now:
                ex = live.get(fd)
                if ex is not None:
                    ready(ex, events)
        while unread and not stop.is_set():
            work_out(unread.popleft())
    finally:
        for ex in list(live.values()):
            finish(ex, TimeoutError())
        ep.close()
    return [o if o is not None else (TimeoutError(), 0.0, time.time()) for o in out]
