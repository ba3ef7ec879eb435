"""build_balancer / build_balancers: config entries -> adapters, touching nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asrtop.balancers import Balancer
from asrtop.balancers.factory import build_balancer, build_balancers
from asrtop.balancers.haproxy import HAProxyBalancer
from asrtop.balancers.nginx import NginxBalancer
from asrtop.config import BalancerConfig, parse_config


def test_build_from_parsed_config(tmp_path):
    cfg = parse_config({"balancers": [
        {"name": "hx", "kind": "haproxy", "socket": "/run/haproxy/admin.sock", "backend": "asr", "timeout": 1.5},
        {"name": "ng", "kind": "nginx", "config": str(tmp_path / "up.conf"), "upstream": "fun_asr_backend",
         "test_command": ["nginx", "-t", "-q"], "reload_command": ["systemctl", "reload", "nginx"]},
    ]})
    hx, ng = build_balancers(cfg)
    assert isinstance(hx, HAProxyBalancer) and isinstance(ng, NginxBalancer)
    assert isinstance(hx, Balancer) and isinstance(ng, Balancer)
    assert (hx.name, hx.kind, hx.socket, hx.backend, hx.timeout, hx.max_weight) == (
        "hx", "haproxy", "/run/haproxy/admin.sock", "asr", 1.5, 256)
    assert (ng.name, ng.kind, ng.upstream, ng.max_weight) == ("ng", "nginx", "fun_asr_backend", 1000)
    assert ng.test_command == ("nginx", "-t", "-q") and ng.reload_command == ("systemctl", "reload", "nginx")
    assert not (tmp_path / "up.conf").exists()  # constructing touches nothing


def test_bad_entries():
    with pytest.raises(ValueError, match="unknown kind"):
        build_balancer(BalancerConfig("x", "f5"))
    with pytest.raises(ValueError, match="needs `socket` and `backend`"):
        build_balancer(BalancerConfig("x", "haproxy", socket="/s"))
    with pytest.raises(ValueError, match="needs `config` and `upstream`"):
        build_balancer(BalancerConfig("x", "nginx", config="/etc/nginx/nginx.conf"))


def test_importing_balancers_stays_light():
    # and the package never imports asrtop.config (config imports balancers.base): the factory is apart
    code = ("import sys, asrtop.balancers; "
            "print(sorted(m for m in ('crossplane', 'textual', 'asrtop.balancers.nginx', 'asrtop.config') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_haproxy_config_path_reaches_the_adapter():
    cfg = parse_config({"balancers": [{"name": "hx", "kind": "haproxy", "socket": "10.0.0.1:9999", "backend": "asr",
                                       "config": "/etc/haproxy/haproxy.cfg"}]})
    (hx,) = build_balancers(cfg)
    assert str(hx.config) == "/etc/haproxy/haproxy.cfg"
    (plain,) = build_balancers(parse_config({"balancers": [{"name": "hx", "kind": "haproxy", "socket": "/s",
                                                            "backend": "asr"}]}))
    assert plain.config is None
    assert plain.agent_checks == "pause" and hx.agent_checks == "pause"
    (leave,) = build_balancers(parse_config({"balancers": [{"name": "hx", "kind": "haproxy", "socket": "/s",
                                                            "backend": "asr", "agent_checks": "leave"}]}))
    assert leave.agent_checks == "leave"
