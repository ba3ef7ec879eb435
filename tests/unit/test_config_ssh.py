"""The ssh* keys of [[balancers]]: parsed and checked by asrtop.config, turned into the adapters' Host by the
factory (one SSHHost per target), with asyncssh left unloaded until a connection is made."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.balancers.host import LOCAL
from asrtop.balancers.ssh_host import SSHHost, SSHTarget, parse_ssh_spec
from asrtop.config import ConfigError, parse_config

HX = {"name": "hx", "kind": "haproxy", "socket": "/run/haproxy/admin.sock", "backend": "asr"}
NG = {"name": "ng", "kind": "nginx", "config": "/etc/nginx/conf.d/asr.conf", "upstream": "asr"}


@pytest.mark.parametrize("spec, target", [
    ("ops@lb1:2222", SSHTarget("ops", "lb1", 2222)),
    ("ops@lb1", SSHTarget("ops", "lb1", None)),
    ("lb1.example.net", SSHTarget(None, "lb1.example.net", None)),
    ("ops@[fd00::1]:22", SSHTarget("ops", "fd00::1", 22)),
    (" ops@10.0.0.2 ", SSHTarget("ops", "10.0.0.2", None)),
])
def test_parse_ssh_spec(spec, target):
    assert parse_ssh_spec(spec) == target


@pytest.mark.parametrize("spec", ["", "ops@", "@lb1", "ops@lb1:", "ops@lb1:99999", "ops@lb1:0", "ops lb1",
                                  "ops@lb1:22:33", "ssh://ops@lb1", "ops@lb1/x"])
def test_parse_ssh_spec_refuses(spec):
    with pytest.raises(ValueError) as e:
        parse_ssh_spec(spec)
    assert "\n" not in str(e.value) and repr(spec) in str(e.value)


def test_label_names_user_host_and_port():
    assert parse_ssh_spec("ops@lb1:2222").label == "ssh ops@lb1:2222"
    assert parse_ssh_spec("lb1").label == "ssh lb1"
    assert parse_ssh_spec("ops@[fd00::1]:22").label == "ssh ops@[fd00::1]:22"


def test_keys_parsed_and_wired_to_both_adapters(tmp_path):
    cfg = parse_config({"balancers": [
        {**HX, "ssh": "ops@lb1:2222", "ssh_identity": "~/.ssh/asrtop", "ssh_known_hosts": str(tmp_path / "kh"),
         "ssh_jump": "ops@bastion"},
        {**NG, "ssh": "ops@lb1:2222", "ssh_identity": "~/.ssh/asrtop", "ssh_known_hosts": str(tmp_path / "kh"),
         "ssh_jump": "ops@bastion", "timeout": 7},
        {**HX, "name": "local"},
    ]})
    assert (cfg.balancers[0].ssh, cfg.balancers[0].ssh_jump) == ("ops@lb1:2222", "ops@bastion")
    assert cfg.balancers[2].ssh is None
    hx, ng, local = build_balancers(cfg)
    assert isinstance(hx.host, SSHHost) and ng.host is hx.host  # one host (one connection) per target
    assert hx.host.target == SSHTarget("ops", "lb1", 2222, identity=str(tmp_path.home() / ".ssh/asrtop"),
                                       known_hosts=str(tmp_path / "kh"), jump="ops@bastion")
    assert hx.host.timeout == 7.0  # the longest of the balancers sharing it
    alone = build_balancers(parse_config({"balancers": [{**HX, "ssh": "ops@lb9"}]}))[0]
    assert alone.host.timeout == 5.0 and alone.timeout == 2.0  # connecting gets 5 s, a command the balancer's 2 s
    assert (hx.host.transport, hx.host.label) == ("ssh", "ssh ops@lb1:2222")
    assert local.host is LOCAL


@pytest.mark.parametrize("entry, key, problem", [
    ({**HX, "ssh": "ops@lb1:99999"}, "ssh", "port 99999 is out of range"),
    ({**HX, "ssh": "ops lb1"}, "ssh", "is not an SSH destination"),
    ({**HX, "ssh": 22}, "ssh", "must be str"),
    ({**NG, "ssh_identity": "/k"}, "ssh_identity", "needs `ssh`"),
    ({**NG, "ssh_jump": "bastion"}, "ssh_jump", "needs `ssh`"),
    ({**NG, "ssh": "lb1", "ssh_jump": "ops@"}, "ssh_jump", "is not an SSH destination"),
    ({**NG, "ssh": "lb1", "ssh_known_hosts": " "}, "ssh_known_hosts", "must not be empty"),
    ({**HX, "socket": "127.0.0.1:9999", "ssh": "ops@lb1"}, "socket", "is a TCP address; with `ssh` give the unix"),
    ({**HX, "ssh_port": 22}, "ssh_port", "unknown key"),
])
def test_bad_ssh_keys_one_line(entry, key, problem):
    with pytest.raises(ConfigError) as e:
        parse_config({"balancers": [entry]})
    msg = str(e.value)
    assert f"balancers[0].{key}: " in msg and problem in msg and "\n" not in msg


def test_ssh_balancers_do_not_load_asyncssh_until_used():
    # `asrtop status` without ssh balancers, and building ssh ones (nothing connects yet), never import it
    code = ("import sys; from asrtop.config import parse_config; from asrtop.balancers.factory import "
            "build_balancers; build_balancers(parse_config({'balancers': [{'name': 'h', 'kind': 'haproxy', "
            "'socket': '/s', 'backend': 'b', 'ssh': 'ops@lb1'}]})); print('asyncssh' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_factory_refuses_a_tcp_socket_over_ssh():
    from asrtop.balancers.factory import build_balancer
    from asrtop.config import BalancerConfig

    with pytest.raises(ValueError, match="with `ssh`, `socket` is the unix socket path on that host"):
        build_balancer(BalancerConfig("hx", "haproxy", socket="127.0.0.1:9999", backend="asr", ssh="ops@lb1"))
    with pytest.raises(ValueError, match=r"balancer 'hx': ssh: 'ops@' is not an SSH destination"):
        build_balancer(BalancerConfig("hx", "haproxy", socket="/s", backend="asr", ssh="ops@"))
