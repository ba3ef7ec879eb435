"""asrtop/config.py: the cluster file, its lookup, discovery, and one-line errors naming file, key, problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import ConfigError, discover_nodes, find_config, load_config, parse_config

GOOD = """
[cluster]
name = "asr-prod"
min_ready = 2
refresh = 0.5
read_only = true
audit_log = "{tmp}/audit.jsonl"

[[balancers]]
name = "hx-a"
kind = "haproxy"
socket = "/run/haproxy/admin.sock"
backend = "fun_asr_backend"

[[balancers]]
name = "ngx"
kind = "nginx"
config = "/etc/nginx/conf.d/asr.conf"
upstream = "fun_asr_backend"
reload_command = ["systemctl", "reload", "nginx"]
timeout = 5

[[nodes]]
name = "node-1"
address = "10.0.0.5:10095"
agent = "http://10.0.0.5:10860"

[[nodes]]
name = "node-2"
server = "asr2"
"""


def write(tmp_path: Path, text: str, name: str = "asrtop.toml") -> Path:
    p = tmp_path / name
    p.write_text(text.replace("{tmp}", str(tmp_path)))
    return p


def test_good_file_parses_every_field(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert (cfg.name, cfg.min_ready, cfg.refresh, cfg.read_only) == ("asr-prod", 2, 0.5, True)
    assert cfg.audit_log == tmp_path / "audit.jsonl"
    hx, ngx = cfg.balancers
    assert (hx.kind, hx.socket, hx.backend, hx.timeout) == ("haproxy", "/run/haproxy/admin.sock", "fun_asr_backend", 2.0)
    assert (ngx.prefix, ngx.stub_status) == (None, None)
    assert (ngx.kind, ngx.upstream, ngx.test_command, ngx.reload_command, ngx.timeout) == (
        "nginx", "fun_asr_backend", (), ("systemctl", "reload", "nginx"), 5.0)  # (): derived by the adapter
    n1, n2 = cfg.nodes
    assert (n1.server_name, n1.address, n1.agent) == ("node-1", "10.0.0.5:10095", "http://10.0.0.5:10860")
    assert n2.server_name == "asr2"
    assert cfg.balancer("ngx") is ngx
    assert hx.agent_checks == "pause"  # the default: agent checks paused during drain/maint
    leave = load_config(write(tmp_path, GOOD.replace('backend = "fun_asr_backend"',
                                                     'backend = "fun_asr_backend"\nagent_checks = "leave"', 1)))
    assert leave.balancers[0].agent_checks == "leave"


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cfg = parse_config({"nodes": [{"name": "a"}]})
    assert (cfg.name, cfg.min_ready, cfg.refresh, cfg.read_only, cfg.prometheus) == ("asrtop", 1, 1.0, False, None)
    assert cfg.audit_log == tmp_path / "state" / "asrtop" / "audit.jsonl"


@pytest.mark.parametrize("edit,key,problem", [
    (("min_ready = 2", 'min_ready = "two"'), "cluster.min_ready", "must be int, got str 'two'"),
    (("min_ready = 2", "min_ready = -1"), "cluster.min_ready", "must be >= 0"),
    (("min_ready = 2", "min_ready = true"), "cluster.min_ready", "must be a number, got True"),
    (("refresh = 0.5", "refresh = 0"), "cluster.refresh", "must be between 0.1 and 3600"),
    (("read_only = true", 'read_only = "yes"'), "cluster.read_only", "must be bool"),
    (('name = "asr-prod"', 'name = "asr-prod"\nprometheus = "localhost:9090"'), "cluster.prometheus",
     "must be an http:// or https:// URL"),
    (('kind = "haproxy"', 'kind = "envoy"'), "balancers[0].kind", "must be one of haproxy, nginx, got 'envoy'"),
    (('socket = "/run/haproxy/admin.sock"\n', ""), "balancers[0].socket", "is required"),
    (('backend = "fun_asr_backend"', 'backend = ""'), "balancers[0].backend", "must not be empty"),
    (('upstream = "fun_asr_backend"\nreload', 'reload'), "balancers[1].upstream", "is required"),
    (('["systemctl", "reload", "nginx"]', '"systemctl reload nginx"'), "balancers[1].reload_command", "must be list"),
    (('["systemctl", "reload", "nginx"]', '[]'), "balancers[1].reload_command", "non-empty list of strings"),
    (("timeout = 5", "timeout = 0"), "balancers[1].timeout", "must be between 0 and 60 seconds"),
    (('name = "hx-a"\nkind', 'name = "hx-a"\nsokcet = "x"\nkind'), "balancers[0].sokcet", "unknown key"),
    (('address = "10.0.0.5:10095"', 'address = "10.0.0.5"'), "nodes[0].address", "must be host:port"),
    (('address = "10.0.0.5:10095"', 'address = "10.0.0.5:99999"'), "nodes[0].address", "must be host:port"),
    (('agent = "http://10.0.0.5:10860"', 'agent = "10.0.0.5:10860"'), "nodes[0].agent", "http:// or https://"),
    (('name = "node-2"', 'name = "node-1"'), "nodes[1].name", "duplicate name 'node-1'"),
    (('name = "ngx"', 'name = "hx-a"'), "balancers[1].name", "duplicate name 'hx-a'"),
    (('[cluster]', '[clutser]\n[cluster]'), "clutser", "unknown key"),
    (('backend = "fun_asr_backend"', 'backend = "fun_asr_backend"\nagent_checks = "off"'), "balancers[0].agent_checks",
     "must be one of pause, leave, got 'off'"),
    (('backend = "fun_asr_backend"', 'backend = "fun_asr_backend"\nagent_checks = false'), "balancers[0].agent_checks",
     "must be str, got bool False"),
    (('timeout = 5', 'timeout = 5\nagent_checks = "leave"'), "balancers[1].agent_checks", "is for haproxy balancers only"),
    (('timeout = 5', 'timeout = 5\nstub_status = "127.0.0.1/nginx_status"'), "balancers[1].stub_status",
     "must be an http:// or https:// URL"),
    (('timeout = 5', 'timeout = 5\nprefix = 3'), "balancers[1].prefix", "must be str"),
    (('backend = "fun_asr_backend"', 'backend = "fun_asr_backend"\nprefix = "/srv"'), "balancers[0].prefix",
     "is for nginx balancers only"),
])
def test_errors_name_file_key_and_problem(tmp_path, edit, key, problem):
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert problem in msg and "\n" not in msg


def test_not_toml_and_missing_and_empty(tmp_path):
    p = write(tmp_path, "[cluster\nname=1")
    with pytest.raises(ConfigError, match=rf"^{p}: not valid TOML: "):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="names no balancers and no nodes"):
        load_config(write(tmp_path, "[cluster]\nname = 'x'\n", "empty.toml"))


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ConfigError, match="no cluster config found .*asrtop.toml.*--config"):
        find_config(None)
    user = tmp_path / "xdg" / "asrtop" / "asrtop.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[[nodes]]\nname = 'u'\n")
    assert find_config(None) == user
    (tmp_path / "asrtop.toml").write_text("[[nodes]]\nname = 'here'\n")
    assert find_config(None) == Path("asrtop.toml")  # ./asrtop.toml wins over the user config
    assert load_config(None).nodes[0].name == "here"
    assert find_config(str(user)) == user  # --config wins over both


def _server(name, host, port):
    return ServerState(name, host, port, 1, False, AdminState.READY, Health.UP)


def test_discovery_adds_unmatched_servers_with_agent_template(tmp_path):
    text = GOOD + '\n[discovery]\nbalancer = "hx-a"\nagent_url = "http://{host}:10860/{name}"\n'
    cfg = load_config(write(tmp_path, text))
    servers = [_server("node-1-srv", "10.0.0.5", 10095),  # matches node-1 by address
               _server("asr2", "10.0.0.6", 10095),  # matches node-2 by server name
               _server("asr9", "10.0.0.9", 10095)]
    nodes = discover_nodes(cfg, servers)
    assert [n.name for n in nodes] == ["node-1", "node-2", "asr9"]
    assert (nodes[2].address, nodes[2].agent) == ("10.0.0.9:10095", "http://10.0.0.9:10860/asr9")


@pytest.mark.parametrize("discovery,problem", [
    ('balancer = "nope"', "discovery.balancer: names no configured balancer: 'nope'"),
    ('balancer = "hx-a"\nagent_url = "http://{hots}:1"', "discovery.agent_url: bad template"),
    ('balancer = "hx-a"\nagent_url = "ftp://{host}"', "discovery.agent_url: must be an http"),
])
def test_discovery_errors(tmp_path, discovery, problem):
    p = write(tmp_path, GOOD + f"\n[discovery]\n{discovery}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: {problem}" or str(e.value).startswith(f"{p}: {problem}")
