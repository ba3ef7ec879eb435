"""Cluster config: a TOML file naming balancers and nodes (format in README.md, "Configuration").

Lookup: --config PATH, else ./asrtop.toml, else $XDG_CONFIG_HOME/asrtop/asrtop.toml (~/.config/...).
Validation errors are one line: "<file>: <key>: <what is wrong>". Setups that are valid but unsafe are
ClusterConfig.warnings (shown as FleetSnapshot notes by `asrtop status` and the TUI).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from asrtop.balancers.base import ServerState, parse_socket
from asrtop.balancers.haproxy_agent import AGENT_MODES
from asrtop.balancers.ssh_target import parse_ssh_spec

BALANCER_KINDS = ("haproxy", "nginx")
RESOLVE_TIMEOUT = 1.0  # seconds for every node host name together, once per config load
RESOLVE_MAX = 256  # host names resolved per config load
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class ConfigError(ValueError):
    """One line: file, key and what is wrong."""


@dataclass(frozen=True)
class BalancerConfig:
    """One [[balancers]] entry."""

    name: str
    kind: str  # haproxy | nginx
    # haproxy: Runtime API on a unix socket path or a tcp "host:port"; the backend holding the ASR servers
    socket: str | None = None
    backend: str | None = None
    # nginx: the file holding the upstream block (or the nginx.conf including it), its name, and the commands
    # (argv) to test and reload; () = derived from config and prefix by the adapter (README: Balancers)
    config: str | None = None
    upstream: str | None = None
    test_command: tuple[str, ...] = ()
    reload_command: tuple[str, ...] = ()
    prefix: str | None = None  # nginx -p
    stub_status: str | None = None  # nginx liveness from this stub_status URL instead of a TCP connect
    timeout: float = 2.0
    agent_checks: str = "pause"  # haproxy: "pause" a server's agent check during drain/maint, or "leave" it
    # the balancer's host over SSH ("ops@lb1:2222"; None: this machine): a key file, a known_hosts file and a
    # jump host ("user@host:port"), each None for ~/.ssh/config's and the agent's (README: Balancers)
    ssh: str | None = None
    ssh_identity: str | None = None
    ssh_known_hosts: str | None = None
    ssh_jump: str | None = None


@dataclass(frozen=True)
class NodeConfig:
    """One [[nodes]] entry (or a node found by discovery)."""

    name: str
    server: str | None = None  # server name in the HAProxy backend (default: the node name)
    address: str | None = None  # "host:port" as the balancers route to it (how nginx servers are matched)
    agent: str | None = None  # agent base URL, e.g. http://10.0.0.5:10860
    # The IP addresses the host name in `address` resolved to when the config was loaded (resolve_addresses):
    # a server the balancer lists by IP is this node too. Empty for an IP, a loopback name, or a failed lookup.
    resolved: tuple[str, ...] = ()

    @property
    def server_name(self) -> str:
        return self.server or self.name

    def matches(self, server: ServerState) -> bool:
        """Is this balancer server this node? By HAProxy server name, else by host:port (the same endpoint
        however it is written: `localhost:P`, `127.0.0.1:P`, `[::1]:P`; see endpoint_key)."""
        if server.name == self.server_name:
            return True
        return self.address is not None and not self.endpoint_keys.isdisjoint(server_endpoint_keys(server))

    @functools.cached_property  # per config load: a NodeConfig lives as long as its config
    def endpoint_keys(self) -> frozenset[tuple[str, str]]:
        """endpoint_key of `address`, plus the other spellings of a loopback endpoint (empty without address)."""
        if self.address is None:
            return frozenset()
        host, port = endpoint_key(*self.address.rpartition(":")[::2])
        return frozenset(((host, port), *((alias, port) for alias in LOOPBACK_ALIASES.get(host, ())),
                          *(endpoint_key(ip, port) for ip in self.resolved)))

    @functools.cached_property
    def match_keys(self) -> tuple[str | tuple[str, str], ...]:
        """What a balancer's server index is looked up by (asrtop.fleet): the server name (a str), then the
        endpoint keys (tuples: never equal to a name). Built once per config load, never per refresh."""
        return (self.server_name, *sorted(self.endpoint_keys))


@dataclass(frozen=True)
class DiscoveryConfig:
    """Nodes taken from a balancer's servers; agent URL built from a template with {host}, {port}, {name}."""

    balancer: str
    agent_url: str | None = None


@dataclass(frozen=True)
class RolloutConfig:
    """[rollout]: how this fleet's nodes are upgraded (`asrtop rollout` and the console's rollout key).

    `hook` is an argv template (TOML: a string split with shlex, or a list), never run by a shell:
    {node}, {server}, {address}, {host}, {agent} are substituted per node."""

    hook: tuple[str, ...] = ()
    canary: Path | None = None  # WAV sent straight to each upgraded node (None: the clip asrtop ships)
    canary_text: str | None = None  # the reference transcript (None: the first node verified sets it)
    canary_api: str = "openai"  # openai (/v1/audio/transcriptions) | funasr (/asr) | gradio (/api/predict/)
    max_rtf: float = 1.0  # the canary fails when the node took longer than this x the clip's length
    max_unavailable: int = 1
    drain_timeout: float = 600.0
    hook_timeout: float = 600.0
    health_timeout: float = 120.0
    ramp: float = 0.0  # seconds: weight from 1 up to the node's weight after ready (0: at once)


CANARY_APIS = ("openai", "funasr", "gradio")


# [problems]: thresholds and durations of the problem rules (asrtop/problems), with defaults for a Fun-ASR fleet.
# name -> (default, low, high, meaning). Seconds unless the name says otherwise. The alert rules that
# `asrtop export alert-rules` prints are rendered from the same values.
PROBLEM_SETTINGS: dict[str, tuple[float, float, float, str]] = {
    "leak_window": (120.0, 10.0, 3600.0, "span over which memory growth is measured"),
    "leak_min_mb_per_s": (5.0, 0.01, 100000.0, "GPU/process/host memory growth that counts as a leak (MB/s)"),
    "leak_for": (30.0, 0.0, 86400.0, "how long memory must keep growing before it is a problem"),
    "slow_factor": (3.0, 1.1, 1000.0, "a node this many times the fleet's median latency/RTF is slow"),
    "slow_min_requests": (20.0, 1.0, 1e9, "requests a node must have answered in the window to be judged slow"),
    "slow_for": (60.0, 0.0, 86400.0, "how long a node must stay slow"),
    "error_ratio_warning": (0.05, 0.0, 1.0, "share of 5xx answers that is a warning"),
    "error_ratio_critical": (0.25, 0.0, 1.0, "share of 5xx answers that is critical"),
    "errors_for": (30.0, 0.0, 86400.0, "how long the 5xx share must stay above a threshold"),
    "gpu_temp_warning": (85.0, 0.0, 150.0, "GPU temperature that is a warning (C)"),
    "gpu_temp_critical": (92.0, 0.0, 150.0, "GPU temperature that is critical (C)"),
    "gpu_for": (60.0, 0.0, 86400.0, "how long a GPU must stay hot or throttled"),
    "forgotten_drain_after": (3600.0, 60.0, 30 * 86400.0, "a node drained or in maintenance this long is forgotten"),
    "queue_for": (60.0, 0.0, 86400.0, "how long the fleet's queue must keep growing"),
    "crash_loop_restarts": (3.0, 2.0, 1000.0, "ASR restarts within crash_loop_window that make a crash loop"),
    "crash_loop_window": (600.0, 10.0, 86400.0, "span in which restarts are counted"),
    "down_for": (10.0, 0.0, 86400.0, "how long instantaneous faults (down, unreachable, stale) must hold"),
    "clear_after": (30.0, 0.0, 86400.0, "how long a problem's condition must be gone before it clears"),
}


@dataclass(frozen=True)
class ProblemsConfig:
    """[problems]: one attribute per PROBLEM_SETTINGS key (floats), defaults from there."""

    values: tuple[tuple[str, float], ...] = tuple((k, v[0]) for k, v in PROBLEM_SETTINGS.items())

    def __post_init__(self) -> None:
        for key, value in self.values:  # plain attributes: the rules read them on every refresh
            object.__setattr__(self, key, value)

    def as_dict(self) -> dict[str, float]:
        return dict(self.values)



@dataclass(frozen=True)
class ClusterConfig:
    """The cluster file, validated."""

    path: Path | None
    name: str = "asrtop"
    balancers: tuple[BalancerConfig, ...] = ()
    nodes: tuple[NodeConfig, ...] = ()
    discovery: DiscoveryConfig | None = None
    min_ready: int = 1
    refresh: float = 1.0
    read_only: bool = False
    audit_log: Path = field(default_factory=lambda: default_state_dir() / "audit.jsonl")
    prometheus: str | None = None
    model_sha256: str | None = None  # the model digest the fleet must run (else the majority is the target)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    problems: ProblemsConfig = field(default_factory=ProblemsConfig)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Unsafe but valid setups, one line each (e.g. an HAProxy admin socket on TCP off loopback)."""
        return config_warnings(self)

    def balancer(self, name: str) -> BalancerConfig:
        for b in self.balancers:
            if b.name == name:
                return b
        raise KeyError(name)


# What `localhost` may resolve to, and back: matched without asking DNS. 127.0.0.1 and ::1 are not taken as one
# endpoint (a service may listen on one of them only); `localhost` is either.
LOOPBACK_ALIASES = {"localhost": ("127.0.0.1", "::1"), "127.0.0.1": ("localhost",), "::1": ("localhost",)}


@functools.lru_cache(maxsize=65536)
def endpoint_key(host: str, port: int | str | None) -> tuple[str, str]:
    """(host, port) in one comparable spelling, without DNS: brackets off, IP addresses in canonical form
    (`0:0::1` -> `::1`, `::ffff:10.0.0.1` -> `10.0.0.1`), names lower-case without a trailing dot, every
    loopback name (`localhost`, `ip6-localhost`, ...) as `localhost`, the port as a plain number ("" = none).
    Cached: it runs per server per refresh."""
    h = host.strip().strip("[]").lower().rstrip(".")
    p = str(port).strip() if port is not None else ""
    port_text = str(int(p)) if p.isascii() and p.isdigit() else p
    if _canonical_ipv4(h):  # most fleets: a dotted quad already in canonical form, without ipaddress' objects
        return h, port_text
    try:
        ip = ipaddress.ip_address(h)
        h = str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    except ValueError:
        if h in LOOPBACK_NAMES:
            h = "localhost"
    return h, port_text


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _canonical_ipv4(h: str) -> bool:
    """`10.0.0.7`, as ipaddress would write it: four decimal parts 0-255 without leading zeros."""
    return _CANONICAL_IPV4.fullmatch(h) is not None


def server_endpoint_keys(server: ServerState) -> tuple[tuple[str, str], ...]:
    """The keys a balancer's server is matched by against NodeConfig.endpoint_keys: endpoint_key of its host and
    port; a server without a port (nginx's `server 10.0.0.7;`, `unix:/run/asr.sock`) also by its address read
    as a node's `address` is (host:port split at the last colon), so that an address written as the balancer
    writes it always matches."""
    key = endpoint_key(server.address, server.port)
    if server.port is not None:
        return (key,)
    return key, endpoint_key(*server.address.rpartition(":")[::2])


def needs_lookup(address: str | None) -> str | None:
    """The host name of a node address that only DNS can compare (not an IP, not a loopback name), else None."""
    if not address:
        return None
    host = endpoint_key(address.rpartition(":")[0], None)[0]
    if not host or host == "localhost" or _canonical_ipv4(host):  # a dotted quad: no ipaddress object per node
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host


def resolve_addresses(config: ClusterConfig, timeout: float = RESOLVE_TIMEOUT,
                      lookup: Callable[[str], Iterable[str]] | None = None) -> ClusterConfig:
    """The config with each node's address host name resolved once (NodeConfig.resolved), all names at once,
    within `timeout` seconds in all: never per refresh. A name that fails or is late resolves to nothing (the
    node then matches by name or gets the unmatched note). Lookups run in daemon threads: a slow DNS server
    never holds up asrtop, not even at exit."""
    # bounded: a huge fleet written by host name is matched by server name beyond RESOLVE_MAX
    names = sorted({h for h in (needs_lookup(n.address) for n in config.nodes) if h})[:RESOLVE_MAX]
    if not names:
        return config
    lookup = lookup or _getaddrinfo
    found: dict[str, tuple[str, ...]] = {}
    done = threading.Event()
    pending = [len(names)]
    mutex = threading.Lock()

    def one(name: str) -> None:
        try:
            addrs = tuple(dict.fromkeys(lookup(name)))
        except Exception:  # noqa: BLE001 (any failure to resolve is "no match", reported by the note)
            addrs = ()
        with mutex:
            found[name] = addrs
            pending[0] -= 1
            if not pending[0]:
                done.set()

    for name in names:
        threading.Thread(target=one, args=(name,), daemon=True, name=f"asrtop-resolve-{name}").start()
    done.wait(timeout)
    with mutex:
        got = dict(found)
    nodes = tuple(replace(n, resolved=got.get(host, ())) if (host := needs_lookup(n.address)) else n
                  for n in config.nodes)
    return replace(config, nodes=nodes)


def _getaddrinfo(name: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)]


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name we cannot resolve purely: assume it is reachable from elsewhere


def config_warnings(config: ClusterConfig) -> tuple[str, ...]:
    """PURE: warnings an operator should see before trusting the setup (ClusterConfig.warnings)."""
    out = []
    for b in config.balancers:
        if b.kind != "haproxy" or not b.socket:
            continue
        _, target = parse_socket(b.socket)  # the spec as the HAProxy adapter connects to it
        if isinstance(target, tuple) and not is_loopback(target[0]):
            out.append(f"{b.name}: HAProxy admin socket {b.socket} is TCP on a non-loopback address: anyone who "
                       f"can reach it can drain, re-weight or delete servers (the Runtime API has no "
                       f"authentication); bind it to 127.0.0.1 or a unix socket and reach it over SSH")
    return tuple(out)


def default_config_paths() -> list[Path]:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path("asrtop.toml"), base / "asrtop" / "asrtop.toml"]


def default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "asrtop"


def find_config(explicit: str | os.PathLike | None) -> Path:
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        return p
    for p in default_config_paths():
        if p.is_file():
            return p
    tried = ", ".join(str(p) for p in default_config_paths())
    raise ConfigError(f"no cluster config found (tried {tried}); pass --config FILE or run `asrtop demo`")


def load_config(explicit: str | os.PathLike | None = None) -> ClusterConfig:
    path = find_config(explicit)
    toml = _toml()
    try:
        with open(path, "rb") as f:
            data = toml.load(f)
    except toml.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # tomllib decodes UTF-8 itself and lets this through
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    return resolve_addresses(parse_config(data, path))


def _toml():
    """tomli, the parser the standard library's tomllib was taken from, in its compiled (mypyc) build: the same
    documents, errors and words, ~4x faster (a 1,000-node cluster file: 4 vs 15 ms, which every `asrtop status`
    pays). tomllib where no compiled wheel was installed."""
    try:
        import tomli as toml
    except ImportError:
        import tomllib as toml
    return toml


class _Reader:
    """Typed access to one TOML table with errors naming file and dotted key."""

    def __init__(self, path: Path | None, prefix: str, table: Any):
        self.path, self.prefix = path, prefix
        if not isinstance(table, dict):
            self.fail("", f"must be a table, got {type(table).__name__}")
        self.table = table

    def fail(self, key: str, what: str):
        if not key.isprintable():  # a quoted TOML key may hold a newline; the error stays one line
            key = repr(key)
        where = f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)
        what = what.replace("\r", "\\r").replace("\n", "\\n")
        raise ConfigError(f"{self.path or '<config>'}: {where}: {what}")

    def get(self, key: str, kind: type | tuple, default: Any = None, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                self.fail(key, "is required")
            return default
        v = self.table[key]
        if isinstance(v, bool) and kind in (int, float, (int, float)):
            self.fail(key, f"must be a number, got {v!r}")
        if kind == (int, float) and isinstance(v, int) and not -2**63 <= v < 2**63:
            self.fail(key, f"must be a number in range, got {v!r}")  # float() of it would overflow
        if not isinstance(v, kind):
            name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(key, f"must be {name}, got {type(v).__name__} {v!r}")
        if isinstance(v, str) and required and not v.strip():
            self.fail(key, "must not be empty")
        return v

    def argv(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        v = self.get(key, list, None)
        if v is None:
            return default
        if not v or not all(isinstance(x, str) and x for x in v):
            self.fail(key, "must be a non-empty list of strings (argv, no shell)")
        return tuple(v)

    def unknown(self, known: Iterable[str]) -> None:
        extra = sorted(set(self.table) - set(known))
        if extra:
            self.fail(extra[0], f"unknown key (known: {', '.join(sorted(known))})")


def _balancer(path: Path | None, i: int, t: Any) -> BalancerConfig:
    r = _Reader(path, f"balancers[{i}]", t)
    r.unknown(("name", "kind", "socket", "backend", "config", "upstream", "test_command", "reload_command",
               "timeout", "agent_checks", "prefix", "stub_status", *SSH_KEYS))
    name = r.get("name", str, required=True)
    kind = r.get("kind", str, required=True)
    if kind not in BALANCER_KINDS:
        r.fail("kind", f"must be one of {', '.join(BALANCER_KINDS)}, got {kind!r}")
    timeout = float(r.get("timeout", (int, float), 2.0))
    if not 0 < timeout <= 60:
        r.fail("timeout", f"must be between 0 and 60 seconds, got {timeout}")
    if kind == "haproxy":
        for key in ("prefix", "stub_status"):
            if key in r.table:
                r.fail(key, "is for nginx balancers only")
        agent_checks = r.get("agent_checks", str, "pause")
        if agent_checks not in AGENT_MODES:
            r.fail("agent_checks", f"must be one of {', '.join(AGENT_MODES)}, got {agent_checks!r}")
        # optional `config`: the haproxy.cfg a backup toggle reads server lines from (default: found from
        # the running process when the socket is local)
        socket = r.get("socket", str, required=True)
        ssh = _ssh(r)
        if ssh.get("ssh") and parse_socket(socket)[0] == "tcp":
            r.fail("socket", f"{socket!r} is a TCP address; with `ssh` give the unix socket path on that host")
        return BalancerConfig(name, kind, socket=socket,
                              backend=r.get("backend", str, required=True), config=r.get("config", str),
                              timeout=timeout, agent_checks=agent_checks, **ssh)
    if "agent_checks" in r.table:
        r.fail("agent_checks", "is for haproxy balancers only (nginx has no agent checks)")
    stub_status = r.get("stub_status", str)
    if stub_status is not None:
        _check_url(r, "stub_status", stub_status)
    return BalancerConfig(name, kind, config=r.get("config", str, required=True),
                          upstream=r.get("upstream", str, required=True),
                          test_command=r.argv("test_command", BalancerConfig.test_command),
                          reload_command=r.argv("reload_command", BalancerConfig.reload_command),
                          timeout=timeout, prefix=r.get("prefix", str), stub_status=stub_status, **_ssh(r))


SSH_KEYS = ("ssh", "ssh_identity", "ssh_known_hosts", "ssh_jump")


def _ssh(r: _Reader) -> dict[str, str | None]:
    """The ssh* keys of a [[balancers]] entry, checked (a destination that parses, no ssh_* without ssh)."""
    values = {key: r.get(key, str) for key in SSH_KEYS}
    if values["ssh"] is None:
        for key in SSH_KEYS[1:]:
            if values[key] is not None:
                r.fail(key, "needs `ssh` (the balancer's host) in the same entry")
        return values
    for key in ("ssh", "ssh_jump"):
        if values[key] is not None:
            try:
                parse_ssh_spec(values[key])
            except ValueError as e:
                r.fail(key, str(e))
    for key in ("ssh_identity", "ssh_known_hosts"):
        if values[key] is not None and not values[key].strip():
            r.fail(key, "must not be empty")
    return values


def _check_url(r: _Reader, key: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        r.fail(key, f"must be an http:// or https:// URL, got {url!r}")


def _node(path: Path | None, i: int, t: Any) -> NodeConfig:
    r = _Reader(path, f"nodes[{i}]", t)
    r.unknown(("name", "server", "address", "agent"))
    node = NodeConfig(r.get("name", str, required=True), r.get("server", str), r.get("address", str),
                      r.get("agent", str))
    if node.agent is not None:
        _check_url(r, "agent", node.agent)
    if node.address is not None:
        host, _, port = node.address.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            r.fail("address", f"must be host:port, got {node.address!r}")
    return node


def parse_config(data: dict, path: Path | None = None) -> ClusterConfig:
    top = _Reader(path, "", data)
    top.unknown(("cluster", "balancers", "nodes", "discovery", "rollout", "problems"))
    c = _Reader(path, "cluster", data.get("cluster", {}))
    c.unknown(("name", "min_ready", "refresh", "read_only", "audit_log", "prometheus", "model_sha256"))
    min_ready = c.get("min_ready", int, 1)
    if min_ready < 0:
        c.fail("min_ready", f"must be >= 0, got {min_ready}")
    refresh = float(c.get("refresh", (int, float), 1.0))
    if not 0.1 <= refresh <= 3600:
        c.fail("refresh", f"must be between 0.1 and 3600 seconds, got {refresh}")
    prometheus = c.get("prometheus", str)
    if prometheus is not None:
        _check_url(c, "prometheus", prometheus)
    model_sha256 = c.get("model_sha256", str)
    if model_sha256 is not None:
        model_sha256 = model_sha256.strip().lower()
        if len(model_sha256) != 64 or not all(ch in "0123456789abcdef" for ch in model_sha256):
            c.fail("model_sha256", "must be the 64 hex digits of a model digest (the agent's model sha256, as in "
                                   "`asrtop status --json` model_sha256)")
    audit = c.get("audit_log", str)
    audit_log = default_state_dir() / "audit.jsonl"
    if audit:
        try:
            audit_log = Path(audit).expanduser()
        except RuntimeError:  # "~someone/..." naming no known user
            c.fail("audit_log", f"cannot expand the home directory in {audit!r}")
    balancers_raw = top.get("balancers", list, [])
    nodes_raw = top.get("nodes", list, [])
    balancers = tuple(_balancer(path, i, t) for i, t in enumerate(balancers_raw))
    nodes = tuple(_node(path, i, t) for i, t in enumerate(nodes_raw))
    for what, items in (("balancers", balancers), ("nodes", nodes)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                raise ConfigError(f"{path or '<config>'}: {what}[{i}].name: duplicate name {item.name!r}")
            seen.add(item.name)
    discovery = None
    if "discovery" in data:
        d = _Reader(path, "discovery", data["discovery"])
        d.unknown(("balancer", "agent_url"))
        discovery = DiscoveryConfig(d.get("balancer", str, required=True), d.get("agent_url", str))
        if discovery.balancer not in {b.name for b in balancers}:
            d.fail("balancer", f"names no configured balancer: {discovery.balancer!r}")
        if discovery.agent_url is not None:
            _check_url(d, "agent_url", discovery.agent_url)
            try:
                discovery.agent_url.format(host="h", port=1, name="n")
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as e:
                d.fail("agent_url", f"bad template (use {{host}}, {{port}}, {{name}}): {e}")
    if not nodes and discovery is None and not balancers:
        top.fail("", "names no balancers and no nodes")
    return ClusterConfig(
        path=path, name=c.get("name", str, "asrtop"), balancers=balancers, nodes=nodes, discovery=discovery,
        min_ready=min_ready, refresh=refresh, read_only=c.get("read_only", bool, False),
        audit_log=audit_log,
        prometheus=prometheus, model_sha256=model_sha256,
        rollout=_rollout(path, data["rollout"]) if "rollout" in data else RolloutConfig(),
        problems=_problems(path, data["problems"]) if "problems" in data else ProblemsConfig(),
    )


def _problems(path: Path | None, t: Any) -> ProblemsConfig:
    r = _Reader(path, "problems", t)
    r.unknown(tuple(PROBLEM_SETTINGS))
    values = []
    for key, (default, low, high, _) in PROBLEM_SETTINGS.items():
        v = float(r.get(key, (int, float), default))
        if not low <= v <= high:
            r.fail(key, f"must be between {low:g} and {high:g}, got {v:g}")
        values.append((key, v))
    d = dict(values)
    if d["error_ratio_critical"] < d["error_ratio_warning"]:
        r.fail("error_ratio_critical", "must be >= error_ratio_warning")
    if d["gpu_temp_critical"] < d["gpu_temp_warning"]:
        r.fail("gpu_temp_critical", "must be >= gpu_temp_warning")
    return ProblemsConfig(tuple(values))


HOOK_FIELDS = ("node", "server", "address", "host", "agent")


def split_hook(text: str) -> tuple[str, ...]:
    """A hook command line split like a shell would split it (shlex), never run by one. ValueError: one line."""
    import shlex

    try:
        argv = tuple(shlex.split(text))
    except ValueError as e:
        raise ValueError(f"cannot split the hook {text!r}: {e}") from None
    if not argv:
        raise ValueError("the hook is empty")
    check_hook(argv)
    return argv


def check_hook(argv: tuple[str, ...]) -> None:
    """Every {field} in the argv template is one asrtop fills in (HOOK_FIELDS); ValueError names the bad one."""
    import string

    for arg in argv:
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
        except ValueError as e:
            raise ValueError(f"bad hook argument {arg!r}: {e} (write {{{{ and }}}} for literal braces)") from None
        for name in names:
            if name not in HOOK_FIELDS:
                raise ValueError(f"the hook names {{{name}}}: known fields are "
                                 + ", ".join("{" + f + "}" for f in HOOK_FIELDS))


def _rollout(path: Path | None, t: Any) -> RolloutConfig:
    r = _Reader(path, "rollout", t)
    r.unknown(("hook", "canary", "canary_text", "canary_api", "max_rtf", "max_unavailable", "drain_timeout",
               "hook_timeout", "health_timeout", "ramp"))
    hook: tuple[str, ...] = ()
    raw = r.get("hook", (str, list))
    try:
        if isinstance(raw, str):
            hook = split_hook(raw)
        elif raw is not None:
            hook = r.argv("hook", ())
            check_hook(hook)
    except ValueError as e:
        r.fail("hook", str(e))
    canary = r.get("canary", str)
    api = r.get("canary_api", str, "openai")
    if api not in CANARY_APIS:
        r.fail("canary_api", f"must be one of {', '.join(CANARY_APIS)}, got {api!r}")
    numbers = {}
    for key, default, low, high in (("max_rtf", 1.0, 0.001, 1000), ("drain_timeout", 600.0, 0.1, 86400),
                                    ("hook_timeout", 600.0, 0.1, 86400), ("health_timeout", 120.0, 0.1, 86400),
                                    ("ramp", 0.0, 0.0, 3600)):
        v = float(r.get(key, (int, float), default))
        if not low <= v <= high:
            r.fail(key, f"must be between {low:g} and {high:g}, got {v:g}")
        numbers[key] = v
    max_unavailable = r.get("max_unavailable", int, 1)
    if max_unavailable < 1:
        r.fail("max_unavailable", f"must be >= 1, got {max_unavailable}")
    text = r.get("canary_text", str)
    return RolloutConfig(hook=hook, canary=Path(canary).expanduser() if canary else None, canary_text=text,
                         canary_api=api, max_unavailable=max_unavailable, **numbers)


def discover_nodes(config: ClusterConfig, servers: list[ServerState]) -> tuple[NodeConfig, ...]:
    """Configured nodes plus one per server of the discovery balancer not already matched (pure).

    O(nodes + servers): the names and endpoint keys matched so far are sets, not a scan of every node per
    server; a discovered node is the same NodeConfig object from one refresh to the next (its endpoint keys
    are worked out once)."""
    nodes = list(config.nodes)
    if config.discovery is None:
        return tuple(nodes)
    names = {n.server_name for n in nodes}
    keys = {k for n in nodes for k in n.endpoint_keys}
    template = config.discovery.agent_url
    for s in servers:
        if s.name in names or not keys.isdisjoint(server_endpoint_keys(s)):
            continue  # a node matches it (NodeConfig.matches)
        node = _discovered(s.name, s.endpoint, template.format(host=s.address, port=s.port, name=s.name)
                           if template else None)
        nodes.append(node)
        names.add(node.server_name)
        keys.update(node.endpoint_keys)
    return tuple(nodes)


@functools.lru_cache(maxsize=16384)
def _discovered(name: str, address: str, agent: str | None) -> NodeConfig:
    return NodeConfig(name=name, server=name, address=address, agent=agent)
