"""Loopback listen ports for the demo's processes (and the tests' servers), below the kernel's ephemeral range.

A port the kernel picks with bind(port 0) comes from the ephemeral range (ip_local_port_range), and between our
releasing it and the child process binding it, any outgoing connection on the host may take it as its local
port: under load (the demo's own traffic, a test suite) about one demo start in four failed with "port in use".
Ports below that range are never given to outgoing connections; a process-wide cursor, started at a random
place so that two processes rarely walk the same ports, hands each port out once. ASRTOP_PORT_RANGE="LOW-HIGH"
narrows the range (the test suite gives each of its parallel workers its own).
"""

from __future__ import annotations

import os
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


def _range(setting: str | None) -> tuple[int, int]:
    """[low, high) from ASRTOP_PORT_RANGE ("LOW-HIGH"), else the SPAN ports below the ephemeral range."""
    if setting:
        try:
            low, high = (int(x) for x in setting.split("-"))
            if 1024 <= low < high <= 65536:
                return low, high
        except ValueError:
            pass
        raise SystemExit(f"ASRTOP_PORT_RANGE={setting!r}: give LOW-HIGH, e.g. 20000-26000")
    high = max(1024 + SPAN, _ephemeral_low())
    return high - SPAN, high


def share(i: int, n: int) -> str:
    """The i-th of n disjoint parts of the default range, as ASRTOP_PORT_RANGE takes it."""
    low, high = _range(None)
    width = (high - low) // n
    return f"{low + i * width}-{low + (i + 1) * width}"


_lock = threading.Lock()
_LOW = _HIGH = _cursor = 0  # set on first use, so that ASRTOP_PORT_RANGE may be set after this import


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
    global _LOW, _HIGH, _cursor
    out: list[int] = []
    with _lock:
        if not _HIGH:
            _LOW, _HIGH = _range(os.environ.get("ASRTOP_PORT_RANGE"))
            _cursor = random.randrange(_HIGH - _LOW)
        for _ in range(_HIGH - _LOW):
            if len(out) == n:
                return out
            port = _LOW + _cursor
            _cursor = (_cursor + 1) % (_HIGH - _LOW)
            if _bindable(port, host):
                out.append(port)
    if len(out) < n:
        raise OSError(f"{len(out)} of {n} ports free in {_LOW}-{_HIGH}")
    return out
