"""nginx upstream parse + byte-exact rewrite, on the seed article's block exactly as written there."""

from __future__ import annotations

from pathlib import Path

import pytest

from asrtop.balancers.base import AdminState, BalancerRefused, BalancerUnreachable, Health, UnsupportedAction
from asrtop.balancers.nginx import NginxBalancer, nginx_error_line
from asrtop.balancers.host import LOCAL
from asrtop.balancers.nginx_files import ConfFiles
from asrtop.balancers.nginx_conf import NginxConfError, find_server, locate, parse_upstream, rewrite, server_state

from support.seed import seed_line


@pytest.fixture
def seed_text() -> str:
    """The seed's nginx config line, verbatim from the article when it is here."""
    return seed_line() + "\n"


def up(text: str):
    return parse_upstream(text, "fun_asr_backend")


def test_seed_block_reads_as_written(seed_text):
    u = up(seed_text)
    assert u.methods == ("least_conn",)
    states = [server_state(d) for d in u.servers]
    assert [s.name for s in states] == ["192.168.1.10:7860", "192.168.1.11:7860", "192.168.1.12:7860"]
    assert [(s.address, s.port, s.weight, s.backup) for s in states] == [
        ("192.168.1.10", 7860, 3, False), ("192.168.1.11", 7860, 3, False), ("192.168.1.12", 7860, 1, True)]
    assert all(s.admin == AdminState.READY and s.health == Health.NO_CHECK for s in states)
    assert all(s.active_sessions is None and s.requests_total is None for s in states)  # unknown, not 0


@pytest.mark.parametrize("server,kw,expected", [
    ("192.168.1.10:7860", {"weight": 5},
     "server 192.168.1.10:7860 weight=5 max_fails=2 fail_timeout=30s;"),
    ("192.168.1.11:7860", {"down": True},
     "server 192.168.1.11:7860 weight=3 max_fails=2 fail_timeout=30s down;"),
    ("192.168.1.12:7860", {"backup": False}, "server 192.168.1.12:7860;"),
    ("192.168.1.12:7860", {"weight": 2}, "server 192.168.1.12:7860 weight=2 backup;"),
    ("192.168.1.10:7860", {"backup": True, "weight": 1},
     "server 192.168.1.10:7860 weight=1 max_fails=2 fail_timeout=30s backup;"),
])
def test_rewrite_touches_only_that_server(seed_text, server, kw, expected):
    u = up(seed_text)
    (d,) = find_server(u, server)
    new = rewrite(seed_text, [d], **kw)
    start = seed_text.index(f"server {server}")
    end = seed_text.index(";", start) + 1
    assert new == seed_text[:start] + expected + seed_text[end:]


def test_rewrite_round_trips_to_the_same_bytes(seed_text):
    u = up(seed_text)
    d = find_server(u, "192.168.1.11:7860")
    once = rewrite(seed_text, d, down=True, backup=True, weight=7)
    back = rewrite(once, find_server(up(once), "192.168.1.11:7860"), down=False, backup=False, weight=3)
    assert back == seed_text
    assert rewrite(seed_text, d, weight=3, down=False) == seed_text  # already so: no change at all
    assert server_state(find_server(up(once), "192.168.1.11:7860")[0]).admin == AdminState.MAINT


def test_comments_multiline_and_other_blocks_kept():
    text = ("# head comment\nhttp {\n  upstream other { server 10.0.0.1:80 weight=9; }\n"
            "  upstream fun_asr_backend {\n    least_conn;  # why\n    server 10.0.0.2:80\n"
            "        max_fails=2   fail_timeout=30s   backup ;  # spare\n    server 10.0.0.3:80;\n  }\n}\n")
    u = up(text)
    assert [d.address for d in u.servers] == ["10.0.0.2:80", "10.0.0.3:80"]
    new = rewrite(text, find_server(u, "10.0.0.2:80"), backup=False, weight=4)
    assert new == text.replace("10.0.0.2:80\n", "10.0.0.2:80 weight=4\n").replace(
        "fail_timeout=30s   backup ;", "fail_timeout=30s ;")
    assert "weight=9" in new and "# spare" in new and "# why" in new


def test_no_such_upstream(seed_text):
    with pytest.raises(NginxConfError, match="no `upstream nope` block"):
        parse_upstream(seed_text, "nope")


def test_locate_follows_includes(tmp_path, seed_text):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "asr.conf").write_text(seed_text)
    (tmp_path / "nginx.conf").write_text("events {}\nhttp {\n    include conf.d/*.conf;\n}\n")
    files = ConfFiles(LOCAL).walk(str(tmp_path / "nginx.conf"))
    file, line = locate(files, "fun_asr_backend")
    assert (Path(file), line) == (tmp_path / "conf.d" / "asr.conf", 1)
    with pytest.raises(NginxConfError, match="has no `upstream nope`"):
        locate(files, "nope")


def test_adapter_without_nginx_keeps_file_on_failed_test(tmp_path, seed_text):
    """`false` as test command: the file comes back byte for byte (real nginx: integration tests)."""
    f = tmp_path / "asr.conf"
    f.write_text(seed_text)
    f.chmod(0o640)
    b = NginxBalancer("ng", f, "fun_asr_backend", test_command=("false",), reload_command=("true",),
                      check_running=False)
    with pytest.raises(BalancerRefused, match="restored"):
        b.set_weight("192.168.1.10:7860", 5)
    assert f.read_text() == seed_text and (f.stat().st_mode & 0o777) == 0o640
    ok = NginxBalancer("ng", f, "fun_asr_backend", test_command=("true",), reload_command=("true",),
                       check_running=False)
    ok.set_state("192.168.1.10:7860", AdminState.DRAIN)
    assert f.read_text() == seed_text.replace("fail_timeout=30s;", "fail_timeout=30s down;", 1)
    assert (f.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["asr.conf"]  # no temp file left behind


def test_adapter_refusals(tmp_path, seed_text):
    f = tmp_path / "asr.conf"
    f.write_text(seed_text.replace("least_conn;", "hash $remote_addr consistent;"))
    b = NginxBalancer("ng", f, "fun_asr_backend", test_command=("true",), reload_command=("true",), check_running=False)
    before = f.read_bytes()
    with pytest.raises(UnsupportedAction, match="`hash`"):
        b.set_backup("192.168.1.10:7860", True)
    b.set_backup("192.168.1.12:7860", False)  # taking backup away is always allowed
    assert b"192.168.1.12:7860;" in f.read_bytes()
    f.write_bytes(before)
    for bad in (-1, 0, 1001, "abc"):
        with pytest.raises(BalancerRefused, match="weight"):
            b.set_weight("192.168.1.10:7860", bad)
    with pytest.raises(BalancerRefused, match="no server '10.9.9.9:1'"):
        b.set_state("10.9.9.9:1", AdminState.MAINT)
    with pytest.raises(BalancerRefused, match="no `upstream other`"):
        NginxBalancer("ng", f, "other", check_running=False).servers()
    with pytest.raises(BalancerUnreachable, match="does not exist"):
        NginxBalancer("ng", tmp_path / "missing.conf", "fun_asr_backend", check_running=False).servers()
    assert f.read_bytes() == before


def test_nginx_error_line():
    out = ("nginx: [emerg] unknown directive \"bogus\" in /x/conf.d/zz.conf:1\n"
           "nginx: configuration file /x/nginx.conf test failed\n")
    assert nginx_error_line(out).startswith("nginx: [emerg] unknown directive")
    assert nginx_error_line("just this\n") == "just this"


def test_changes_wait_for_the_directory_lock(tmp_path, seed_text):
    import threading

    from asrtop.balancers.host import dir_lock

    f = tmp_path / "asr.conf"
    f.write_text(seed_text)
    b = NginxBalancer("ng", f, "fun_asr_backend", test_command=("true",), reload_command=("true",), check_running=False)
    with dir_lock(tmp_path):  # another asrtop process is mid-change
        t = threading.Thread(target=b.set_weight, args=("192.168.1.10:7860", 9))
        t.start()
        t.join(0.3)
        assert t.is_alive() and f.read_text() == seed_text
    t.join(10)
    assert "192.168.1.10:7860 weight=9 " in f.read_text()
