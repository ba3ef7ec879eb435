"""The adapters for a cluster file's [[balancers]] entries; constructing one touches nothing (no socket, no file).

It takes the entries by shape (BalancerSpec, which asrtop.config.BalancerConfig is), so the balancers package
never imports asrtop.config: config sits above balancers.base and reads it, never the other way round.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from asrtop.balancers.base import Balancer, parse_socket
from asrtop.balancers.host import LOCAL, Host


class BalancerSpec(Protocol):
    """One [[balancers]] entry (asrtop.config.BalancerConfig)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def socket(self) -> str | None: ...
    @property
    def backend(self) -> str | None: ...
    @property
    def config(self) -> str | None: ...
    @property
    def upstream(self) -> str | None: ...
    @property
    def test_command(self) -> tuple[str, ...]: ...
    @property
    def reload_command(self) -> tuple[str, ...]: ...
    @property
    def prefix(self) -> str | None: ...
    @property
    def stub_status(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def agent_checks(self) -> str: ...
    @property
    def ssh(self) -> str | None: ...
    @property
    def ssh_identity(self) -> str | None: ...
    @property
    def ssh_known_hosts(self) -> str | None: ...
    @property
    def ssh_jump(self) -> str | None: ...


class ClusterSpec(Protocol):
    """A cluster file's balancers (asrtop.config.ClusterConfig)."""

    @property
    def balancers(self) -> Sequence[BalancerSpec]: ...


# An SSH connection (key exchange, authentication, a jump host's too) needs more than a socket round trip: a
# balancer's 2 s default timed out connecting on a loaded machine. Each Runtime API command keeps its own timeout.
SSH_MIN_TIMEOUT = 5.0


def build_balancer(cfg: BalancerSpec) -> Balancer:
    """The adapter for one [[balancers]] entry. Constructing one touches nothing (no socket, no file)."""
    # Adapters imported here: an nginx-only or haproxy-only config loads only its own adapter.
    host = balancer_host(cfg)
    if cfg.kind == "haproxy":
        from asrtop.balancers.haproxy import HAProxyBalancer

        if not cfg.socket or not cfg.backend:
            raise ValueError(f"balancer {cfg.name!r}: haproxy needs `socket` and `backend`")
        # cfg.config, when set, is the haproxy.cfg a backup toggle reads server lines from (else found from the
        # running process for a local socket)
        return HAProxyBalancer(cfg.name, cfg.socket, cfg.backend, timeout=cfg.timeout, config=cfg.config,
                               agent_checks=cfg.agent_checks, host=host)
    if cfg.kind == "nginx":
        from asrtop.balancers.nginx import NginxBalancer

        if not cfg.config or not cfg.upstream:
            raise ValueError(f"balancer {cfg.name!r}: nginx needs `config` and `upstream`")
        return NginxBalancer(cfg.name, cfg.config, cfg.upstream, test_command=cfg.test_command,
                             reload_command=cfg.reload_command, timeout=cfg.timeout, prefix=cfg.prefix,
                             stub_status=cfg.stub_status, host=host)
    raise ValueError(f"balancer {cfg.name!r}: unknown kind {cfg.kind!r} (known: haproxy, nginx)")


def balancer_host(cfg: BalancerSpec) -> Host:
    """Where the entry's balancer lives: LOCAL, or the process's one SSHHost for its `ssh` target (no
    connection yet: the first call connects)."""
    if not cfg.ssh:
        return LOCAL
    from asrtop.balancers.ssh_host import parse_ssh_spec, ssh_host  # here: a local fleet's `status` never loads it

    try:
        target = parse_ssh_spec(cfg.ssh, identity=cfg.ssh_identity, known_hosts=cfg.ssh_known_hosts,
                                jump=cfg.ssh_jump)
    except ValueError as e:
        raise ValueError(f"balancer {cfg.name!r}: ssh: {e}") from None
    if cfg.kind == "haproxy" and cfg.socket and parse_socket(cfg.socket)[0] == "tcp":
        raise ValueError(f"balancer {cfg.name!r}: with `ssh`, `socket` is the unix socket path on that host, "
                         f"not the TCP address {cfg.socket!r}")
    return ssh_host(target, max(cfg.timeout, SSH_MIN_TIMEOUT))


def build_balancers(config: ClusterSpec) -> list[Balancer]:
    """One adapter per configured balancer, in config order."""
    return [build_balancer(b) for b in config.balancers]
