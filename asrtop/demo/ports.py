"""Loopback listen ports for the demo's processes (and the tests' servers), below the kernel's ephemeral range.

A port the kernel picks with bind(port 0) comes from the ephemeral range (ip_local_port_range), and between our
releasing it and the child process binding it, any outgoing connection on the host may take it as its local
port: under load (the demo's own traffic, a test suite) about one demo start in four failed with "port in use".
Ports below that range are never given to outgoing connections; a process-wide cursor, started at a random
place so that two processes rarely walk the same ports, hands each port out once.
"""

from __future__ import annotations

import random
import socket
import threading

SPAN = 12_000  # ports below the ephemeral range taken in turn; wraps around


def _ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_LOW = max(1024 + SPAN, _ephemeral_low())
_lock = threading.Lock()
_cursor = random.randrange(SPAN)


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports free on `host` now and not handed out before by this process; OSError when the range
    has fewer than n free."""
    global _cursor
    out: list[int] = []
    with _lock:
        for _ in range(SPAN):
            if len(out) == n:
                return out
            port = _LOW - SPAN + _cursor
            _cursor = (_cursor + 1) % SPAN
            if _bindable(port, host):
                out.append(port)
    if len(out) < n:
        raise OSError(f"{len(out)} of {n} ports free below {_LOW}")
    return out
