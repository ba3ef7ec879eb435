"""The real `asrtop` CLI as a subprocess against real HAProxy processes and HTTP backends on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
import pytest

from support.balancers import start_backends, start_haproxy
from support.control_cluster import (DRAIN_BIT, admin_weight, asrtop_argv, haproxy_entry, haproxy_pair, raw_servers,
                                     run_cli, write_config)

NODES = ("n1", "n2", "n3")


@pytest.fixture
def pair(tmp_path, wheel_haproxy_bin, debian_haproxy_bin):
    with haproxy_pair(tmp_path, wheel_haproxy_bin, debian_haproxy_bin, NODES) as pair:
        yield pair


async def test_drain_wait_with_50_requests_in_flight(pair):
    """None of 50 in-flight requests fails, and `drain --wait` returns only after n1's last one finished."""
    be, a, b, path = pair
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def request(i: int, seconds: float) -> tuple[int, str, float]:
            r = await client.get((a, b)[i % 2].url(f"/slow?s={seconds}"))
            return r.status_code, r.text, time.monotonic()

        # 1.5 .. 3.75 s each, over both balancers (leastconn spreads them over the three nodes)
        slow = [asyncio.create_task(request(i, 1.5 + (i % 10) * 0.25)) for i in range(50)]
        deadline = time.monotonic() + 10
        while sum(be.in_flight.values()) < 50:
            assert time.monotonic() < deadline, f"requests never all in flight: {be.in_flight}"
            await asyncio.sleep(0.02)
        on_n1 = be.in_flight["n1"]
        assert on_n1 >= 5, be.in_flight
        proc = await asyncio.create_subprocess_exec(
            *asrtop_argv(path, "drain", "n1", "--wait", "--timeout", "30"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        # While it drains, new requests keep coming: none may land on n1 once both balancers say drain.
        while not all(int(raw_servers(hx)["n1"]["srv_admin_state"]) & DRAIN_BIT for hx in (a, b)):
            assert proc.returncode is None or proc.returncode == 0
            await asyncio.sleep(0.02)
        fresh = [await request(i, 0) for i in range(12)]
        out, err = await proc.communicate()
        cli_done = time.monotonic()
        results = await asyncio.gather(*slow)
    assert proc.returncode == 0, err.decode()
    assert all(code == 200 for code, _, _ in results), results
    assert all(code == 200 and text != "n1" for code, text, _ in fresh), fresh
    n1_finished = [t for _, text, t in results if text == "n1"]
    assert len(n1_finished) == on_n1
    assert cli_done >= max(n1_finished)  # it waited for the very last one
    lines = [x for x in out.decode().splitlines() if not x.startswith("  note: ")]  # reload notes: tested apart
    assert lines[0] == "drain n1: done on hx-a, hx-b"
    assert lines[-1] == "n1 is empty: safe to upgrade"
    counts = [int(ln.split()[1]) for ln in lines[1:-1]]  # "n1: 7 in flight, waited 2s", one per change
    assert counts[0] > 0 and counts[-1] == 0
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)
    assert err.decode() == ""


async def test_drain_wait_times_out_with_one_line(tmp_path, wheel_haproxy_bin):
    with start_backends(("n1", "n2")) as be, start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], ("n1", "n2"))
        async with httpx.AsyncClient(timeout=30) as client:
            long = [asyncio.create_task(client.get(hx.url("/slow?s=6"))) for _ in range(2)]
            while sum(be.in_flight.values()) < 2:
                await asyncio.sleep(0.02)
            proc = await asyncio.create_subprocess_exec(
                *asrtop_argv(path, "drain", "n1", "--wait", "--timeout", "1"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            for t in long:
                assert (await t).status_code == 200
    assert proc.returncode == 6
    assert err.decode().splitlines() == ["asrtop: timed out after 1s: n1 still has 1 request(s) in flight"]


@pytest.mark.parametrize("args,code,needle", [
    (("drain", "n9"), 2, "unknown node 'n9' (known: n1, n2, n3)"),
    (("weight", "n1", "-1"), 2, "weight -1 is out of range"),
    (("weight", "n1", "300"), 2, "weight 300 is out of range"),
    (("weight", "n1", "abc"), 2, "weight must be a whole number, got 'abc'"),
    (("backup", "n1", "maybe"), 2, "invalid choice: 'maybe'"),
    (("drain",), 2, "the following arguments are required: NODE"),
    (("drain", "n1", "--wait", "--timeout", "0"), 2, "--timeout must be > 0 seconds"),
])
def test_bad_input_one_line_and_exit_code(pair, args, code, needle):
    _, a, b, path = pair
    before = (admin_weight(a), admin_weight(b))
    p = run_cli(path, *args)
    assert p.returncode == code, p.stderr
    assert len(p.stderr.splitlines()) == 1 and needle in p.stderr and p.stderr.startswith("asrtop: ")
    assert p.stdout == ""
    assert (admin_weight(a), admin_weight(b)) == before


async def test_an_action_behind_another_waits_and_says_so_on_stderr(pair, tmp_path):
    """Another asrtop's action holds the lock (this process, pid written): the CLI says it waits, sends
    nothing meanwhile, and goes through once the lock is free."""
    from asrtop.control.oplock import action_lock, lock_path

    _, a, b, path = pair
    lock = lock_path(tmp_path / "audit.jsonl")
    async with action_lock(lock):
        proc = await asyncio.create_subprocess_exec(*asrtop_argv(path, "weight", "n2", "7"),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line.decode() == (f"asrtop: waiting for another asrtop action to finish (pid {os.getpid()} holds "
                                 f"{lock}; nothing sent yet, giving up after 90 s)\n")
        await asyncio.sleep(0.3)
        assert proc.returncode is None and admin_weight(a)["n2"][1] == admin_weight(b)["n2"][1] == "1"
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and err == b"", err.decode()
    assert out.decode().startswith("weight n2 7: done on hx-a, hx-b")
    assert admin_weight(a)["n2"][1] == admin_weight(b)["n2"][1] == "7"


def test_unreachable_and_refusing_balancers(pair, tmp_path):
    _, a, b, _ = pair
    before = admin_weight(a)
    gone = write_config(tmp_path, [haproxy_entry("hx-x", str(tmp_path / "nope.sock"))], NODES, name="gone.toml")
    p = run_cli(gone, "drain", "n1")
    assert p.returncode == 5 and len(p.stderr.splitlines()) == 1 and "nope.sock" in p.stderr
    wrong = write_config(tmp_path, [haproxy_entry("hx-a", a.socket, "nosuch")], NODES, name="wrong.toml")
    p = run_cli(wrong, "maint", "n1")
    assert p.returncode == 7 and len(p.stderr.splitlines()) == 1 and "no backend 'nosuch'" in p.stderr
    assert admin_weight(a) == before
    b.stop()  # HA pair with one member down: the change lands on the other, and the CLI says so
    mixed = write_config(tmp_path, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)], NODES,
                         name="mixed.toml")
    p = run_cli(mixed, "drain", "n2")
    assert p.returncode == 4 and len(p.stderr.splitlines()) == 1
    assert "took on hx-a" in p.stderr and "NOT on hx-b" in p.stderr
    assert int(raw_servers(a)["n2"]["srv_admin_state"]) & DRAIN_BIT


def test_guardrail_force_read_only_and_dry_run(pair, tmp_path):
    _, a, b, path = pair
    assert run_cli(path, "drain", "n1").returncode == 0
    assert run_cli(path, "maint", "n2").returncode == 0
    before = (admin_weight(a), admin_weight(b))
    p = run_cli(path, "drain", "n3")
    assert p.returncode == 3 and "min_ready" in p.stderr and len(p.stderr.splitlines()) == 1
    p = run_cli(path, "drain", "n3", "--dry-run")
    assert p.returncode == 3  # a dry run says it would be refused
    p = subprocess_read_only(path, "ready", "n2")
    assert p.returncode == 3 and "read-only" in p.stderr
    assert (admin_weight(a), admin_weight(b)) == before
    p = run_cli(path, "ready", "n1", "--dry-run")
    assert p.returncode == 0
    assert p.stdout.splitlines() == [
        "dry run, nothing changed: ready n1: n1 carries 0 in-flight requests; 1 of 3 primaries ready now",
        "  hx-a: state drain -> ready", "  hx-b: state drain -> ready",
        *(f"  note: {h}: ready is lost on a reload: no server-state-file configured (README: Balancers)"
          for h in ("hx-a", "hx-b"))]
    assert (admin_weight(a), admin_weight(b)) == before
    p = run_cli(path, "drain", "n3", "--force")
    assert p.returncode == 0 and p.stdout.splitlines()[0] == "drain n3: done on hx-a, hx-b (forced)"
    audit = [json.loads(ln) for ln in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["action"], r["node"], r["outcome"], r["force"]) for r in audit] == [
        ("drain", "n1", "done", False), ("maint", "n2", "done", False), ("drain", "n3", "refused", False),
        ("drain", "n3", "refused", False), ("ready", "n2", "refused", False), ("ready", "n1", "dry-run", False),
        ("drain", "n3", "done", True)]
    assert [r["forced"] for r in audit][-2:] == [False, True]  # --force overrode min_ready on the last one


def subprocess_read_only(path, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "asrtop.cli", "--read-only", "--config", str(path), *args],
                          capture_output=True, text=True, timeout=60)


def test_status_table_and_json(pair):
    be, a, b, path = pair
    a.command("set server asr/n2 state drain")  # hx-a drains n2, hx-b does not: MIXED
    a.command("set server asr/n3 weight 4")
    b.command("set server asr/n3 weight 4")
    p = run_cli(path, "status")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "STATE", "WEIGHT"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:4]}
    assert rows["n1"][1:3] == ["ready", "1"] and rows["n2"][1] == "MIXED" and rows["n3"][2] == "4"
    assert "  n2: hx-a drain, hx-b ready" in lines
    assert lines[-1] == "3 nodes (2 ready, 1 MIXED); in flight 0; balancers 2/2 reachable"
    p = run_cli(path, "status", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["schema"] == 1 and doc["cluster"] == "test"
    assert [(x["name"], x["reachable"], x["servers"]) for x in doc["balancers"]] == [
        ("hx-a", True, 3), ("hx-b", True, 3)]
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["n2"]["state"] == "MIXED" and nodes["n2"]["states"] == {"hx-a": "drain", "hx-b": "ready"}
    assert nodes["n3"]["weight"] == 4 and nodes["n1"]["in_flight"] == 0 and nodes["n1"]["backup"] is False
    # HAProxy counts every server's requests: its figures, not an agent's, and no `*` legend in the table
    assert (nodes["n1"]["requests_source"], nodes["n1"]["request_rate"]) == ("balancer", 0.0)
    assert not any(ln.startswith("  *:") for ln in lines)
    assert doc["summary"]["states"]["MIXED"] == 1 and doc["summary"]["nodes"] == 3
    b.stop()
    p = run_cli(path, "status")  # one of the pair stopped: the table still prints, and the exit says so
    assert p.returncode == 5 and p.stderr.startswith("asrtop: 1 of 2 balancers could not be read: hx-b: "), p.stderr
    assert "  hx-b: UNREACHABLE: " in p.stdout and "n1" in p.stdout
    a.stop()
    p = run_cli(path, "status")
    assert p.returncode == 5 and len(p.stderr.splitlines()) == 1 and "no balancer could be read" in p.stderr


def test_status_into_a_reader_that_went_away_stops_quietly(pair):
    """`asrtop status | head -1`: the reader closes the pipe; asrtop stops as a tool killed by SIGPIPE would
    (141, nothing on stderr), not with an "unexpected error" line."""
    import subprocess

    *_, path = pair
    p = subprocess.Popen(asrtop_argv(path, "status"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # long before asrtop has read the fleet
    err = p.stderr.read()
    assert (p.wait(30), err) == (141, b"")


def test_config_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[cluster]\nmin_ready = "two"\n[[balancers]]\nname = "hx"\nkind = "haproxy"\n')
    p = run_cli(bad, "status")
    assert p.returncode == 2 and p.stderr.splitlines() == [
        f"asrtop: {bad}: cluster.min_ready: must be int, got str 'two'"]
    p = run_cli(tmp_path / "missing.toml", "drain", "n1")
    assert p.returncode == 2 and "config file not found" in p.stderr and len(p.stderr.splitlines()) == 1
