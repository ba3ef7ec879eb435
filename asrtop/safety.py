"""PURE safety checks on a cluster config: warnings an operator should see before trusting the setup.

Shown as FleetSnapshot notes (asrtop status, the TUI) through LiveFleetSource; also ClusterConfig.warnings.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asrtop.config import ClusterConfig

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def tcp_socket_host(spec: str) -> str | None:
    """The host of a Runtime API socket spec when it is TCP ("h:p", "ipv4@h:p", "ipv6@[h]:p"), else None."""
    if spec.startswith("unix@"):
        return None
    for prefix in ("ipv4@", "ipv6@"):
        if spec.startswith(prefix):
            spec = spec[len(prefix):]
            break
    host, sep, port = spec.rpartition(":")
    if not sep or not host or "/" in spec or not (port.isascii() and port.isdigit()):
        return None  # a unix socket path (same rule as the HAProxy adapter's parse_socket)
    return host.strip("[]")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name we cannot resolve purely: assume it is reachable from elsewhere


def config_warnings(config: "ClusterConfig") -> tuple[str, ...]:
    out = []
    for b in config.balancers:
        if b.kind != "haproxy" or not b.socket:
            continue
        host = tcp_socket_host(b.socket)
        if host is not None and not is_loopback(host):
            out.append(f"{b.name}: HAProxy admin socket {b.socket} is TCP on a non-loopback address: anyone who "
                       f"can reach it can drain, re-weight or delete servers (the Runtime API has no "
                       f"authentication); bind it to 127.0.0.1 or a unix socket and reach it over SSH")
    return tuple(out)
