"""The adapters for a cluster file's [[balancers]] entries; constructing one touches nothing (no socket, no file).

A module of its own because it reads asrtop.config, which imports balancers.base: the package
(asrtop/balancers/__init__.py) never imports asrtop.config.
"""

from __future__ import annotations

from asrtop.balancers.base import Balancer
from asrtop.config import BalancerConfig, ClusterConfig


def build_balancer(cfg: BalancerConfig) -> Balancer:
    """The adapter for one [[balancers]] entry. Constructing one touches nothing (no socket, no file)."""
    # Adapters imported here: crossplane is loaded only when nginx is configured.
    if cfg.kind == "haproxy":
        from asrtop.balancers.haproxy import HAProxyBalancer

        if not cfg.socket or not cfg.backend:
            raise ValueError(f"balancer {cfg.name!r}: haproxy needs `socket` and `backend`")
        # cfg.config, when set, is the haproxy.cfg a backup toggle reads server lines from (else found from the
        # running process for a local socket)
        return HAProxyBalancer(cfg.name, cfg.socket, cfg.backend, timeout=cfg.timeout, config=cfg.config)
    if cfg.kind == "nginx":
        from asrtop.balancers.nginx import NginxBalancer

        if not cfg.config or not cfg.upstream:
            raise ValueError(f"balancer {cfg.name!r}: nginx needs `config` and `upstream`")
        return NginxBalancer(cfg.name, cfg.config, cfg.upstream, test_command=cfg.test_command,
                             reload_command=cfg.reload_command, timeout=cfg.timeout)
    raise ValueError(f"balancer {cfg.name!r}: unknown kind {cfg.kind!r} (known: haproxy, nginx)")


def build_balancers(config: ClusterConfig) -> list[Balancer]:
    """One adapter per configured balancer, in config order."""
    return [build_balancer(b) for b in config.balancers]
