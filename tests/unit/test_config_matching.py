"""Which balancer server is which node (asrtop.config.NodeConfig.matches, endpoint_key) and the fleet's index
of it (asrtop.fleet.merge): the same endpoint however it is written, without DNS, cheap for 1,000 nodes."""

from __future__ import annotations

import random
import socket

import pytest

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig, endpoint_key
from asrtop.fleet import BalancerReading, merge


def srv(address: str, port: int | None = 8000, name: str = "s") -> ServerState:
    return ServerState(name, address, port, 1, False, AdminState.READY, Health.UP)


@pytest.mark.parametrize("configured, balancer, same", [
    ("localhost:8000", "127.0.0.1", True),
    ("localhost:8000", "::1", True),
    ("localhost:8000", "[::1]", True),  # nginx writes the brackets
    ("LocalHost.:8000", "127.0.0.1", True),
    ("ip6-localhost:8000", "::1", True),
    ("127.0.0.1:8000", "localhost", True),
    ("127.0.0.1:08000", "127.0.0.1", True),
    ("[::1]:8000", "::1", True),
    ("[0:0:0:0:0:0:0:1]:8000", "::1", True),
    ("[::ffff:10.0.0.5]:8000", "10.0.0.5", True),
    ("Node-3.example.:8000", "node-3.example", True),
    ("127.0.0.1:8000", "::1", False),  # a service may listen on one of them only
    ("localhost:8000", "127.0.0.2", False),
    ("localhost:8001", "127.0.0.1", False),
    ("10.0.0.5:8000", "10.0.0.50", False),
])
def test_same_endpoint_however_written(configured, balancer, same):
    assert NodeConfig("x", address=configured).matches(srv(balancer)) is same


def test_no_dns_lookup(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("DNS asked")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    endpoint_key.cache_clear()
    assert NodeConfig("x", address="node-9.example:80").matches(srv("node-9.example", 80))
    assert endpoint_key("[::1]", 80) == ("::1", "80") and endpoint_key("x", None) == ("x", "")


def naive(nodes, balancers):
    """What merge must find: the first server each node matches, scanning (the definition)."""
    return {(n.name, b.name): next((s for s in b.servers if n.matches(s)), None) for n in nodes for b in balancers}


def test_the_fleet_index_finds_what_a_scan_finds():
    rng = random.Random(7)
    hosts = ["127.0.0.1", "::1", "localhost", "[::1]", "10.0.0.1", "10.0.0.2", "Node-1.", "node-1"]
    for _ in range(200):
        servers = tuple(srv(rng.choice(hosts), rng.choice([80, 81]), rng.choice(["a", "b", "c", "d"]))
                        for _ in range(rng.randint(0, 6)))
        nodes = [NodeConfig(f"n{i}", server=rng.choice([None, "a", "b", "zz"]),
                            address=rng.choice([None, f"{rng.choice(hosts)}:{rng.choice([80, 81])}"]))
                 for i in range(4)]
        balancers = [BalancerReading("hx", "haproxy", servers), BalancerReading("ng", "nginx", servers[::-1])]
        snap = merge(nodes, {}, balancers, 0.0)
        found = {(v.name, b): v.servers.get(b) for v in snap.nodes for b in ("hx", "ng")}
        assert found == naive(nodes, balancers)
