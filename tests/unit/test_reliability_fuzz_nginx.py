"""Fuzz: nginx upstream files as the nginx adapter reads and rewrites them.

Any file content gives a list of ServerState or ONE-line BalancerError from servers(); a change either
applies exactly (read back: that server changed, every other server as before) or is refused in one line
without the file being touched (same bytes, same inode, same mtime). test/reload commands are /bin/true
here (the real nginx -t round trip is covered by tests/integration/test_reliability_nginx_rewrite.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asrtop.balancers.base import AdminState, BalancerError, Health, ServerState
from asrtop.balancers.nginx import NginxBalancer

FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])
TRUE = (shutil.which("true") or "/bin/true",)
FALSE = (shutil.which("false") or "/bin/false",)
ADDRESSES = ["127.0.0.1:8001", "127.0.0.1:8002", "unix:/tmp/asr.sock", "[::1]:8003", "localhost",
             "127.0.0.1:²", "'127.0.0.1:8004'", '"127.0.0.1:8005"', "127.0.0.1:8001"]
PARAMS = ["weight=3", "weight=1", "weight=0", "weight=abc", "weight=", "weight=²", "weight=-2",
          "weight=99999999999999999999", "backup", "down", "max_fails=2", "fail_timeout=30s", "max_conns=10",
          "resolve", "slow_start=5s", "'down'", '"weight=2"', "weight=3\\;", "${x}", "#c\n"]
JUNK = ["{", "}", ";", "#", "'", '"', "\\", "least_conn;", "ip_hash;", "hash $x;", "random;", "keepalive 16;",
        "zone z 64k;", "server;", "server ;", "upstream fun_asr_backend {", "location / {}", "\x00", "é"]
sep = st.sampled_from([" ", "  ", "\t", "\n", " \n "])


GOOD_PARAMS = ["weight=3", "weight=1", "weight=1000", "backup", "down", "max_fails=2", "fail_timeout=30s",
               "max_conns=10", "slow_start=5s", "# comment\n"]


@st.composite
def server_line(draw, params=PARAMS):
    words = ["server", draw(st.sampled_from(ADDRESSES))] + draw(st.lists(st.sampled_from(params), max_size=4))
    s = draw(sep)
    return s.join(words) + draw(st.sampled_from([";", ";", ";", "", " ;"] if params is PARAMS else [";", " ;"]))


def block(items, closers=("}", "}\n", "", "}}")):
    return st.tuples(st.sampled_from(["", "# asr pool\n", "http { }\n"]), st.lists(items, max_size=7), sep,
                     st.sampled_from(closers)).map(
        lambda t: f"{t[0]}upstream fun_asr_backend {{{t[2]}" + t[2].join(t[1]) + f"{t[2]}{t[3]}")


body_item = st.one_of(server_line(), server_line(), st.sampled_from(JUNK), st.text(max_size=8))
good_item = st.one_of(server_line(GOOD_PARAMS), server_line(GOOD_PARAMS),
                      st.sampled_from(["least_conn;", "keepalive 16;", "# c\n", "zone z 64k;", "random;"]))
upstream_file = st.one_of(block(good_item, ("}", "}\n")), block(good_item, ("}", "}\n")), block(body_item),
                          st.text(max_size=150))
VALUES = {
    "weight": st.integers(1, 1000) | st.integers(1, 1000) | st.integers(-2, 1002)
    | st.sampled_from([0, 1001, True, "3", 2.5, None]),
    "state": st.sampled_from(list(AdminState)),
    "backup": st.booleans(),
}
actions = st.sampled_from(sorted(VALUES)).flatmap(lambda kind: st.tuples(
    st.just(kind), st.sampled_from(ADDRESSES[:4]) | st.sampled_from(ADDRESSES + ["127.0.0.1:9999", "", "server"]),
    VALUES[kind]))

_TMP = Path(tempfile.mkdtemp(prefix="asrtop-fuzz-nginx-"))


def one_line(e: BaseException) -> None:
    msg = str(e)
    assert msg.startswith("ngx: ") and "\n" not in msg and "\r" not in msg, msg


def read(b: NginxBalancer):
    try:
        servers = b.servers()
    except BalancerError as e:
        one_line(e)
        return None
    for s in servers:
        assert isinstance(s, ServerState) and isinstance(s.weight, int) and s.health is Health.NO_CHECK
        assert s.port is None or isinstance(s.port, int)
    return servers


def fingerprint(path: Path):
    st_ = path.stat()
    return path.read_bytes(), st_.st_ino, st_.st_mtime_ns


@FUZZ
@given(upstream_file, actions)
def test_any_upstream_file_reads_and_changes_safely(text, action):
    path = _TMP / "upstream.conf"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    b = NginxBalancer("ngx", path, "fun_asr_backend", test_command=TRUE, reload_command=TRUE, check_running=False)
    before = read(b)
    kind, server, value = action
    fp = fingerprint(path)
    try:
        if kind == "weight":
            b.set_weight(server, value)
        elif kind == "state":
            b.set_state(server, value if isinstance(value, AdminState) else AdminState.DRAIN)
        else:
            b.set_backup(server, bool(value))
    except BalancerError as e:
        one_line(e)
        assert fingerprint(path) == fp, "a refused change touched the file"
        return
    except ValueError:  # AdminState(value) of a non-state is the caller's bug, refused before any I/O
        raise
    event("change applied")
    assert before is not None, "a change succeeded on a file the adapter could not read"
    after = read(b)
    assert after is not None and len(after) == len(before)
    for old, new in zip(before, after):
        if old.name != server:
            assert new == old, "a change to one server altered another"
            continue
        if kind == "weight":
            assert new.weight == value and (new.admin, new.backup) == (old.admin, old.backup)
        elif kind == "state":
            want = AdminState.READY if value is AdminState.READY else AdminState.MAINT
            assert new.admin is want and (new.weight, new.backup) == (old.weight, old.backup)
        else:
            assert new.backup == bool(value) and (new.weight, new.admin) == (old.weight, old.admin)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upstream_file, actions)
def test_failed_nginx_test_restores_exact_bytes(text, action):
    path = _TMP / "upstream-false.conf"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    original = path.read_bytes()
    b = NginxBalancer("ngx", path, "fun_asr_backend", test_command=FALSE, reload_command=TRUE, check_running=False)
    kind, server, value = action
    try:
        if kind == "weight":
            b.set_weight(server, value)
        elif kind == "state":
            b.set_state(server, AdminState.MAINT)
        else:
            b.set_backup(server, bool(value))
    except BalancerError as e:
        one_line(e)
    assert path.read_bytes() == original
    assert not [p for p in _TMP.iterdir() if p.name.endswith(".asrtop")], "temp file left behind"


def test_seed_block_reads():
    """The seed article's block (addresses on loopback) reads as written there."""
    path = _TMP / "seed.conf"
    path.write_text("upstream fun_asr_backend { least_conn; server 127.0.0.1:8001 weight=3 max_fails=2 "
                    "fail_timeout=30s; server 127.0.0.1:8002 weight=3 max_fails=2 fail_timeout=30s; "
                    "server 127.0.0.1:8003 backup; }\n")
    servers = read(NginxBalancer("ngx", path, "fun_asr_backend", test_command=TRUE, reload_command=TRUE,
                                 check_running=False))
    assert [(s.port, s.weight, s.backup) for s in servers] == [(8001, 3, False), (8002, 3, False), (8003, 1, True)]
