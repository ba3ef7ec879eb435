from asrtop.balancers.base import (
    AdminState,
    Balancer,
    BalancerError,
    BalancerRefused,
    BalancerUnreachable,
    Health,
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
    "ServerState",
    "UnsupportedAction",
]
