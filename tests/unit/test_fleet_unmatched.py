"""A configured node that matches no server of a reachable balancer is a note (in `status` and the console's
note line) naming the node, what it was matched by and the closest servers; the same endpoint written two
ways (a host name that resolves to the server's address) is matched, resolved once per config load."""

from __future__ import annotations

import socket
import threading

import pytest

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig, parse_config, resolve_addresses
from asrtop.fleet import BalancerReading, merge
from asrtop.status_report import render_table, status_json

NOW = 100.0


def srv(name, host, port):
    return ServerState(name, host, port, 1, False, AdminState.READY, Health.UP)


NGINX = BalancerReading("nginx", "nginx", (srv("127.0.0.1:10861", "127.0.0.1", 10861),
                                           srv("127.0.0.1:10862", "127.0.0.1", 10862),
                                           srv("127.0.0.2:10095", "127.0.0.2", 10095)))


def test_unmatched_node_note_names_what_was_looked_for_and_the_closest_servers():
    nodes = [NodeConfig("node-1", address="127.0.0.1:10861"),  # matches
             NodeConfig("node-2", address="127.0.0.1:10095"),  # the service port; nginx points at the proxy port
             NodeConfig("node-3")]  # no address, and nginx servers have no node names
    snap = merge(nodes, {}, [NGINX], NOW)
    assert snap.node("node-1").servers and not snap.node("node-2").servers
    assert snap.notes == (
        "node-2 matches no server on nginx: looked for server name node-2 or address 127.0.0.1:10095; nginx has "
        "127.0.0.1:10861, 127.0.0.1:10862, 127.0.0.2:10095",
        "node-3 matches no server on nginx: looked for server name node-3 (no address configured); nginx has "
        "127.0.0.1:10861, 127.0.0.1:10862, 127.0.0.2:10095")
    assert "  note: node-2 matches no server on nginx" in render_table(snap)
    assert status_json(snap, "lab")["notes"] == list(snap.notes)


def test_unreachable_balancer_and_many_unmatched_nodes():
    down = BalancerReading("hx", "haproxy", (), "connection refused")
    assert merge([NodeConfig("node-1")], {}, [down], NOW).notes == ()  # nothing to match against: no note
    nodes = [NodeConfig(f"n{i}", address=f"10.0.0.{i}:80") for i in range(1, 9)]
    notes = merge(nodes, {}, [NGINX], NOW).notes
    assert len(notes) == 6 and notes[-1] == "3 more nodes match no server on a balancer: n6, n7, n8"


def test_a_host_name_that_resolves_to_the_servers_address_is_matched():
    name = socket.gethostname()
    try:
        ip = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except OSError:
        pytest.skip(f"this host's name {name!r} does not resolve")
    cfg = parse_config({"nodes": [{"name": "node-1", "address": f"{name}:7001"}]})
    hx = BalancerReading("hx", "haproxy", (srv("asr1", ip, 7001),))
    assert not merge(cfg.nodes, {}, [hx], NOW).node("node-1").servers  # not resolved: no match, a note
    resolved = resolve_addresses(cfg)
    snap = merge(resolved.nodes, {}, [hx], NOW)
    assert snap.node("node-1").servers["hx"].name == "asr1" and snap.notes == ()


def test_resolution_is_bounded_and_a_failure_is_no_match():
    release = threading.Event()
    calls = []

    slow_done = threading.Event()

    def lookup(name):
        calls.append(name)
        if name == "slow.example":
            release.wait(5)
            slow_done.set()
        if name == "bad.example":
            raise socket.gaierror("Name or service not known")
        return ["10.0.0.9"]

    cfg = parse_config({"nodes": [{"name": n, "address": f"{n}.example:80"} for n in ("slow", "bad", "good")]
                       + [{"name": "ip", "address": "10.0.0.1:80"}, {"name": "lo", "address": "localhost:80"}]})
    out = resolve_addresses(cfg, timeout=0.2, lookup=lookup)
    assert not slow_done.is_set()  # it returned while the slow lookup still hung: bounded, not waited out
    release.set()
    assert sorted(calls) == ["bad.example", "good.example", "slow.example"]  # IPs and loopback: no DNS
    assert {n.name: n.resolved for n in out.nodes} == {"slow": (), "bad": (), "good": ("10.0.0.9",), "ip": (),
                                                       "lo": ()}
    hx = BalancerReading("hx", "haproxy", (srv("x", "10.0.0.9", 80),))
    snap = merge(out.nodes, {}, [hx], NOW)
    assert snap.node("good").servers and not snap.node("bad").servers
    assert any(n.startswith("bad matches no server on hx: looked for server name bad or address bad.example:80")
               for n in snap.notes)
