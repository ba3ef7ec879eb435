"""Security, live: the agent (a real process on loopback) is read-only, binds only where told, and keeps
serving /metrics through oversized, malformed and half-sent requests."""

from __future__ import annotations

import os
import re
import socket
import time

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.agent_proc import agent, simnode, wait_status

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO"]
PATHS = ["/metrics", "/v1/status", "/v1/model", "/healthz", "/", "/v1", "/v1/status/x", "/admin", "/_sim/stats",
         "/_sim/faults", "/%2e%2e/%2e%2e/etc/passwd", "/v1/status?node=x", "/metrics/../v1/status"]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sec-agent")
    model = tmp / "model"
    model.mkdir()
    (model / "model.pt").write_bytes(os.urandom(4096))
    (model / "config.yaml").write_text("model: Fun-ASR-Nano-2512\n")
    with simnode(tmp) as sim, agent(tmp, sim.url, "--model-dir", str(model), "--node", "sec-node",
                                    "--interval", "0.2") as ag:
        wait_status(ag.url, lambda b: b.get("model", {}).get("state") == "ok")
        yield ag, model, sim


def model_fingerprint(model):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in model.iterdir())


def stable_status(url):
    b = httpx.get(url + "/v1/status", timeout=5).json()
    return b["node"], b["model"]["sha256"], b["model"]["files"], b["asr"]["url"], b.get("gpu_source")


def metrics_ok(url) -> bool:
    r = httpx.get(url + "/metrics", timeout=5)
    families = {f.name for f in text_string_to_metric_families(r.text)}
    return r.status_code == 200 and any(n.startswith("asr_") for n in families)


def test_every_method_on_every_endpoint_changes_nothing(node):
    ag, model, sim = node
    files, status = model_fingerprint(model), stable_status(ag.url)
    proc = psutil.Process(ag.pid)
    seen = {}
    with httpx.Client(base_url=ag.url, timeout=5) as c:
        for path in PATHS:
            for method in METHODS:
                r = c.request(method, path, content=b'{"state": "maint", "weight": 0}',
                              headers={"Content-Type": "application/json"})
                seen[(method, path)] = r.status_code
                if method not in ("GET", "HEAD"):
                    assert r.status_code in (400, 404, 405, 501), (method, path, r.status_code)  # refused
                if r.status_code < 400:
                    assert method in ("GET", "HEAD")
    assert seen[("GET", "/v1/status")] == 200 and seen[("POST", "/v1/status")] == 405
    assert seen[("DELETE", "/metrics")] == 405 and seen[("GET", "/admin")] == 404
    assert seen[("GET", "/_sim/stats")] == 404  # the agent does not pass through to the node
    assert model_fingerprint(model) == files and stable_status(ag.url) == status
    assert proc.is_running() and not [p for p in proc.children(recursive=True)]  # nothing spawned


def other_addresses() -> list[tuple[int, str]]:
    """Addresses of this machine that are not 127.0.0.1: the rest of 127/8, ::1, every NIC address."""
    addrs = [(socket.AF_INET, "127.0.0.2"), (socket.AF_INET, "127.1.2.3")]
    if socket.has_ipv6:
        addrs.append((socket.AF_INET6, "::1"))
    for nic in psutil.net_if_addrs().values():
        for a in nic:
            if a.family == socket.AF_INET and a.address != "127.0.0.1":
                addrs.append((socket.AF_INET, a.address))
    return addrs


def test_binds_only_where_told(node):
    ag, _, _ = node
    port = int(ag.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    reached = []
    for family, addr in other_addresses():  # all local: nothing leaves the machine
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect((addr, port))
                reached.append(addr)
            except OSError:
                pass
    assert reached == []
    conns = [c for c in psutil.Process(ag.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert {c.laddr.ip for c in conns} == {"127.0.0.1"}


def raw(url: str, payload: bytes, read: bool = True) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        if not read:
            return b""
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def refused(answer: bytes) -> bool:
    return re.match(rb"HTTP/1\.[01] (4\d\d|501|505) ", answer) is not None


def test_oversized_and_malformed_requests_are_refused(node):
    ag, _, _ = node
    big_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    assert raw(ag.url, big_header).split(b" ", 2)[1] in (b"400", b"431")
    long_url = b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw(ag.url, long_url).split(b" ", 2)[1] in (b"400", b"414")
    many = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(5000)) + b"\r\n"
    assert raw(ag.url, many).split(b" ", 2)[1] in (b"400", b"431")
    for i in range(200):
        junk = os.urandom(64 + i * 13)
        answer = raw(ag.url, junk)
        assert answer == b"" or refused(answer), answer[:80]
    for odd in (b"\r\n\r\n\r\n", b"GET /metrics HTTP/9.9\r\n\r\n", b"GET\x00/metrics HTTP/1.1\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        answer = raw(ag.url, odd)
        assert answer == b"" or refused(answer) or answer.startswith(b"HTTP/1.1 200"), (odd, answer[:80])
    assert metrics_ok(ag.url)


def test_half_sent_requests_do_not_starve_scrapes(node):
    """Slowloris: 200 connections each holding a half-sent request; scrapes keep being answered."""
    ag, _, _ = node
    host, port = ag.url.removeprefix("http://").split(":")
    held = []
    try:
        for i in range(200):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * (i % 7))
            held.append(s)
        for _ in range(3):  # keep trickling a byte: a slowloris client never finishes its headers
            for s in held:
                try:
                    s.sendall(b"z")
                except OSError:
                    pass
            for _ in range(5):
                assert metrics_ok(ag.url)
                assert httpx.get(ag.url + "/v1/status", timeout=5).json()["node"] == "sec-node"
            time.sleep(0.1)
        # a POST announcing a huge body it never sends is refused before the body is read
        r = raw(ag.url, b"POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        assert r.startswith(b"HTTP/1.1 405") or r.startswith(b"HTTP/1.1 413"), r[:80]
    finally:
        for s in held:
            s.close()
    assert metrics_ok(ag.url)
    deadline = time.monotonic() + 10  # bounded wait for the agent to see the 200 closes
    while psutil.Process(ag.pid).num_fds() >= 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert psutil.Process(ag.pid).num_fds() < 200  # the held connections were released
