"""Fuzz: cluster config files. Any input gives a valid ClusterConfig or ONE-line ConfigError, nothing else.

Two targets: parse_config on arbitrary TOML-shaped dicts (biased towards the real schema so the fuzzer gets
past the first check), and load_config on arbitrary file contents (text assembled from TOML fragments,
random text, random bytes).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import (BALANCER_KINDS, CANARY_APIS, HOOK_FIELDS, ClusterConfig, ConfigError, discover_nodes, load_config,
                           parse_config)

FUZZ = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])

# Strings that have tripped config parsers: format fields with attribute/index access, unicode digits,
# unknown ~user, newlines in keys and values, NUL.
NASTY = ["", " ", "haproxy", "nginx", "a", "b", "node-1", "127.0.0.1:80", "h:²", "h:٣", "h:0", "h:65536",
         ":80", "h:", "http://{host}:{port}", "http://{host.x}", "http://{port[0]}", "http://{name!z}",
         "http://{0}", "http://{", "http://}", "http://{host:d}", "~nosuchuser_asrtop/audit", "~/a.jsonl",
         "/tmp/x.sock", "a\nb", "x\x00y", "ftp://x", "http://127.0.0.1:10860"]
scalars = st.one_of(
    st.integers(), st.integers(min_value=-3, max_value=300), st.floats(), st.booleans(),
    st.sampled_from(NASTY), st.text(max_size=12), st.datetimes(),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                      max_leaves=8)

BAL_KEYS = ["name", "kind", "socket", "backend", "config", "upstream", "test_command", "reload_command", "timeout"]
NODE_KEYS = ["name", "server", "address", "agent"]
CLUSTER_KEYS = ["name", "min_ready", "refresh", "read_only", "audit_log", "prometheus"]
argv = st.lists(st.sampled_from(["nginx", "-t", "", "x"]) | st.integers(), max_size=3)


def table(keys, special=None):
    special = special or {}
    key = st.sampled_from(keys) | st.text(max_size=5)
    return st.dictionaries(key, values, max_size=len(keys) + 1).flatmap(
        lambda d: st.fixed_dictionaries({}, optional={k: special.get(k, values) for k in keys}).map(
            lambda e: {**d, **e}))


balancer = table(BAL_KEYS, {"name": st.sampled_from(["a", "b", "", " "]),
                            "kind": st.sampled_from(list(BALANCER_KINDS) + ["x"]),
                            "timeout": st.floats() | st.integers(-1, 100), "test_command": argv,
                            "reload_command": argv})
node = table(NODE_KEYS, {"name": st.sampled_from(["n1", "n2", ""]), "address": st.sampled_from(NASTY),
                         "agent": st.sampled_from(NASTY)})
cluster = table(CLUSTER_KEYS, {"min_ready": st.integers(-2, 5) | values, "refresh": st.floats() | values,
                               "audit_log": st.sampled_from(NASTY) | values})
discovery = table(["balancer", "agent_url"], {"balancer": st.sampled_from(["a", "b", "zz"]),
                                              "agent_url": st.sampled_from(NASTY)})
ROLLOUT_KEYS = ["hook", "canary", "canary_text", "canary_api", "max_rtf", "max_unavailable", "drain_timeout",
                "hook_timeout", "health_timeout", "ramp"]
HOOKS = ["up {node}", "up {nod}", "up {", "up }", 'up "{node}', "up {node.x}", "up {0}", "   ", "a;b {host}",
         "~/up {address} --to '{agent}'", "up {{node}}"]
rollout = table(ROLLOUT_KEYS, {"hook": st.sampled_from(HOOKS) | st.lists(st.sampled_from(HOOKS + [""]), max_size=3),
                               "canary_api": st.sampled_from(["openai", "funasr", "gradio", "x"]),
                               "max_unavailable": st.integers(-1, 3), "ramp": st.floats() | st.integers(-1, 5000)})
document = st.one_of(
    st.fixed_dictionaries({}, optional={"cluster": cluster, "balancers": st.lists(balancer, max_size=3),
                                        "nodes": st.lists(node, max_size=3), "discovery": discovery}),
    st.dictionaries(st.sampled_from(["cluster", "balancers", "nodes", "discovery"]) | st.text(max_size=5),
                    values, max_size=4),
)

SERVERS = [ServerState("srv", "10.0.0.1", 80, 1, False, AdminState.READY, Health.UP),
           ServerState("n1", "127.0.0.1", 8001, 3, True, AdminState.DRAIN, Health.NO_CHECK),
           ServerState("unix", "/run/x.sock", None, 1, False, AdminState.MAINT, Health.DOWN)]


def check_outcome(fn):
    """Run fn; return the config or None. Anything but a one-line ConfigError fails the test."""
    try:
        cfg = fn()
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "\r" not in msg, f"error is not one line: {msg!r}"
        return None
    assert isinstance(cfg, ClusterConfig)
    assert cfg.min_ready >= 0 and math.isfinite(cfg.refresh) and 0.1 <= cfg.refresh <= 3600
    assert isinstance(cfg.read_only, bool) and isinstance(cfg.audit_log, Path)
    assert cfg.balancers or cfg.nodes or cfg.discovery
    names = [b.name for b in cfg.balancers]
    assert len(set(names)) == len(names) and len({n.name for n in cfg.nodes}) == len(cfg.nodes)
    for b in cfg.balancers:
        assert b.kind in BALANCER_KINDS and 0 < b.timeout <= 60 and isinstance(b.name, str) and b.name.strip()
        if b.kind == "haproxy":
            assert isinstance(b.socket, str) and isinstance(b.backend, str)
        else:
            assert isinstance(b.config, str) and isinstance(b.upstream, str)
            # () = the adapter derives the command from config/prefix; a given one is a non-empty argv
            assert all(isinstance(a, str) and a for a in b.test_command + b.reload_command)
    for n in cfg.nodes:
        if n.address is not None:
            host, _, port = n.address.rpartition(":")
            assert host and 0 < int(port) < 65536
        if n.agent is not None:
            assert n.agent.startswith(("http://", "https://"))
    r = cfg.rollout  # a hook, once accepted, is a non-empty argv whose every {field} asrtop fills in
    assert r.max_unavailable >= 1 and math.isfinite(r.ramp) and r.ramp >= 0 and r.canary_api in CANARY_APIS
    for arg in r.hook:
        assert isinstance(arg, str) and arg
        arg.format(**{f: "x" for f in HOOK_FIELDS})
    if cfg.discovery is not None:
        assert cfg.discovery.balancer in names
        nodes = discover_nodes(cfg, SERVERS)  # the template must format for any server once accepted
        assert len(nodes) >= len(cfg.nodes)
    return cfg


@settings(FUZZ, max_examples=1500)  # generating these nested dicts is most of the suite's fuzzing time
@given(document)
def test_parse_config_any_dict(doc):
    check_outcome(lambda: parse_config(doc, Path("fuzz.toml")))


FRAGMENTS = [
    "[cluster]", "[[balancers]]", "[[nodes]]", "[discovery]", "[cluster.x]", 'name = "a"', 'name = "b"',
    'name = ""', 'kind = "haproxy"', 'kind = "nginx"', 'kind = 3', 'socket = "/tmp/h.sock"', 'backend = "asr"',
    'config = "/etc/nginx/conf.d/asr.conf"', 'upstream = "fun_asr_backend"', 'test_command = ["nginx", "-t"]',
    'reload_command = []', 'reload_command = [1]', 'timeout = 0', 'timeout = 1e9', 'timeout = nan',
    'timeout = inf', 'min_ready = -1', 'min_ready = 2', 'min_ready = true', 'refresh = 0.5', 'refresh = -inf',
    'read_only = "yes"', 'audit_log = "~nosuchuser_asrtop/a"', 'audit_log = ""', 'prometheus = "x"',
    'address = "127.0.0.1:8001"', 'address = "h:²"', 'address = "h:99999"', 'agent = "http://127.0.0.1:1"',
    'agent = "tcp://x"', 'balancer = "a"', 'agent_url = "http://{host.x}:{port}"',
    'agent_url = "http://{port[0]}"', 'agent_url = "http://{host}:{port}"', '"a\\nb" = 1', 'x = 1',
    'name = "a"\nname = "a"', "= 1", "[", '"', "dt = 1979-05-27T07:32:00Z", "arr = [[1], {a = 1}]",
]
texts = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=10), max_size=14).map("\n".join),
    st.text(max_size=200),
)

_TMP = Path(tempfile.mkdtemp(prefix="asrtop-fuzz-config-"))


@FUZZ
@given(st.one_of(texts.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=200)))
def test_load_config_any_file(data):
    path = _TMP / "asrtop.toml"
    path.write_bytes(data)
    cfg = check_outcome(lambda: load_config(path))
    if cfg is not None:
        assert cfg.path == path


def test_fuzzer_reaches_valid_configs():
    """Guard against a fuzzer that only ever produces errors: the fragments do build valid configs."""
    path = _TMP / "valid.toml"
    path.write_text("\n".join(["[[balancers]]", 'name = "a"', 'kind = "haproxy"', 'socket = "/tmp/h.sock"',
                               'backend = "asr"', "[discovery]", 'balancer = "a"',
                               'agent_url = "http://{host}:{port}"']))
    cfg = check_outcome(lambda: load_config(path))
    assert cfg is not None and cfg.discovery is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rollout | values)
def test_the_rollout_table_any_value(table):
    """[rollout] alone (its own test: the whole-document fuzzer above is already the slowest test of the suite)."""
    check_outcome(lambda: parse_config({"nodes": [{"name": "n1"}], "rollout": table}, Path("fuzz.toml")))
