"""Fuzz against the real nginx: every change the adapter makes to a valid upstream block still passes
`nginx -t` (the adapter runs Debian's nginx -t itself; a failure would come back as a refusal) and reads
back as asked, with the rest of the file byte for byte as it was outside the edited server lines."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from asrtop.balancers.base import AdminState, BalancerRefused
from asrtop.balancers.nginx import NginxBalancer

PARAMS = ["weight=3", "weight=1", "weight=1000", "backup", "down", "max_fails=2", "fail_timeout=30s",
          "max_conns=10", "max_fails=0"]
ADDRS = ["127.0.0.1:8001", "127.0.0.1:8002", "unix:/tmp/asrtop-nginx-fuzz.sock", "[::1]:8003"]
sep = st.sampled_from([" ", "\n    ", "\t", "  "])


@st.composite
def upstream(draw):
    lines = []
    if draw(st.booleans()):
        lines.append("least_conn;")
    for addr in draw(st.lists(st.sampled_from(ADDRS), min_size=1, max_size=4)):
        words = ["server", addr] + draw(st.lists(st.sampled_from(PARAMS), max_size=3, unique=True))
        lines.append(draw(sep).join(words) + ";" + draw(st.sampled_from(["", " # asr node"])))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "keepalive 16;")
    return "# ASR pool (seed layout)\nupstream fun_asr_backend {\n    " + "\n    ".join(lines) + "\n}\n"


actions = st.one_of(st.tuples(st.just("weight"), st.sampled_from(ADDRS), st.integers(1, 1000)),
                    st.tuples(st.just("state"), st.sampled_from(ADDRS), st.sampled_from(list(AdminState))),
                    st.tuples(st.just("backup"), st.sampled_from(ADDRS), st.booleans()))


@pytest.fixture(scope="module")
def prefix(nginx_bin):
    d = Path(tempfile.mkdtemp(prefix="asrtop-nginx-rw-"))
    (d / "logs").mkdir()
    (d / "conf.d").mkdir()
    (d / "nginx.conf").write_text(f"error_log {d}/logs/error.log;\npid {d}/logs/nginx.pid;\nevents {{}}\n"
                                  f"http {{\n    include conf.d/*.conf;\n}}\n")
    yield nginx_bin, d
    shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                                  HealthCheck.function_scoped_fixture])
@given(upstream(), actions)
def test_changes_to_a_valid_block_stay_valid(prefix, text, action):
    nginx, d = prefix
    path = d / "conf.d" / "upstream.conf"
    path.write_text(text)
    test = (nginx, "-t", "-q", "-p", str(d), "-c", str(d / "nginx.conf"))
    b = NginxBalancer("ngx", path, "fun_asr_backend", test_command=test, reload_command=(shutil.which("true"),),
                      check_running=False)
    assume(subprocess.run(test, capture_output=True).returncode == 0)  # nginx's own rules (e.g. not all backup)
    before = {s.name: s for s in b.servers()}
    kind, server, value = action
    assume(server in before)
    try:
        if kind == "weight":
            b.set_weight(server, value)
        elif kind == "state":
            b.set_state(server, value)
        else:
            b.set_backup(server, value)
    except BalancerRefused as e:
        # the one change nginx itself forbids here: the last primary made backup ("no servers in upstream")
        assert kind == "backup" and value and "no servers in upstream" in str(e), str(e)
        assert path.read_text() == text
        return
    after = {s.name: s for s in b.servers()}  # duplicates collapse to the last: all were edited alike
    s = after[server]
    if kind == "weight":
        assert s.weight == value
    elif kind == "state":
        assert (s.admin is AdminState.READY) == (value is AdminState.READY)
    else:
        assert s.backup is value
    new = path.read_text()
    assert new.splitlines()[0] == text.splitlines()[0] and new.count("{") == text.count("{")
    assert new.count("max_fails") == text.count("max_fails") and new.count("#") == text.count("#")
