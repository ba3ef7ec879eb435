"""Reading a server's config line (+ default-server words) from haproxy.cfg, for the backup toggle."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from asrtop.balancers.haproxy_config import find_server_line, running_config_paths, strip_managed, tokenize

CFG = """\
global
    stats socket /tmp/x.sock level admin   # admin
defaults tight
    default-server inter 100 rise 1
defaults
    mode http
    default-server inter 2s fall 3
backend asr
    balance leastconn
    default-server on-marked-down shutdown-sessions
    server n1 10.0.0.1:7860 weight 3 check maxconn 10 # primary
    server n2 10.0.0.2:7860 backup check agent-send "hello world"
backend other from tight
    server n1 10.0.0.9:80 check
"""


def test_server_line_with_defaults_in_force():
    line = find_server_line([("h.cfg", CFG)], "asr", "n1")
    assert line is not None
    assert line.address == "10.0.0.1:7860"
    assert line.words == ("weight", "3", "check", "maxconn", "10")  # comment dropped
    # the LAST defaults section applies (as in HAProxy), then the backend's own default-server
    assert line.defaults == ("inter", "2s", "fall", "3", "on-marked-down", "shutdown-sessions")
    assert line.source == "h.cfg:11"


def test_quoted_words_and_named_defaults():
    n2 = find_server_line([("h.cfg", CFG)], "asr", "n2")
    assert n2.words[-2:] == ("agent-send", "hello world")
    other = find_server_line([("h.cfg", CFG)], "other", "n1")
    assert other.address == "10.0.0.9:80" and other.defaults == ("inter", "100", "rise", "1")


def test_missing_server_or_backend():
    assert find_server_line([("h.cfg", CFG)], "asr", "n9") is None
    assert find_server_line([("h.cfg", CFG)], "nope", "n1") is None


def test_strip_managed_removes_what_add_server_gets_from_us():
    assert strip_managed(["weight", "3", "check", "backup", "id", "7", "disabled", "inter", "1s"]) == \
        ["check", "inter", "1s"]


def test_tokenize_comments_and_quotes():
    assert tokenize('  server a 1.2.3.4:80 check # note') == ["server", "a", "1.2.3.4:80", "check"]
    assert tokenize("agent-send 'x y'") == ["agent-send", "x y"]


def test_running_config_paths_of_a_real_process(tmp_path):
    # a stand-in process whose argv[0] is named like haproxy, started with -f relative to its cwd
    exe = tmp_path / "haproxy"
    exe.symlink_to(sys.executable)
    (tmp_path / "h.cfg").write_text(CFG)
    p = subprocess.Popen([str(exe), "-c", "import time; time.sleep(30)", "-f", "h.cfg"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{p.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)  # the child is still between fork and exec
        assert running_config_paths(p.pid) == [tmp_path / "h.cfg"]
    finally:
        p.kill()
        p.wait()
    assert running_config_paths(os.getpid()) == []  # not a haproxy process
