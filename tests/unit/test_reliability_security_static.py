"""Security, static: no shell strings anywhere in asrtop/ or agents/, and the TCP admin socket warning."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from asrtop.balancers.base import parse_socket
from asrtop.config import config_warnings, is_loopback, parse_config
from asrtop.sources.live import LiveFleetSource
from asrtop.status_report import render_table

ROOT = Path(__file__).resolve().parents[2]
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execlp"), ("os", "spawnl"),
               ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"), ("pty", "spawn")}


def shell_uses(source: str, filename: str = "<src>") -> list[str]:
    """Lines that run a shell: shell=<anything but False>, os.system/os.popen & co, asyncio shell helpers."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(f"{filename}:{node.lineno}: shell={ast.unparse(kw.value)}")
        f = node.func
        if isinstance(f, ast.Attribute):
            base = f.value.id if isinstance(f.value, ast.Name) else ast.unparse(f.value)
            if (base, f.attr) in SHELL_CALLS or f.attr == "create_subprocess_shell":
                found.append(f"{filename}:{node.lineno}: {base}.{f.attr}")
        elif isinstance(f, ast.Name) and f.id in {"system", "popen", "getoutput", "create_subprocess_shell"}:
            found.append(f"{filename}:{node.lineno}: {f.id}")
    return found


def test_detector_finds_shell_strings():
    src = ("import os, subprocess, asyncio\nos.system('x')\nos.popen('x')\nsubprocess.run('x', shell=True)\n"
           "subprocess.Popen(c, shell=flag)\nasyncio.create_subprocess_shell('x')\nsubprocess.getoutput('x')\n"
           "subprocess.run(['x'], shell=False)\n")
    assert len(shell_uses(src)) == 6


def test_no_shell_strings_in_asrtop_or_agents():
    files = sorted(p for d in ("asrtop", "agents") for p in (ROOT / d).rglob("*.py"))
    assert len(files) > 20
    bad = [hit for p in files for hit in shell_uses(p.read_text(), str(p.relative_to(ROOT)))]
    assert bad == []


@pytest.mark.parametrize("spec, host", [("/run/haproxy/admin.sock", None), ("unix@/x:1", None),
                                        ("127.0.0.1:9999", "127.0.0.1"), ("ipv4@10.0.0.5:9999", "10.0.0.5"),
                                        ("ipv6@[::1]:9999", "::1"), ("[2001:db8::1]:9", "2001:db8::1"),
                                        ("relative/dir:12", None), ("h:²", None), ("lb.example.com:9999",
                                                                                  "lb.example.com")])
def test_tcp_socket_host(spec, host):
    kind, target = parse_socket(spec)  # the one parser: the adapter connects with it, the warning reads it
    assert (target[0] if kind == "tcp" else None) == host


@pytest.mark.parametrize("host, loop", [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
                                        ("localhost", True), ("0.0.0.0", False), ("10.0.0.5", False),
                                        ("::", False), ("lb.example.com", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def cluster(socket: str):
    return parse_config({"balancers": [{"name": "hx", "kind": "haproxy", "socket": socket, "backend": "asr"},
                                       {"name": "ngx", "kind": "nginx", "config": "/etc/nginx/asr.conf",
                                        "upstream": "fun_asr_backend"}]})


def test_warns_about_tcp_admin_socket_off_loopback_and_shows_it_in_status():
    assert config_warnings(cluster("/run/haproxy/admin.sock")) == ()
    assert config_warnings(cluster("127.0.0.1:9999")) == ()
    cfg = cluster("ipv4@0.0.0.0:9999")
    (warning,) = config_warnings(cfg)
    assert cfg.warnings == (warning,)
    assert warning.startswith("hx: HAProxy admin socket ipv4@0.0.0.0:9999 is TCP on a non-loopback address")
    # the source carries it into every snapshot (no adapters here: nothing is contacted)
    snap = asyncio.run(LiveFleetSource(cfg, None, []).snapshot())
    assert snap.notes == (warning,)
    assert f"note: {warning}" in render_table(snap)
