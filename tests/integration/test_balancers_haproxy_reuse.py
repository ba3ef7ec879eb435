"""A server re-created by a backup toggle reuses backend connections like an untouched one (HAProxy 2.6, 2.8).

HAProxy 2.6's `add server` gives a dynamic server `pool-max-conn 0` and `pool-purge-delay 0` (no idle
connection is ever kept) where a configured server has -1 and 5s; 2.8 gives the configured defaults. asrtop
carries both on every version (asrtop.balancers.haproxy_pool). Measured: backends that count the TCP
connections they accept, N requests through HAProxy (`http-reuse always`), each on a new client connection.
"""

from __future__ import annotations

import socket

import pytest

from asrtop.balancers.base import UnsupportedAction
from asrtop.balancers.haproxy import HAProxyBalancer
from asrtop.balancers.haproxy_backup import Plan
from support.balancers import start_haproxy, wait_until
from support.conncount import CountingBackends

REQUESTS = 60  # through HAProxy, round robin over n1 and n2: 30 each


@pytest.fixture(params=["wheel_haproxy_bin", "debian_haproxy_bin"], ids=["haproxy2.8", "haproxy2.6"])
def haproxy_bin(request) -> str:
    return request.getfixturevalue(request.param)


def one_request(port: int) -> str:
    """GET / on a new client connection (HTTP/1.1, keep-alive asked), read the answer, close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 2:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def new_connections(be: CountingBackends, hx, n: int) -> dict[str, int]:
    before = be.counts()
    answered = [one_request(hx.frontend_port) for _ in range(n)]
    after = be.counts()
    assert {name: after[name][1] - before[name][1] for name in be.names} == \
        {name: answered.count(name) for name in be.names}
    return {name: after[name][0] - before[name][0] for name in be.names}


def pool_row(hx, server: str) -> dict[str, str]:
    """`show servers conn` row of one server: purge_delay, idle_lim, ... by header name."""
    lines = [x for x in hx.command(f"show servers conn {hx.backend}").splitlines() if x.strip()]
    header = lines[0].lstrip("# ").split()
    row = next(x.split() for x in lines[1:] if x.split()[0] == f"{hx.backend}/{server}")
    return dict(zip(header, row))


def test_recreated_server_reuses_connections_like_the_others(haproxy_bin, tmp_path):
    with CountingBackends(["n1", "n2"]) as be, \
            start_haproxy(haproxy_bin, tmp_path, be.specs(), balance="roundrobin",
                          backend_extra=["http-reuse always"]) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        new_connections(be, hx, 10)  # warm up: each server's idle pool holds a connection
        b.set_backup("n2", True)
        b.set_backup("n2", False)  # re-created twice: a primary again, as a dynamic server
        assert [(s.name, s.backup) for s in b.servers()] == [("n1", False), ("n2", False)]
        opened = new_connections(be, hx, REQUESTS)
        # an untouched server opens a handful (a thread's first, one per concurrent use); without the
        # carried pool settings 2.6's re-created n2 opened one per request (30 of 30)
        assert opened["n1"] <= 5, opened
        assert opened["n2"] <= 5, opened
        assert (pool_row(hx, "n2")["idle_lim"], pool_row(hx, "n2")["purge_delay"]) == \
            (pool_row(hx, "n1")["idle_lim"], pool_row(hx, "n1")["purge_delay"]) == ("-1", "5000")
        assert "pool-max-conn -1 pool-purge-delay 5s" in Plan(b, "n2").add_command("n2", True)


def test_the_probe_checks_the_pool_settings(haproxy_bin, tmp_path, monkeypatch):
    """Without the carried words, 2.6 makes the probe with pool-max-conn 0: refused before any delete."""
    import asrtop.balancers.haproxy_backup as hb

    monkeypatch.setattr(hb, "pool_words", lambda words: [])
    with CountingBackends(["n1", "n2"]) as be, start_haproxy(haproxy_bin, tmp_path, be.specs()) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        version = next(x.split(":", 1)[1].strip() for x in hx.command("show info").splitlines()
                       if x.startswith("Version:"))
        if version.startswith("2.6"):
            with pytest.raises(UnsupportedAction, match=r"probe server pool-max-conn 0 where the line asks for -1"):
                b.set_backup("n2", True)
            assert [(s.name, s.backup) for s in b.servers()] == [("n1", False), ("n2", False)]  # no probe left
        else:  # 2.8's add server already gives the configured defaults
            b.set_backup("n2", True)
            assert [(s.name, s.backup) for s in b.servers()] == [("n1", False), ("n2", True)]


def test_pool_settings_from_the_config_are_carried(haproxy_bin, tmp_path):
    with CountingBackends(["n1", "n2"]) as be, \
            start_haproxy(haproxy_bin, tmp_path, be.specs(n2={"extra": "pool-max-conn 7"}), balance="roundrobin",
                          backend_extra=["http-reuse always", "default-server pool-purge-delay 9s"]) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        assert wait_until(lambda: pool_row(hx, "n2")["idle_lim"] == "7")
        b.set_backup("n2", True)
        row = pool_row(hx, "n2")
        assert (row["idle_lim"], row["purge_delay"]) == ("7", "9000")
        assert pool_row(hx, "n1")["purge_delay"] == "9000"
        # the probe server is gone, and the line names each setting once
        cmd = Plan(b, "n2").add_command("n2", False)
        assert cmd.count("pool-max-conn") == 1 and cmd.count("pool-purge-delay") == 1
        assert [s.name for s in b.servers()] == ["n1", "n2"]
