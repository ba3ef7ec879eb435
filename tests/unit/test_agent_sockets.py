"""The agent's socket reads (collectors/sockets.py): one dump per round for every port and both IP families,
and counts that take only the sockets of the port and state asked for; the HTTP probe in the same worker hop."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time

import pytest

from asrtop_agent.collectors.asr import AsrCollector
from asrtop_agent.collectors.probe import make_probe
from asrtop_agent.collectors.requests import RequestCounters
from asrtop_agent.collectors.sockets import TCP_ESTABLISHED, ProcNetTcp, SockDiag

TABLES = {"sock_diag": lambda: SockDiag(), "sock_diag per family": lambda: SockDiag(compat=False),
          "proc_net_tcp": lambda: ProcNetTcp()}


def live_sock_diag() -> SockDiag:
    """The agent's netlink socket reader; Linux has had it since 4.16, so a box without it fails, never skips."""
    diag = SockDiag()
    assert diag.available(), "no sock_diag netlink here (Linux >= 4.16 has it)"
    return diag


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def _listener(family: int = socket.AF_INET) -> socket.socket:
    srv = socket.socket(family)
    if family == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual stack: IPv4 clients are AF_INET6 here
        srv.bind(("::", 0))
    else:
        srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    return srv


class Sockets:
    """Sockets to clean up, created by the tests below."""

    def __init__(self):
        self.all: list[socket.socket] = []

    def keep(self, *socks: socket.socket) -> socket.socket:
        self.all.extend(socks)
        return socks[0]

    def connect(self, srv: socket.socket, host: str = "127.0.0.1") -> tuple[socket.socket, socket.socket]:
        client = self.keep(socket.create_connection((host, srv.getsockname()[1])))
        return client, self.keep(srv.accept()[0])

    def close(self) -> None:
        for s in self.all:
            s.close()


@pytest.fixture
def socks():
    s = Sockets()
    yield s
    s.close()


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_only_the_asked_ports_and_established_sockets_are_counted(table, socks):
    """Each kind of socket that must not count is present: another port's connections, a connection closed by
    its client (CLOSE_WAIT / FIN_WAIT2 on the port), our client side of the port's connections (counted apart,
    only as `client`), the stream port's (counted only there); one connection not yet accepted counts as in
    flight but is no stream (no inode)."""
    table = table()
    asr = socks.keep(_listener(socket.AF_INET6))
    stream, other = socks.keep(_listener()), socks.keep(_listener())
    port, stream_port = asr.getsockname()[1], stream.getsockname()[1]
    served = [socks.connect(asr)[1], socks.connect(asr, "::1")[1]]  # IPv4 (mapped) and IPv6 clients
    socks.connect(other)
    streaming = socks.connect(stream)[1]
    closing, _ = socks.connect(asr)
    closing.close()  # its server side: CLOSE_WAIT, its client side: FIN_WAIT2; neither is established
    socks.keep(socket.create_connection(("127.0.0.1", port)))  # in the accept queue: no inode yet
    got = table.sample(listen=(port, stream_port), established=(port, stream_port), client=port)
    assert got.listeners == {port: _inode(asr), stream_port: _inode(stream)}
    assert got.scan(port) == (_inode(asr), 3, 3)  # 2 served + 1 queued; our 3 client sides
    assert sorted(got.established(port)) == sorted(map(_inode, served))
    assert got.established(stream_port) == [_inode(streaming)] and got.scan(stream_port)[1] == 1
    assert other.getsockname()[1] not in got.server and other.getsockname()[1] not in got.listeners
    just_listeners = table.sample(listen=(port,))
    assert just_listeners.listeners == {port: _inode(asr)} and not just_listeners.server


def test_a_round_reads_all_its_sockets_in_one_dump(socks):
    """The kernel walks its whole established table for each dump: one per round, whatever the ports (the ASR
    port and --stream-port) and families (a dual-stack listener's IPv4 and IPv6 clients)."""
    diag = live_sock_diag()
    diag.owner_of = lambda inode: os.getpid()
    asr, stream = socks.keep(_listener(socket.AF_INET6)), socks.keep(_listener())
    socks.connect(asr)
    socks.connect(asr, "::1")
    socks.connect(stream)
    col = AsrCollector(f"http://127.0.0.1:{asr.getsockname()[1]}", connections=diag,
                       stream_port=stream.getsockname()[1])
    for _ in range(2):  # the first round also asks for the client side (no listener known yet), in the same dump
        before = diag.dumps
        (pid, _, _, error, in_flight), streams, _ = col._socket_facts()
        assert diag.dumps - before == 1
        assert (pid, error, in_flight, streams.open) == (os.getpid(), None, 2, 1)


def test_with_the_proxy_counting_only_the_listening_table_is_read(socks):
    """--proxy counts in flight exactly: without a stream port the established table is not walked at all."""
    diag = live_sock_diag()
    asked: list[int] = []
    real = diag._dump
    diag._dump = lambda kind, family, states, bytecode: asked.append(states) or real(kind, family, states, bytecode)
    diag.owner_of = lambda inode: os.getpid()
    srv = socks.keep(_listener())
    url = f"http://127.0.0.1:{srv.getsockname()[1]}"
    pid, _, rss, error, conns = AsrCollector(url, connections=diag, counters=RequestCounters())._process_facts()
    assert (pid, error, conns) == (os.getpid(), None, None) and rss > 0
    assert asked and not any(states & (1 << TCP_ESTABLISHED) for states in asked)
    asked.clear()
    assert AsrCollector(url, connections=diag)._process_facts()[4] == 0  # no proxy: connections are in flight
    assert any(states & (1 << TCP_ESTABLISHED) for states in asked)


def test_a_listener_gone_since_the_last_round_counts_our_connections_to_the_port(socks):
    """The round's dump leaves out the client side while a listener is known; when the listener is gone, the
    client side is read at once (the ASR service moved elsewhere), not one round late."""
    diag = live_sock_diag()
    diag.owner_of = lambda inode: os.getpid()
    srv = socks.keep(_listener())
    socks.connect(srv)
    col = AsrCollector(f"http://127.0.0.1:{srv.getsockname()[1]}", connections=diag)
    assert col._process_facts()[4] == 1 and col._process_facts()[4] == 1  # served: the server side counts
    srv.close()
    facts = col._process_facts()
    assert facts[0] is None and facts[4] == 1  # our client side of the connection still open


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the handler's name)
        if self.path == "/slow":
            time.sleep(1.0)
        body = b'{"status": "ok"}'
        try:
            self.send_response(200 if self.path != "/bad" else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the probe gave up (timed out) and closed
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def health_url():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    srv.block_on_close = False  # the slow answer's thread is not waited for
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


async def test_the_http_probe_follows_the_socket_read_in_the_same_worker_hop(health_url, monkeypatch):
    """The default probe costs the event loop nothing: it runs in the round's one worker-thread hop, after the
    sockets are read (a probe's own connection is never counted)."""
    import asyncio

    hops, order = [], []
    real_to_thread = asyncio.to_thread
    monkeypatch.setattr(asyncio, "to_thread", lambda fn, *a: hops.append(fn) or real_to_thread(fn, *a))
    diag = SockDiag()
    assert diag.available()
    real_sample = diag.sample
    diag.sample = lambda *a, **k: order.append(("sockets", threading.get_ident())) or real_sample(*a, **k)
    diag.owner_of = lambda inode: os.getpid()
    probe = make_probe("http", "/health", health_url, timeout=2.0)
    real_check = probe.check_blocking
    probe.check_blocking = lambda: order.append(("probe", threading.get_ident())) or real_check()
    col = AsrCollector(health_url, connections=diag, probe=probe)
    snap = await col.collect()
    assert snap.up is True and snap.error is None and snap.probe_latency_seconds > 0
    assert len(hops) == 1 and [what for what, _ in order] == ["sockets", "probe"]
    assert order[0][1] == order[1][1] != threading.get_ident()


async def test_the_blocking_probe_says_down_on_a_bad_status_a_timeout_and_a_refused_connection(health_url):
    bad = await make_probe("http", "/bad", health_url, timeout=2.0).check()
    assert bad[0] is False and bad[1] is not None and "answered HTTP 503" in bad[2]
    t0 = time.monotonic()
    slow = await make_probe("http", "/slow", health_url, timeout=0.3).check()
    assert slow == (False, None, f"health probe {health_url}/slow timed out after 0.3s")
    assert time.monotonic() - t0 < 0.9  # the deadline holds for the whole exchange
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    refused = await make_probe("http", "/health", f"http://127.0.0.1:{port}", timeout=1.0).check()
    assert refused[0] is False and "failed" in refused[2]


class Counters:
    """TcpCounters as the test sets them: (ActiveOpens, PassiveOpens, AttemptFails, EstabResets, CurrEstab)."""

    def __init__(self) -> None:
        self.now: tuple[int, ...] | None = (100, 50, 0, 0, 4)

    def read(self) -> tuple[int, ...] | None:
        return self.now

    def move(self, **by: int) -> None:
        names = ("active", "passive", "fails", "resets", "current")
        self.now = tuple(v + by.get(n, 0) for n, v in zip(names, self.now))


def test_the_established_table_is_walked_again_only_when_the_tcp_counters_moved(socks):
    """Real sockets and netlink dumps; the host's TCP counters are the test's, so that other tests' connections
    cannot move them. A round with the counters where the last walk left them (plus the probe's own
    connections) reads only the listening table; any other move, another request, a queued connection or
    REWALK_AFTER seconds make it walk."""
    from asrtop_agent.collectors.sockets import REWALK_AFTER

    counters, clock = Counters(), [0.0]
    diag = SockDiag(counters=counters, clock=lambda: clock[0])
    srv = socks.keep(_listener())
    port = srv.getsockname()[1]
    served = [socks.connect(srv)[1]]

    def round_() -> tuple[int, int, list[int], int | None]:
        """(walks made, in flight, stream inodes, listener inode) of one round's read."""
        walks = diag.walks
        got = diag.sample(listen=(port,), established=(port,))
        return diag.walks - walks, got.scan(port)[1], sorted(got.established(port)), got.listeners.get(port)

    def served_now() -> tuple[int, list[int], int]:
        return len(served), sorted(map(_inode, served)), _inode(srv)

    assert round_() == (1, *served_now())
    assert round_() == (0, *served_now())  # nothing moved: the listening table alone
    served.append(socks.connect(srv)[1])  # unmoved counters (the test's): the last walk stands; what they gate
    assert round_() == (0, 1, [_inode(served[0])], _inode(srv))
    counters.move(active=1, passive=1, current=2)  # what the kernel's counters do for that connection
    assert round_() == (1, *served_now())
    diag.own_connections(1, local=True)  # the probe: one connection to this host, closed again
    counters.move(active=1, passive=1)
    assert round_() == (0, *served_now())
    diag.own_connections(1, local=False)  # to another host: only our side moves the counters ...
    counters.move(active=1, passive=1)  # ... but both did: someone else connected too
    assert round_()[0] == 1
    for move in ({"current": -1}, {"resets": 1}, {"fails": 1}, {"passive": 1, "current": 1}):
        counters.move(**move)
        assert (round_()[0], round_()[0]) == (1, 0), move
    walks = diag.walks
    assert diag.sample(established=(port,), client=port).scan(port)[1:] == (2, 2)  # another request ...
    assert diag.walks - walks == 1 and round_()[0] == 1  # ... walks, and so does this one's next
    clock[0] += REWALK_AFTER  # the blind spot (ESTABLISHED -> CLOSE_WAIT moves nothing) is bounded
    assert (round_()[0], round_()[0]) == (1, 0)
    queued = socks.keep(socket.create_connection(("127.0.0.1", port)))  # gets its inode without a move
    counters.move(active=1, passive=1, current=2)
    assert [round_()[:2] for _ in range(2)] == [(1, 3), (1, 3)]  # walked while one has no inode yet
    served.append(socks.keep(srv.accept()[0]))
    assert round_() == (1, *served_now()) and round_() == (0, *served_now())
    assert queued.fileno() >= 0
    counters.now = None  # the counters cannot be read: every round walks
    assert (round_()[0], round_()[0]) == (1, 1)
