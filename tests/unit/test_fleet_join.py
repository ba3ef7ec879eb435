"""The fleet's joins stay linear (issue 17): nodes to balancer servers (fleet.merge), discovered servers to
configured nodes (config.discover_nodes), node lookups by name (FleetSnapshot.node). Counted, not timed: a
scan of every node per server or per lookup shows as n^2 calls here whatever the machine."""

from __future__ import annotations

import dataclasses
import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from asrtop import fleet
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import ClusterConfig, DiscoveryConfig, NodeConfig, discover_nodes
from asrtop.fleet import AgentReading, BalancerReading, FleetSnapshot, NodeView, _node_view, merge

N = 400


def srv(i: int) -> ServerState:
    return ServerState(f"10.0.{i // 256}.{i % 256}:10095", f"10.0.{i // 256}.{i % 256}", 10095, 1, False,
                       AdminState.READY, Health.UP)


def count_calls(monkeypatch, cls, name: str) -> list[int]:
    """Count calls of a method, or computations of a cached_property, of `cls` (or calls of a module's function)."""
    calls = [0]
    attr = cls.__dict__[name]
    func = attr.func if isinstance(attr, functools.cached_property) else attr

    def counted(*a, **k):
        calls[0] += 1
        return func(*a, **k)

    if isinstance(attr, functools.cached_property):
        wrapped = functools.cached_property(counted)
        wrapped.__set_name__(cls, name)
        monkeypatch.setattr(cls, name, wrapped)
    else:
        monkeypatch.setattr(cls, name, counted)
    return calls


def test_discovery_joins_servers_to_nodes_without_a_scan_and_keeps_its_nodes(monkeypatch):
    configured = tuple(NodeConfig(f"gpu-{i}", address=srv(i).endpoint) for i in range(0, N, 2))
    config = ClusterConfig(None, nodes=configured, discovery=DiscoveryConfig("hx", "http://{host}:10860"))
    servers = [srv(i) for i in range(N)]
    matches = count_calls(monkeypatch, NodeConfig, "matches")
    keys = count_calls(monkeypatch, NodeConfig, "endpoint_keys")
    first = discover_nodes(config, servers)
    assert [n.name for n in first[len(configured):]] == [srv(i).name for i in range(1, N, 2)]
    assert first[len(configured)].agent == "http://10.0.0.1:10860"
    assert matches[0] <= len(servers)  # a scan: every node per server, N^2 / 4 here
    again = discover_nodes(config, servers)  # the next refresh: the same discovered nodes, keys not redone
    assert all(a is b for a, b in zip(first, again)) and len(again) == len(first)
    assert keys[0] <= len(first)


def test_node_by_name_is_a_lookup_not_a_scan():
    class Counted(tuple):
        seen = 0

        def __iter__(self):
            for x in super().__iter__():
                Counted.seen += 1
                yield x

    views = Counted(NodeView(f"n{i}", NodeConfig(f"n{i}"), None, {}) for i in range(N))
    snap = FleetSnapshot(0.0, views)
    assert all(snap.node(f"n{i}").name == f"n{i}" for i in range(N))
    assert Counted.seen <= 2 * N  # a scan per lookup: N^2 / 2
    try:
        snap.node("nope")
        raise AssertionError("no KeyError")
    except KeyError:
        pass


def test_merge_matches_each_node_in_a_few_lookups(monkeypatch):
    nodes = [NodeConfig(f"gpu-{i}", address=srv(i).endpoint) for i in range(N)]
    balancers = [BalancerReading("a", "haproxy", tuple(srv(i) for i in range(N))),
                 BalancerReading("b", "nginx", tuple(srv(i) for i in reversed(range(N))))]
    matches = count_calls(monkeypatch, NodeConfig, "matches")
    snap = merge(nodes, {}, balancers, 0.0)
    assert matches[0] == 0 and not snap.notes
    assert all(v.servers["a"].name == v.servers["b"].name == v.config.address for v in snap.nodes)


def test_merge_builds_the_same_node_view_as_its_constructor():
    cfg = NodeConfig("n1", address="10.0.0.1:80", agent="http://10.0.0.1:10860")
    reading = AgentReading("http://10.0.0.1:10860", None, 5.0, "refused")
    args = ("n1", cfg, reading, {"hx": srv(1)}, True, True, "`asrtop backup n1 on` re-creates its server")
    fast, slow = _node_view(*args), NodeView(*args)
    assert fast == slow and type(fast) is NodeView
    assert vars(fast) == vars(slow)  # every field written (a field added to NodeView must be added there too)
    try:
        fast.stale = False  # still frozen
        raise AssertionError("NodeView is writable")
    except dataclasses.FrozenInstanceError:
        pass


def test_a_server_without_a_port_is_found_by_the_index_as_by_a_scan():
    """nginx's `server 10.0.0.7;` or `server unix:/run/asr.sock;`: no port; the node's address written the same."""
    servers = (ServerState("a", "10.0.0.7", None, 1, False, AdminState.READY, Health.UP),
               ServerState("b", "unix:/run/asr.sock", None, 1, False, AdminState.READY, Health.UP),
               ServerState("c", "10.0.0.8", 80, 1, False, AdminState.READY, Health.UP))
    nodes = [NodeConfig("n1", address="10.0.0.7"), NodeConfig("n2", address="unix:/run/asr.sock"),
             NodeConfig("n3", address="10.0.0.8:80"), NodeConfig("n4", address="10.0.0.8")]
    snap = merge(nodes, {}, [BalancerReading("ng", "nginx", servers)], 0.0)
    scan = {n.name: next((s.name for s in servers if n.matches(s)), None) for n in nodes}
    assert {v.name: v.servers["ng"].name if v.servers else None for v in snap.nodes} == scan
    assert scan == {"n1": "a", "n2": "b", "n3": "c", "n4": None}


def test_the_dotted_quad_fast_path_keys_as_ipaddress_does():
    import ipaddress
    import random

    from asrtop.config import endpoint_key

    rng = random.Random(3)
    hosts = ["10.0.0.1", "010.0.0.1", "10.0.0.256", "1.2.3", "1.2.3.4.5", "0.0.0.0", "255.255.255.255", "1.2.3.04",
             "\u0661.2.3.4", "1.2.3.4\n", "[10.0.0.9]", "10.0.0.9."]
    hosts += [".".join(rng.choice(["0", "00", "7", "07", "255", "256", "99", "199", "249"]) for _ in range(4))
              for _ in range(300)]
    for h in hosts:
        bare = h.strip().strip("[]").rstrip(".")
        try:
            want = str(ipaddress.ip_address(bare))
        except ValueError:
            want = bare.lower()
        assert endpoint_key(h, 80) == (want, "80"), h


def test_status_words_each_node_once(monkeypatch):
    """`asrtop status` at 1,000 nodes: each node's state word is worked out once for its row, the MIXED/re-create
    notes and the counts (it was three times)."""
    import asrtop.fleet_wording as wording
    import asrtop.status_report as report

    calls = [0]
    real = wording.state_word

    def counted(node):
        calls[0] += 1
        return real(node)

    monkeypatch.setattr(wording, "state_word", counted)
    monkeypatch.setattr(report, "state_word", counted)
    nodes = [NodeConfig(f"gpu-{i}", address=srv(i).endpoint) for i in range(50)]
    snap = merge(nodes, {}, [BalancerReading("a", "haproxy", tuple(srv(i) for i in range(50)))], 0.0)
    text = report.render_table(snap)
    assert "50 nodes (50 ready)" in text and calls[0] == 50


def scan(nodes, servers) -> dict[str, str | None]:
    """What merge must find: each node's first server NodeConfig.matches, by a scan of every server."""
    return {n.name: next((s.name for s in servers if n.matches(s)), None) for n in nodes}


def test_a_refresh_reuses_a_balancers_keys_and_matches_while_its_servers_names_and_endpoints_stay(monkeypatch):
    """The servers' figures change every refresh, their places rarely: the keys and each node's match are made
    again only when the servers' names or endpoints (or their order) or the configured nodes change."""
    made = count_calls(monkeypatch, fleet._ServerIndex, "_positions")
    keyed = count_calls(monkeypatch, fleet, "_first_positions")
    nodes = [NodeConfig(f"gpu-{i}", address=srv(i).endpoint) for i in range(N)]

    def refresh(servers, nodes=nodes):
        snap = merge(nodes, {}, [BalancerReading("keys-kept", "haproxy", servers)], 0.0)
        assert {v.name: v.servers["keys-kept"].name if v.servers else None for v in snap.nodes} == \
            scan(nodes, servers)
        return snap

    refresh(tuple(srv(i) for i in range(N)))
    assert (keyed[0], made[0]) == (1, 1)
    busier = tuple(dataclasses.replace(srv(i), active_sessions=i, weight=2) for i in range(N))
    snap = refresh(busier)  # new figures, the same places: nothing made again
    assert (keyed[0], made[0]) == (1, 1)
    assert all(v.servers["keys-kept"] is busier[i] for i, v in enumerate(snap.nodes))  # this refresh's servers
    moved = (srv(1), srv(0), *busier[2:])  # two servers swapped: keys and matches again
    snap = refresh(moved)
    assert (keyed[0], made[0]) == (2, 2) and snap.nodes[0].servers["keys-kept"] is moved[1]
    reloaded = [NodeConfig(n.name, address=srv(N - 1 - i).endpoint) for i, n in enumerate(nodes)]
    snap = refresh(moved, reloaded)  # a config load: new NodeConfigs, matched again on the kept keys
    assert (keyed[0], made[0]) == (2, 3) and snap.nodes[0].servers["keys-kept"] is moved[-1]


_hosts = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "localhost", "127.0.0.1"])
_servers = st.lists(st.builds(lambda name, host, port: ServerState(name, host, port, 1, False, AdminState.READY,
                                                                   Health.UP),
                              st.sampled_from(["s1", "s2", "s3", "10.0.0.1:80"]), _hosts,
                              st.sampled_from([80, 81, None])), max_size=6).map(tuple)
_nodes = st.lists(st.builds(lambda i, host, port: NodeConfig(f"n{i}", address=f"{host}:{port}" if port else host),
                            st.integers(0, 3), _hosts, st.sampled_from([80, 81, None])),
                  max_size=4, unique_by=lambda n: n.name)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_servers, st.booleans(), _nodes), min_size=1, max_size=4))
def test_merge_over_refreshes_finds_what_a_scan_finds(refreshes):
    """Whatever the servers and nodes of each refresh (the same ones kept or new), each node gets the server a scan
    of every server finds: kept keys never stand for servers or nodes that changed."""
    fleet._KEPT.pop("prop", None)
    nodes = []
    for servers, same_nodes, new_nodes in refreshes:
        nodes = nodes if same_nodes and nodes else new_nodes
        snap = merge(nodes, {}, [BalancerReading("prop", "nginx", servers)], 0.0)
        assert {v.name: v.servers["prop"].name if v.servers else None for v in snap.nodes} == scan(nodes, servers)
