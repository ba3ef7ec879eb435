"""Load balancer adapters behind one Protocol (base.py). Build them from a cluster file with
asrtop.balancers.factory.build_balancers; this package itself never imports asrtop.config."""

from __future__ import annotations

from asrtop.balancers.base import (
    AdminState,
    Balancer,
    BalancerError,
    BalancerRefused,
    BalancerUnreachable,
    Health,
    ReportsStartTime,
    ServerState,
    UnsupportedAction,
)

__all__ = [
    "AdminState",
    "Balancer",
    "BalancerError",
    "BalancerRefused",
    "BalancerUnreachable",
    "Health",
    "ReportsStartTime",
    "ServerState",
    "UnsupportedAction",
]
