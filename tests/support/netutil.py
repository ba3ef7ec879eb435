"""Small loopback helpers shared by the tests (free ports, waiting for a listener)."""

from __future__ import annotations

import socket
import time

from asrtop.demo.ports import free_ports


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free a moment ago, below the ephemeral range so that no outgoing connection takes it before
    the server binds it (asrtop.demo.ports)."""
    return free_ports(1, host)[0]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(interval)
    return False
