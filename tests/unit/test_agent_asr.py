"""ASR collector: health probe on a real loopback server, connection table, process facts, proxy counters."""

from __future__ import annotations

import contextlib
import os
import socket
from types import SimpleNamespace

import pytest
from aiohttp import web

from support.netutil import free_port
from asrtop_agent.collectors.asr import AsrCollector, python_env
from asrtop_agent.collectors.sockets import PortSockets, ProcNetTcp, SockDiag
from asrtop_agent.collectors.host import HostCollector
from asrtop_agent.collectors.requests import RequestCounters, audio_seconds


class FakeProcess:
    def __init__(self, pid):
        self.pid = pid
        self.cpu = iter([0.0, 35.0, 120.0])

    @contextlib.contextmanager
    def oneshot(self):
        yield

    def cpu_percent(self, interval=None):
        return next(self.cpu)

    def memory_info(self):
        return SimpleNamespace(rss=512 * 1024 * 1024)

    def environ(self):
        return {}

    def cmdline(self):
        return ["python3"]

    def exe(self):
        raise PermissionError("no access")


class FakePsutil:
    Process = FakeProcess


class FakeConns:
    def __init__(self, inode=777, server=3, client=0, owner=4242):
        self.inode, self.server, self.client, self.owner = inode, server, client, owner
        self.owner_calls = 0

    def available(self):
        return True

    def sample(self, listen=(), established=(), client=None):
        return PortSockets({p: self.inode for p in listen if self.inode is not None},
                           {p: [0] * self.server for p in established},
                           {client: self.client} if client is not None else {})

    def owner_of(self, inode):
        self.owner_calls += 1
        return self.owner

    def own_connections(self, count, local):
        pass


@pytest.fixture
async def health_server():
    state = {"status": 200}

    async def health(request):
        return web.json_response({"status": "ok"}, status=state["status"])

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", state
    await runner.cleanup()


async def test_probe_up_process_facts_and_connection_in_flight(health_server):
    url, state = health_server
    conns = FakeConns()
    col = AsrCollector(url, "/health", psutil_mod=FakePsutil, connections=conns)
    try:
        first = await col.collect()
        assert first.up is True and first.error is None and first.probe_latency_seconds > 0  # a reading, not a budget
        assert first.pid == 4242 and first.process_rss_bytes == 512 * 1024 * 1024
        assert first.process_cpu_ratio is None  # nothing to compare with on the first round
        assert first.in_flight == 3 and first.in_flight_source == "connections" and first.requests is None
        second = await col.collect()
        assert second.process_cpu_ratio == 0.35
        assert conns.owner_calls == 1  # PID looked up once per listening socket
        conns.inode = 778  # the service restarted
        await col.collect()
        assert conns.owner_calls == 2
        state["status"] = 503
        down = await col.collect()
        assert down.up is False and "503" in down.error and down.probe_latency_seconds is not None
    finally:
        await col.close()


async def test_unreachable_asr_is_down_with_reason_and_no_process():
    port = free_port()
    col = AsrCollector(f"http://127.0.0.1:{port}", psutil_mod=FakePsutil,
                       connections=FakeConns(inode=None, server=0), probe_timeout=1.0)
    try:
        snap = await col.collect()
    finally:
        await col.close()
    assert snap.up is False and snap.probe_latency_seconds is None and str(port) in snap.error
    assert snap.pid is None and snap.process_rss_bytes is None and "nothing listens" in snap.process_error


async def test_invisible_owner_is_absent_with_reason(health_server):
    url, _ = health_server
    col = AsrCollector(url, psutil_mod=FakePsutil, connections=FakeConns(owner=None))
    try:
        snap = await col.collect()
    finally:
        await col.close()
    assert snap.up is True and snap.pid is None and snap.process_cpu_ratio is None
    assert "not visible" in snap.process_error and snap.in_flight == 3


async def test_proxy_counters_replace_connection_count(health_server):
    url, _ = health_server
    counters = RequestCounters()
    counters.started()
    counters.started()
    counters.finished(200, 0.3, audio=12.5)
    col = AsrCollector(url, psutil_mod=FakePsutil, connections=FakeConns(server=40), counters=counters)
    try:
        snap = await col.collect()
    finally:
        await col.close()
    assert snap.in_flight == 1 and snap.in_flight_source == "proxy"
    assert snap.requests.total == 1 and snap.requests.audio_seconds_total == 12.5


@pytest.mark.parametrize("table_cls", [SockDiag, ProcNetTcp])
def test_socket_tables_on_the_real_kernel(table_cls):
    table = table_cls()
    assert table.available()  # Linux: both work (sock_diag needs kernel >= 4.16)
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::", 0))  # dual-stack listener: IPv4 clients show up as v4-mapped tcp6 sockets
    srv.listen()
    port = srv.getsockname()[1]
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    clients.append(socket.create_connection(("127.0.0.1", other.getsockname()[1])))  # not ours
    accepted = [srv.accept()[0] for _ in range(3)] + [other.accept()[0]]
    try:
        inode, server, _ = table.scan(port)
        assert inode is not None and server == 3
        assert table.owner_of(inode) == os.getpid()
        accepted[0].close()
        clients[0].close()
        assert table.scan(port)[1] == 2
        # nothing listens here any more (as with a remote ASR): the client side of connections to the port counts
        srv.close()
        inode, _, client = table.scan(port)
        assert inode is None and client == 2
    finally:
        for s in clients + accepted + [srv, other]:
            s.close()


def test_proc_net_tcp_parses_a_recorded_table(tmp_path):
    (tmp_path / "net").mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    rows = [
        "   0: 0100007F:1EB4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0 100 0 0 10 0\n",
        "   1: 0100007F:1EB4 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5601 1 0 20 4 30 10 -1\n",
        "   2: 0100007F:1EB4 0100007F:D432 01 00000000:00000000 00:00000000 00000000     0        0 5602 1 0 20 4 30 10 -1\n",
        "   3: 0100007F:D431 0100007F:1EB4 01 00000000:00000000 00:00000000 00000000     0        0 5603 1 0 20 4 30 10 -1\n",
        "   4: 0100007F:1F90 0100007F:D433 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0 0 0 0 0 0\n",
    ]
    (tmp_path / "net" / "tcp").write_text(header + "".join(rows))
    (tmp_path / "net" / "tcp6").write_text(header)
    (tmp_path / "4242" / "fd").mkdir(parents=True)
    os.symlink("socket:[5555]", tmp_path / "4242" / "fd" / "7")
    table = ProcNetTcp(str(tmp_path))
    assert table.scan(0x1EB4) == (5555, 2, 1)  # TIME_WAIT (06) not counted
    assert table.owner_of(5555) == 4242 and table.owner_of(1) is None


def test_python_env_reads_a_venv(tmp_path):
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.10" / "site-packages"
    (site / "funasr-1.2.7.dist-info").mkdir(parents=True)
    (site / "torch-2.3.1+cu121.dist-info").mkdir()
    (site / "requests-2.0.dist-info").mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.10.14\n")
    version, packages = python_env([str(venv / "bin" / "python"), "/usr/bin/python3.10"])
    assert version == "3.10.14"
    assert dict(packages) == {"funasr": "1.2.7", "torch": "2.3.1+cu121"}
    assert python_env([]) == (None, ())


def test_python_env_of_a_venv_without_pyvenv_cfg_and_debian_dist_packages(tmp_path):
    """Seen on a real GPU host: a venv without pyvenv.cfg whose python resolves to /usr/bin/python3.12 gave
    python "3" (from /usr/lib/python3/dist-packages) and no packages."""
    venv, usr = tmp_path / "opt" / ".venv", tmp_path / "usr"
    (venv / "lib" / "python3.12" / "site-packages" / "torch-2.11.0+cu130.dist-info").mkdir(parents=True)
    (usr / "lib" / "python3" / "dist-packages" / "funasr-0.1.dist-info").mkdir(parents=True)
    version, packages = python_env([str(venv / "bin" / "python3"), str(usr / "bin" / "python3.12")])
    assert (version, dict(packages)) == ("3.12", {"torch": "2.11.0+cu130"})
    version, packages = python_env([str(usr / "bin" / "python3.12")])  # the system's own
    assert (version, dict(packages)) == ("3.12", {"funasr": "0.1"})


def test_request_quantiles_follow_the_buckets():
    c = RequestCounters()
    for seconds in [0.05] * 50 + [0.3] * 45 + [4.0] * 5:
        c.started()
        c.finished(200, seconds)
    r = c.snapshot()
    assert r.total == 100 and r.latency_count == 100 and dict(r.by_class) == {"2xx": 100}
    assert r.quantile(0.5) == pytest.approx(0.1)  # the 50th of 50 in the first bucket: its upper bound
    assert 0.25 < r.quantile(0.95) <= 0.5
    assert r.cumulative()[-1] == ("+Inf", 100)
    c.started()
    c.finished(None, 1000.0)
    assert dict(c.snapshot().by_class)["aborted"] == 1
    assert c.snapshot().quantile(1.0) == 300.0


def test_audio_seconds_only_from_a_json_duration():
    assert audio_seconds(b'{"text": "hi", "duration": 12.5}') == 12.5
    assert audio_seconds(b'{"text": "hi"}') is None
    assert audio_seconds(b"not json") is None
    assert audio_seconds(b'{"duration": true}') is None
    assert audio_seconds(b"[1, 2]") is None


def test_host_collector_reads_psutil_and_reports_failures():
    ok = SimpleNamespace(cpu_percent=lambda interval=None: 50.0, getloadavg=lambda: (1.0, 0.5, 0.25),
                         virtual_memory=lambda: SimpleNamespace(total=100, available=30))
    h = HostCollector(ok).collect()
    assert (h.cpu_ratio, h.load1, h.load5, h.load15, h.memory_used_bytes, h.memory_total_bytes, h.error) == \
        (0.5, 1.0, 0.5, 0.25, 70, 100, None)

    def boom(*a, **k):
        raise OSError("no /proc/loadavg")

    broken = SimpleNamespace(cpu_percent=lambda interval=None: 10.0, getloadavg=boom,
                             virtual_memory=lambda: SimpleNamespace(total=100, available=30))
    h = HostCollector(broken).collect()
    assert h.load1 is None and h.cpu_ratio == 0.1 and "loadavg" in h.error


async def test_unreadable_process_keeps_pid_without_relookup(health_server):
    class Denied(FakeProcess):
        def memory_info(self):
            raise PermissionError("denied")

    url, _ = health_server
    conns = FakeConns()
    col = AsrCollector(url, psutil_mod=SimpleNamespace(Process=Denied), connections=conns)
    try:
        for _ in range(3):
            snap = await col.collect()
    finally:
        await col.close()
    assert snap.pid == 4242 and snap.process_rss_bytes is None and "not readable" in snap.process_error
    assert conns.owner_calls == 1


async def test_vanished_process_is_looked_up_again(health_server):
    class Gone(FakeProcess):
        def cpu_percent(self, interval=None):
            raise ProcessLookupError(self.pid)

    url, _ = health_server
    conns = FakeConns()
    col = AsrCollector(url, psutil_mod=SimpleNamespace(Process=Gone), connections=conns)
    try:
        snap = await col.collect()
        assert snap.pid is None and "vanished" in snap.process_error
        await col.collect()
    finally:
        await col.close()
    assert conns.owner_calls == 2


async def test_psutil_fallback_without_proc(health_server):
    url, _ = health_server
    port = int(url.rsplit(":", 1)[1])
    addr = lambda p: SimpleNamespace(port=p)  # noqa: E731
    conns = [SimpleNamespace(status="LISTEN", laddr=addr(port), pid=4242),
             SimpleNamespace(status="ESTABLISHED", laddr=addr(port), pid=4242),
             SimpleNamespace(status="ESTABLISHED", laddr=addr(port + 1), pid=1)]

    class NoTable(FakeConns):
        def available(self):
            return False

    fake = SimpleNamespace(Process=FakeProcess, net_connections=lambda kind: conns)
    col = AsrCollector(url, psutil_mod=fake, connections=NoTable())
    try:
        snap = await col.collect()
        assert snap.pid == 4242 and snap.in_flight == 1 and snap.process_rss_bytes == 512 * 1024 * 1024

        def denied(kind):
            raise PermissionError("needs root on this OS")

        fake.net_connections = denied
        snap = await col.collect()
    finally:
        await col.close()
    assert snap.pid is None and snap.in_flight is None and "not readable" in snap.process_error
    assert snap.in_flight_source is None
