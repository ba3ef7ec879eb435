"""Parsers of HAProxy Runtime API output, on text captured from real HAProxy 2.8 and 2.6.

Fixtures: tests/fixtures/haproxy/ (regenerate with capture.py there; its docstring lists the setup).
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

from asrtop.balancers.base import (
    AdminState,
    ServerState,
    BalancerRefused,
    BalancerUnreachable,
    Health,
    ReportsStartTime,
    parse_socket,
    validate_weight,
)
from asrtop.balancers.haproxy import HAProxyBalancer
from asrtop.balancers.haproxy_stat import (
    CHK_ST_CONFIGURED,
    ParseError,
    admin_state,
    agent,
    health,
    build_server_states,
    parse_servers_state,
    SERVER_COLUMNS,
    STATE_COLUMNS,
    backend_rows,
    parse_show_stat,
    server_stat_rows,
    server_state,
    server_state_rows,
    split_addr,
    start_time,
    to_int,
)

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"
VERSIONS = ["2.8", "2.6"]


def load(tag: str) -> tuple[str, str]:
    return (FIX / f"show_stat_{tag}.csv").read_text(), (FIX / f"servers_state_{tag}.txt").read_text()


def state_ports(state_text: str) -> dict[str, int]:
    """srv_name -> srv_port, read independently of the code under test."""
    lines = [x for x in state_text.splitlines() if x.strip()]
    header = lines[1][2:].split()
    return {dict(zip(header, x.split()))["srv_name"]: int(dict(zip(header, x.split()))["srv_port"])
            for x in lines[2:]}


@pytest.mark.parametrize("tag", VERSIONS)
def test_captured_backend_reads_as_set_up(tag):
    stat, state = load(tag)
    servers = {s.name: s for s in build_server_states(stat, state, "asr")}
    assert list(servers) == ["n1", "n2", "n3", "n4", "n5"]  # FRONTEND/BACKEND rows and backend `other` skipped
    n1, n2, n3, n4, n5 = (servers[f"n{i}"] for i in range(1, 6))
    assert (n1.weight, n1.admin, n1.health, n1.checked, n1.backup) == (3, AdminState.READY, Health.UP, True, False)
    assert (n1.requests_total, n1.errors_5xx_total, n1.active_sessions, n1.queued) == (7, 2, 0, 0)
    assert n1.request_rate is not None and n1.avg_response_seconds is not None
    assert (n2.weight, n2.admin, n2.health) == (2, AdminState.DRAIN, Health.NO_CHECK)
    assert n3.admin == AdminState.MAINT
    assert n4.backup is True and n4.admin == AdminState.READY
    assert (n5.checked, n5.health, n5.admin) == (True, Health.DOWN, AdminState.READY)
    for s in servers.values():
        assert s.address == "127.0.0.1"
    assert {n: s.port for n, s in servers.items()} == state_ports(state)
    assert n2.requests_total == 0  # drained before traffic: 0 is a real reading here, not "unknown"


@pytest.mark.parametrize("tag", VERSIONS)
def test_server_rows_hold_only_the_columns_a_server_state_reads(tag):
    """`status` at 1,000 servers: the backend's rows with the ~16 columns server_state reads, not ~100 (issue 17);
    the same values as the whole rows, other proxies (a frontend, backend `other`, a name that starts like
    this one) left out."""
    stat, _ = load(tag)
    header = stat.splitlines()[0]
    cousin = "\n".join(line.replace("asr,", "asr2,", 1) for line in stat.splitlines()[1:] if line.startswith("asr,"))
    stat = stat.rstrip("\n") + "\n" + cousin + "\n"
    want = [{k: r[k] for k in SERVER_COLUMNS if k in r} for r in backend_rows(parse_show_stat(stat), "asr")]
    got = server_stat_rows(stat, "asr")
    assert [r["svname"] for r in got] == ["n1", "n2", "n3", "n4", "n5"] and got == want
    assert header.startswith("# pxname,svname,") and set(got[0]) == set(SERVER_COLUMNS)


CELLS = ["", "-", "0", "1", "2", "-1", "256", "²", "٣", "1e3", "UP", "DOWN", "MAINT", "DRAIN 1/2", "no check",
         "127.0.0.1:80", "[::1]:80", "host:", "asr", "asr2", "other", "n1", "BACKEND", "FRONTEND", "x" * 40]
QUOTED = ['"a,b"', '"say ""hi"""', 'a"b']  # a field with a comma, doubled quotes, a quote inside a field


def mutated(rng: random.Random, text: str, sep: str, cells: list[str]) -> str:
    """The answer with rows repeated, dropped, cut short, moved to other backends and cells replaced."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("# ")) + 1
    rows = [line.split(sep) for line in lines[head:] if line.strip()]
    out = []
    for _ in range(rng.randrange(1, 3 * len(rows) + 2)):
        row = list(rng.choice(rows))
        for _ in range(rng.randrange(4)):
            row[rng.randrange(len(row))] = rng.choice(cells)
        if rng.random() < 0.1:
            row = row[:rng.randrange(2, len(row) + 1)]  # a name and a server at least
        out.append(sep.join(row))
    if rng.random() < 0.2:
        out.insert(rng.randrange(len(out) + 1), rng.choice(("", "# a comment", "   ")))
    return "\n".join(lines[:head] + out) + "\n"


@pytest.mark.parametrize("tag", VERSIONS)
def test_the_backends_rows_read_for_status_are_the_general_parsers_rows(tag):
    """build_server_states (issue 17: 1,000 servers per balancer for every `status`) reads only the columns it
    needs, and a `show stat` line without quotes by splitting it: on random answers, the same rows and servers
    as the general parsers (csv for `show stat`, every column of `show servers state`)."""
    stat, state = load(tag)
    state = (FIX / f"servers_state_all_{tag}.txt").read_text()
    rng = random.Random(17)
    for _ in range(300):
        s = mutated(rng, stat, ",", CELLS + (QUOTED if rng.random() < 0.3 else []))
        st = mutated(rng, state, " ", [c for c in CELLS if c and " " not in c])
        backend = rng.choice(("asr", "other", "asr2"))
        rows = backend_rows(parse_show_stat(s), backend)
        assert server_stat_rows(s, backend) == [{k: r[k] for k in SERVER_COLUMNS if k in r} for r in rows]
        every = {r["srv_name"]: r for r in parse_servers_state(st) if r.get("be_name") == backend and "srv_name" in r}
        assert server_state_rows(st, backend) == {n: {k: r[k] for k in STATE_COLUMNS if k in r}
                                                  for n, r in every.items()}
        assert build_server_states(s, st, backend) == [server_state(r, every.get(r["svname"])) for r in rows]


def server_state_as_it_was(stat: dict, state: dict | None) -> ServerState:
    """server_state before issue 17 made it read each field once, by position: the reference it must equal."""
    state = state or {}
    admin_bits, check_bits = to_int(state.get("srv_admin_state")), to_int(state.get("srv_check_state"))
    status = stat.get("status")
    checked = bool(check_bits & CHK_ST_CONFIGURED) if check_bits is not None else \
        bool(stat.get("check_status")) or bool(stat.get("chkfail"))
    address, port = split_addr(stat.get("addr"))
    if state.get("srv_addr"):
        address = state["srv_addr"]
    if to_int(state.get("srv_port")) is not None:
        port = to_int(state.get("srv_port"))
    agent_check, agent_enabled = agent(to_int(state.get("srv_agent_state")), stat.get("agent_status"))
    weight = to_int(state.get("srv_uweight"))
    if weight is None:
        weight = to_int(stat.get("weight")) or 0
    rtime, rate = to_int(stat.get("rtime")), to_int(stat.get("rate"))
    return ServerState(
        name=stat["svname"], address=address or "", port=port, weight=weight, backup=to_int(stat.get("bck")) == 1,
        admin=admin_state(admin_bits, status),
        health=health(checked or bool(stat.get("tracked")), to_int(state.get("srv_op_state")), status,
                      check_bits if checked else None),
        active_sessions=to_int(stat.get("scur")), queued=to_int(stat.get("qcur")),
        request_rate=float(rate) if rate is not None else None, requests_total=to_int(stat.get("stot")),
        errors_5xx_total=to_int(stat.get("hrsp_5xx")),
        avg_response_seconds=rtime / 1000.0 if rtime is not None else None,
        checked=checked, agent_check=agent_check, agent_enabled=agent_enabled)


def test_a_server_reads_as_it_did_before_on_random_rows():
    values = [None, "", "-", "0", "1", "2", "3", "4", "6", "8", "14", "-1", "256", "²", "٣", "UP", "DOWN", "MAINT",
              "DRAIN", "NOLB", "UP 1/3", "no check", "L4OK", "127.0.0.1:80", "[::1]:80", "host:", ":80", "::1", "x"]
    rng = random.Random(5)
    for _ in range(4000):
        stat = {k: v for k in SERVER_COLUMNS if (v := rng.choice(values)) is not None}
        stat["svname"] = "s"
        state = None if rng.random() < 0.2 else \
            {k: v for k in STATE_COLUMNS if (v := rng.choice(values)) is not None}
        assert server_state(stat, state) == server_state_as_it_was(stat, state)


@pytest.mark.parametrize("tag", VERSIONS)
def test_show_stat_is_parsed_by_header_name_not_position(tag):
    stat, state = load(tag)
    lines = stat.splitlines()
    header = lines[0][2:].rstrip(",").split(",")
    rows = list(csv.reader(io.StringIO("\n".join(x.rstrip(",") for x in lines[1:] if x))))
    order = list(range(len(header)))
    random.Random(7).shuffle(order)
    out = io.StringIO()
    out.write("# " + ",".join(header[i] for i in order) + "\n")
    for r in rows:
        r = r + [""] * (len(header) - len(r))
        out.write(",".join(r[i] for i in order) + "\n")
    assert build_server_states(out.getvalue(), state, "asr") == build_server_states(stat, state, "asr")


@pytest.mark.parametrize("tag", VERSIONS)
def test_servers_state_by_header_name_and_backend_filter(tag):
    stat, _ = load(tag)
    all_state = (FIX / f"servers_state_all_{tag}.txt").read_text()
    rows = parse_servers_state(all_state)
    assert {r["be_name"] for r in rows} == {"asr", "other"}
    assert [s.name for s in build_server_states(stat, all_state, "asr")] == ["n1", "n2", "n3", "n4", "n5"]
    assert [s.name for s in build_server_states(stat, all_state, "other")] == ["o1"]


def test_versions_differ_in_columns_but_read_the_same():
    (s8, st8), (s6, st6) = load("2.8"), load("2.6")
    assert len(parse_show_stat(s8)[0]) > len(parse_show_stat(s6)[0])
    strip = lambda ss: [(s.name, s.weight, s.backup, s.admin, s.health, s.requests_total) for s in ss]  # noqa: E731
    assert strip(build_server_states(s8, st8, "asr")) == strip(build_server_states(s6, st6, "asr"))


def test_status_word_is_the_fallback_without_a_state_row():
    stat, _ = load("2.8")
    rows = {r["svname"]: r for r in parse_show_stat(stat) if r["pxname"] == "asr"}
    assert server_state(rows["n2"], None).admin == AdminState.DRAIN
    assert server_state(rows["n3"], None).admin == AdminState.MAINT
    assert server_state(rows["n5"], None).health == Health.DOWN
    assert server_state(rows["n4"], None).health == Health.NO_CHECK
    assert admin_state(0x01 | 0x08, "MAINT") == AdminState.MAINT  # maint wins over drain


@pytest.mark.parametrize("text", ["Permission denied\n", "", "Unknown command: 'show'\n"])
def test_error_answers_are_not_parsed_as_empty_tables(text):
    with pytest.raises(ParseError):
        parse_show_stat(text)
    with pytest.raises(ParseError):
        parse_servers_state(text)


@pytest.mark.parametrize("spec,expected", [
    ("/run/haproxy/admin.sock", ("unix", "/run/haproxy/admin.sock")),
    ("unix@/tmp/a.sock", ("unix", "/tmp/a.sock")),
    ("127.0.0.1:9999", ("tcp", ("127.0.0.1", 9999))),
    ("ipv4@127.0.0.1:9999", ("tcp", ("127.0.0.1", 9999))),
    ("admin.sock", ("unix", "admin.sock")),
])
def test_socket_spec(spec, expected):
    assert parse_socket(spec) == expected


@pytest.mark.parametrize("bad", [-1, 257, 300, True, "3", 2.5, None])
def test_weight_validation(bad):
    with pytest.raises(BalancerRefused, match="weight"):
        validate_weight("hx", bad, 256, "HAProxy")


def test_weight_bounds_accepted():
    assert validate_weight("hx", 0, 256, "HAProxy") == 0
    assert validate_weight("hx", 256, 256, "HAProxy") == 256


INFO_28 = "Name: HAProxy\nVersion: 2.8.25\nPid: 12452\nUptime: 0d 0h01m40s\nUptime_sec: 100\nStart_time_sec: 1700000000\n"


@pytest.mark.parametrize("info, expected", [
    (INFO_28, 1700000000.0),  # Start_time_sec wins over Uptime_sec
    ("Name: HAProxy\nUptime_sec: 100\n", 1700000900.0),  # an older HAProxy: now - Uptime_sec
    ("Name: HAProxy\nUptime_sec: 100\nStart_time_sec: soon\n", 1700000900.0),
    ("Name: HAProxy\nUptime_sec: x\n", None),
    ("Permission denied\n", None),
    ("", None),
])
def test_start_time_from_show_info(info, expected):
    assert start_time(info, now=1700001000.0) == expected


class InfoAPI:
    def __init__(self, answer: str | Exception):
        self.answer, self.sent = answer, []

    def command(self, cmd: str) -> str:
        self.sent.append(cmd)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_started_at_asks_show_info_and_unreachable_is_none(monkeypatch):
    b = HAProxyBalancer("hx", "/nonexistent/admin.sock", "asr")
    assert isinstance(b, ReportsStartTime)
    assert b.started_at() is None  # the real socket is missing: unreachable, not an error
    b.api = InfoAPI(INFO_28)
    assert b.started_at() == 1700000000.0 and b.api.sent == ["show info"]
    monkeypatch.setattr("asrtop.balancers.haproxy.time.time", lambda: 1700001000.0)
    b.api = InfoAPI("Name: HAProxy\nUptime_sec: 100\n")
    assert b.started_at() == 1700000900.0
    b.api = InfoAPI(BalancerUnreachable("hx: connection refused"))
    assert b.started_at() is None


# Captured from HAProxy 2.6 (`check inter 300`): n1 after `set server asr/n1 state maint` with its backend still
# answering, n2 ready with its backend stopped. HAProxy pauses n1's check (srv_check_state 14 = configured |
# enabled | paused) and reports it stopped (op state 0) because of the maint, not because a check failed.
MAINT_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 asr 1 n1 127.0.0.1 0 1 1 1 1 6 3 0 14 0 0 0 - 34653 - 0 0 - - 0
3 asr 2 n2 127.0.0.1 0 0 1 1 3 8 2 0 6 0 0 0 - 41105 - 0 0 - - 0
"""
MAINT_STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status
asr,n1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,0,1,1,1,,1,3,1,,0,,2,0,,0,
asr,n2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,3,1,3,3,,1,3,2,,0,,2,0,,0,L4CON
"""


def test_maint_pauses_the_check_and_is_not_down():
    servers = {s.name: s for s in build_server_states(MAINT_STAT, MAINT_STATE, "asr")}
    assert (servers["n1"].admin, servers["n1"].health) == (AdminState.MAINT, Health.PAUSED)
    assert (servers["n2"].admin, servers["n2"].health) == (AdminState.READY, Health.DOWN)  # a failed check
    rows = {r["svname"]: r for r in parse_show_stat(MAINT_STAT)}
    assert server_state(rows["n1"], None).health == Health.PAUSED  # `show stat` alone: MAINT runs no check
    assert server_state(rows["n2"], None).health == Health.DOWN
