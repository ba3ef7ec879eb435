"""NginxBalancer against real nginx (Debian) with real HTTP backends, on the seed article's config."""

from __future__ import annotations

import os
import subprocess
import threading

import httpx
import pytest

from support.balancers import nginx_upstream_block, start_backends, start_nginx, wait_until

from asrtop.balancers.base import AdminState, BalancerRefused, BalancerUnreachable, UnsupportedAction
from asrtop.balancers.factory import build_balancer
from asrtop.balancers.nginx import NginxBalancer
from asrtop.config import BalancerConfig
from support.netutil import free_port

from support.seed import SEED_ADDRS, seed_line


def loopback_seed(ports: list[int], listen: int) -> str:
    """The seed's config with its addresses rewritten to 127.0.0.1 and free ports (house rule)."""
    text = seed_line()
    for addr, port in zip(SEED_ADDRS, ports):
        text = text.replace(addr, f"127.0.0.1:{port}")
    return text.replace("listen 80;", f"listen 127.0.0.1:{listen};") + "\n"


def counts(port: int, n: int, path: str = "/") -> dict[str, int]:
    out: dict[str, int] = {}
    with httpx.Client(timeout=10) as c:
        for _ in range(n):
            r = c.get(f"http://127.0.0.1:{port}{path}", headers={"Connection": "close"})
            assert r.status_code == 200, r.text
            out[r.text] = out.get(r.text, 0) + 1
    return out


@pytest.fixture
def seeded(nginx_bin, tmp_path):
    """Real nginx serving the seed's upstream + server block (loopback), three real backends a, b, c."""
    with start_backends(["a", "b", "c"]) as be:
        listen = free_port()
        with start_nginx(nginx_bin, tmp_path, loopback_seed([be.ports[n] for n in "abc"], listen)) as ng:
            b = NginxBalancer("ng", ng.upstream_conf, "fun_asr_backend", ng.test_command, ng.reload_command)
            yield be, ng, b, listen


def test_unmodified_seed_config_passes_nginx_t(nginx_bin, tmp_path):
    conf = tmp_path / "nginx.conf"
    (tmp_path / "logs").mkdir()
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
                    f"http {{\n{seed_line()}\n}}\n")
    p = subprocess.run([nginx_bin, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    servers = NginxBalancer("seed", conf, "fun_asr_backend", check_running=False).servers()  # nginx -t only
    assert [(s.name, s.weight, s.backup) for s in servers] == [
        ("192.168.1.10:7860", 3, False), ("192.168.1.11:7860", 3, False), ("192.168.1.12:7860", 1, True)]


def test_seed_upstream_weight_drain_backup_live(seeded):
    be, ng, b, listen = seeded
    a, bb, c = (f"127.0.0.1:{be.ports[n]}" for n in "abc")
    assert [(s.name, s.weight, s.backup, s.admin.value) for s in b.servers()] == [
        (a, 3, False, "ready"), (bb, 3, False, "ready"), (c, 1, True, "ready")]
    assert counts(listen, 40) == {"a": 20, "b": 20}
    original = ng.upstream_conf.read_text()

    retired = ng.retired_workers()
    b.set_weight(a, 1)
    assert ng.wait_reloaded(retired)
    shifted = counts(listen, 40)
    assert shifted.get("b", 0) >= 2 * shifted.get("a", 0) > 0
    assert ng.upstream_conf.read_text() == original.replace(
        f"server {a} weight=3", f"server {a} weight=1")

    retired = ng.retired_workers()
    b.set_state(bb, AdminState.DRAIN)
    assert ng.wait_reloaded(retired)
    assert {s.name: s.admin for s in b.servers()}[bb] == AdminState.MAINT  # drain = maint = `down` in nginx
    assert counts(listen, 10) == {"a": 10}

    for change in (lambda: b.set_backup(c, False), lambda: b.set_state(bb, AdminState.READY),
                   lambda: b.set_weight(a, 3)):
        retired = ng.retired_workers()
        change()
        assert ng.wait_reloaded(retired)  # one reload at a time: signals sent together may merge
    assert counts(listen, 30).keys() == {"a", "b", "c"}
    # max_fails/fail_timeout, the server block and every other byte are as they were
    assert ng.upstream_conf.read_text() == original.replace(f"server {c} backup;", f"server {c};")
    b.set_backup(c, True)
    assert ng.upstream_conf.read_text() == original


def test_drain_lets_in_flight_requests_finish(nginx_bin, tmp_path):
    with start_backends(["a", "b"]) as be:
        block = nginx_upstream_block("asr", be.specs(), method="least_conn")
        with start_nginx(nginx_bin, tmp_path, block, upstream="asr") as ng:
            b = NginxBalancer("ng", ng.upstream_conf, "asr", ng.test_command, ng.reload_command)
            results: list[tuple[int, str]] = []

            def slow():
                r = httpx.get(ng.url("/slow?s=1.5"), timeout=10)
                results.append((r.status_code, r.text))

            t = threading.Thread(target=slow)
            t.start()
            assert wait_until(lambda: sum(be.in_flight.values()) == 1)
            busy = next(n for n, v in be.in_flight.items() if v)
            other = "b" if busy == "a" else "a"
            retired, switched = ng.retired_workers(), ng.shutdowns()
            b.set_state(f"127.0.0.1:{be.ports[busy]}", AdminState.DRAIN)
            assert ng.wait_switched(switched)
            assert counts(ng.port, 6) == {other: 6}  # the new workers skip it
            t.join(10)
            assert results == [(200, busy)]  # the old worker finished the in-flight request
            assert ng.wait_reloaded(retired)


def test_failing_nginx_t_restores_file_byte_for_byte(seeded):
    be, ng, b, listen = seeded
    before = ng.upstream_conf.read_bytes()
    (ng.prefix / "conf.d" / "zz_broken.conf").write_text("bogus_directive on;\n")
    with pytest.raises(BalancerRefused) as info:
        b.set_weight(f"127.0.0.1:{be.ports['a']}", 5)
    msg = str(info.value)
    assert "[emerg]" in msg and 'unknown directive "bogus_directive"' in msg and "restored" in msg
    assert "\n" not in msg
    assert ng.upstream_conf.read_bytes() == before
    assert counts(listen, 4) == {"a": 2, "b": 2}  # still serving the old config


def test_failing_reload_restores_file(seeded):
    be, ng, b, listen = seeded
    before = ng.upstream_conf.read_bytes()
    # a real reload that fails: nginx rejects a second `pid` directive given with -g
    broken_reload = (*ng.reload_command[:-2], "-g", f"pid {ng.prefix}/other.pid;", "-s", "reload")
    bad = NginxBalancer("ng", ng.upstream_conf, "fun_asr_backend", ng.test_command, broken_reload)
    with pytest.raises(BalancerRefused, match=r"reload` failed, .* restored .*\[emerg\].*\"pid\" directive is duplicate"):
        bad.set_state(f"127.0.0.1:{be.ports['a']}", AdminState.MAINT)
    assert ng.upstream_conf.read_bytes() == before
    assert counts(listen, 4) == {"a": 2, "b": 2}


def test_main_config_with_include_and_factory(seeded):
    be, ng, _, listen = seeded
    b = build_balancer(BalancerConfig("ng", "nginx", config=str(ng.conf), upstream="fun_asr_backend",
                                      test_command=ng.test_command, reload_command=ng.reload_command))
    assert isinstance(b, NginxBalancer) and b.max_weight == 1000
    a = f"127.0.0.1:{be.ports['a']}"
    main_before = ng.conf.read_bytes()
    b.set_weight(a, 2)
    assert ng.conf.read_bytes() == main_before  # the included file was rewritten, not nginx.conf
    assert f"server {a} weight=2 max_fails=2" in ng.upstream_conf.read_text()


def test_backup_refused_where_nginx_refuses_it(nginx_bin, tmp_path):
    with start_backends(["a", "b"]) as be:
        block = nginx_upstream_block("asr", be.specs(), method="hash $remote_addr")
        with start_nginx(nginx_bin, tmp_path, block, upstream="asr") as ng:
            b = NginxBalancer("ng", ng.upstream_conf, "asr", ng.test_command, ng.reload_command)
            before = ng.upstream_conf.read_bytes()
            with pytest.raises(UnsupportedAction, match="does not allow `backup`.*`hash`"):
                b.set_backup(f"127.0.0.1:{be.ports['b']}", True)
            assert ng.upstream_conf.read_bytes() == before
            # and nginx itself would indeed have refused that file
            ng.upstream_conf.write_text(before.decode().replace(f"{be.ports['b']};", f"{be.ports['b']} backup;"))
            p = subprocess.run(list(ng.test_command), capture_output=True, text=True, timeout=30)
            assert p.returncode != 0 and "backup" in p.stderr
            ng.upstream_conf.write_bytes(before)


def test_bad_input(seeded, tmp_path):
    be, ng, b, listen = seeded
    before = ng.upstream_conf.read_bytes()
    a = f"127.0.0.1:{be.ports['a']}"
    cases = [
        (lambda: NginxBalancer("ng", ng.upstream_conf, "nope").servers(), BalancerRefused, "no `upstream nope`"),
        (lambda: NginxBalancer("ng", tmp_path / "none.conf", "x").servers(), BalancerUnreachable, "does not exist"),
        (lambda: b.set_weight(a, -1), BalancerRefused, "out of range"),
        (lambda: b.set_weight(a, 1001), BalancerRefused, "out of range"),
        (lambda: b.set_state("127.0.0.1:1", AdminState.MAINT), BalancerRefused, "no server '127.0.0.1:1'"),
        (lambda: NginxBalancer("ng", ng.upstream_conf, "fun_asr_backend", ("/no/such/nginx", "-t"),
                               ng.reload_command).set_weight(a, 2), BalancerRefused, "command not found"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc) as info:
            call()
        assert text in str(info.value) and "\n" not in str(info.value)
    assert ng.upstream_conf.read_bytes() == before
    assert not [p.name for p in (ng.prefix / "conf.d").iterdir() if p.name.endswith(".asrtop")]  # no temp left


def test_stopped_nginx_is_unreachable_and_status_exits_5(nginx_bin, tmp_path):
    """Real nginx: running -> `asrtop status` reads it (exit 0); stopped -> exit 5 naming it and why; a pid file
    left by a dead master names the process; its stub_status, when configured, is the check."""
    from support.control_cluster import nginx_entry, node_entry, run_cli, write_config

    stub = free_port()
    with start_backends(["a"]) as be:
        block = nginx_upstream_block("fun_asr_backend", be.specs()) + (
            f"server {{ listen 127.0.0.1:{stub}; location /nginx_status {{ stub_status; }} }}\n")
        ng = start_nginx(nginx_bin, tmp_path, block)
        with ng:
            path = write_config(tmp_path, [nginx_entry("ngx", ng)], [node_entry("n1", f"127.0.0.1:{be.ports['a']}")])
            up = run_cli(path, "status")
            assert up.returncode == 0, up.stderr
            assert "UNREACHABLE" not in up.stdout and "n1" in up.stdout
            with_stub = lambda url: NginxBalancer("ng", ng.conf, "fun_asr_backend", ng.test_command,  # noqa: E731
                                                  ng.reload_command, stub_status=url)
            assert len(with_stub(f"http://127.0.0.1:{stub}/nginx_status").servers()) == 1
            with pytest.raises(BalancerUnreachable, match=r"stub_status http://127.0.0.1:\d+/nope answered HTTP 404"):
                with_stub(f"http://127.0.0.1:{stub}/nope").servers()
            master = ng.master_pid()
        down = run_cli(path, "status")
        assert down.returncode == 5, (down.stdout, down.stderr)
        assert down.stderr == (f"asrtop: no balancer could be read: ngx: nginx is not running: no pid file "
                               f"{ng.pid_file} (named by {ng.conf})\n")
        assert "ngx: UNREACHABLE: nginx is not running" in down.stdout
        before = ng.upstream_conf.read_bytes()
        drain = run_cli(path, "drain", "n1")  # was: file edited, then "invalid PID number" from the reload
        assert drain.returncode == 5 and "nginx is not running" in drain.stderr, (drain.stdout, drain.stderr)
        assert ng.upstream_conf.read_bytes() == before
        ng.pid_file.write_text(f"{master}\n")  # what a killed master leaves behind
        with pytest.raises(BalancerUnreachable, match=f"^ng: nginx is not running: no process {master} from "):
            NginxBalancer("ng", ng.upstream_conf, "fun_asr_backend", ng.test_command, ng.reload_command).servers()


def test_default_commands_check_the_config_nginx_runs_with_a_custom_prefix(nginx_bin, tmp_path, monkeypatch):
    """nginx run with -p/-c (not the system's config): with no test/reload command configured, asrtop derives
    `nginx -p P -c CONF -t` / `-s reload` from `config` and `prefix`, so a broken upstream file is caught by
    nginx -t (nothing reloaded, file restored), and a good change reaches the running nginx."""
    # the derived commands call `nginx` from PATH: make it the nginx this test runs (CI: /usr/sbin)
    monkeypatch.setenv("PATH", f"{os.path.dirname(nginx_bin)}{os.pathsep}{os.environ.get('PATH', '')}")
    with start_backends(["a", "b"]) as be, \
            start_nginx(nginx_bin, tmp_path, nginx_upstream_block("fun_asr_backend", be.specs())) as ng:
        b = build_balancer(BalancerConfig("ng", "nginx", config=str(ng.conf), upstream="fun_asr_backend",
                                          prefix=str(ng.prefix)))
        a = f"127.0.0.1:{be.ports['a']}"
        good = ng.upstream_conf.read_text()
        broken = good.replace(f"server {a};", f"server {a} max_fails=oops;")
        ng.upstream_conf.write_text(broken)
        with pytest.raises(BalancerRefused) as info:
            b.set_weight(a, 2)
        assert str(info.value).startswith(f"ng: `nginx -p {ng.prefix} -c {ng.conf} -t` failed, {ng.upstream_conf} "
                                          "restored: ")
        assert "[emerg]" in str(info.value) and 'invalid parameter "max_fails=oops"' in str(info.value)
        assert ng.upstream_conf.read_text() == broken
        ng.upstream_conf.write_text(good)
        retired = ng.retired_workers()
        b.set_weight(a, 2)
        assert ng.wait_reloaded(retired)
        assert {s.name: s.weight for s in b.servers()}[a] == 2
