"""A private network namespace for a test's child process: its own loopback, TCP tables and TCP counters
(/proc/net/snmp), which no other test's connections move. Entering one needs root (CAP_SYS_ADMIN); CI runs as
root, so a box without it fails with that said, never skips.

    out = run_isolated("test_module", "scenario")  # scenario() runs in the child; its stdout comes back
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
TESTS = Path(__file__).resolve().parent.parent


def enter() -> None:
    """Move this process into a new network namespace and bring its loopback up (it starts down)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)} (a private network namespace needs root)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack_from("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def run_isolated(module: str, function: str, timeout: float = 120) -> str:
    """Run `module.function()` (a module under tests/) in a child process inside its own network namespace;
    its stdout. A failure in the child raises here with the child's output."""
    code = (f"import sys; sys.path[:0] = [{str(TESTS)!r}, {str(TESTS / 'integration')!r}]\n"
            "from support.netns import enter; enter()\n"
            f"from {module} import {function}; {function}()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise AssertionError(f"{module}.{function} failed in its network namespace:\n{proc.stdout}{proc.stderr}")
    return proc.stdout
