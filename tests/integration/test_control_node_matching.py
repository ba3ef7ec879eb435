"""Nodes named by address the way an operator writes them, against a real HAProxy (2.8), through the real CLI:
`localhost:P` is the balancer's `127.0.0.1:P`; a node that matches nothing gets the balancer's addresses,
closest first; an empty node name and overlong input get one sane line (exit 2, HAProxy untouched)."""

from __future__ import annotations

import json

from support.balancers import start_backends, start_haproxy
from support.control_cluster import DRAIN_BIT, admin_weight, haproxy_entry, node_entry, raw_servers, run_cli, \
    write_config

NODES = ("n1", "n2", "n3")


def errors(p) -> list[str]:
    return [x for x in p.stderr.splitlines() if x.strip()]


def test_nodes_by_address_the_operator_way(tmp_path, wheel_haproxy_bin):
    with start_backends(NODES) as be, start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()) as hx:
        ports = be.ports
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], [
            node_entry("alpha", f"localhost:{ports['n1']}"),  # HAProxy has 127.0.0.1:P
            node_entry("beta", f"[::1]:{ports['n2']}"),  # HAProxy has 127.0.0.1:P, not ::1: not the same endpoint
            node_entry("gamma", f"127.0.0.1:{ports['n3']}")])
        status = json.loads(run_cli(path, "status", "--json").stdout)
        assert {n["name"]: n["states"] for n in status["nodes"]} == \
            {"alpha": {"hx": "ready"}, "beta": {}, "gamma": {"hx": "ready"}}
        p = run_cli(path, "drain", "alpha")
        assert p.returncode == 0 and p.stdout.splitlines()[0] == "drain alpha: done on hx", p.stderr
        assert int(raw_servers(hx)["n1"]["srv_admin_state"]) & DRAIN_BIT
        before = admin_weight(hx)
        p = run_cli(path, "drain", "beta")
        assert p.returncode == 2 and len(errors(p)) == 1, p.stderr
        line = errors(p)[0]
        assert line.startswith(f"asrtop: beta is not a server on any balancer: looked for server beta or address "
                               f"[::1]:{ports['n2']}; hx has 127.0.0.1:{ports['n2']} (n2), ")  # same port first
        assert all(f"127.0.0.1:{ports[n]} ({n})" in line for n in NODES)
        assert admin_weight(hx) == before


def test_empty_and_overlong_input_one_sane_line(tmp_path, wheel_haproxy_bin):
    long = "x" * 500
    with start_backends(NODES) as be, start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], NODES)
        before = admin_weight(hx)
        cases = {
            ("drain", ""): "asrtop: drain: the node name is empty; name a node of the cluster file (`asrtop status` "
                           "lists them)",
            ("ready", "   "): "asrtop: ready: the node name is empty ('   '); name a node of the cluster file "
                                "(`asrtop status` lists them)",
            ("drain", long): f"asrtop: unknown node '{'x' * 79}… (known: n1, n2, n3)",
            ("weight", "n1", long): f"asrtop: weight must be a whole number, got '{'x' * 79}…",
            ("backup", "n1", long): f"asrtop: error: argument on|off: invalid choice: '{'x' * 80}…' (choose from "
                                    f"'on', 'off') (see `asrtop backup --help`)",
            ("drain", "n1", "--" + long): f"asrtop: error: unrecognized arguments: --{'x' * 78}… (see `asrtop "
                                          f"--help`)",
            (long,): f"asrtop: error: argument COMMAND: invalid choice: '{'x' * 80}…' (choose from 'status', "
                     f"'drain', 'ready', 'maint', 'weight', 'backup', 'recover', 'rollout', 'check', 'export', "
                     f"'demo') (see `asrtop --help`)",
        }
        for args, expected in cases.items():
            p = run_cli(path, *args)
            assert (p.returncode, errors(p)) == (2, [expected]), (args[:2], p.stderr)
        assert admin_weight(hx) == before
