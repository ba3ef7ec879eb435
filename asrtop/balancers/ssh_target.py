"""Where a balancer lives over SSH (the `ssh*` keys of [[balancers]]): parsed without loading asyncssh."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_SPEC = re.compile(r"^(?:(?P<user>[^@\s:/]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^@\s:/\[\]]+))"
                   r"(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class SSHTarget:
    """Where a balancer lives. user/port None: ~/.ssh/config's, else the local user and 22. jump: "user@host:port"
    of a jump host, reached with the same identity and known_hosts."""

    user: str | None
    host: str
    port: int | None = None
    identity: str | None = None
    known_hosts: str | None = None
    jump: str | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}{f':{self.port}' if self.port else ''}"

    @property
    def label(self) -> str:
        return f"ssh {self.address}"


def parse_ssh_spec(spec: str, *, identity: str | None = None, known_hosts: str | None = None,
                   jump: str | None = None) -> SSHTarget:
    """"ops@lb1:2222", "ops@lb1", "lb1", "ops@[::1]:22" -> SSHTarget; ValueError with one line otherwise."""
    m = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"{spec!r} is not an SSH destination (user@host or user@host:port)")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{spec!r}: port {port} is out of range (1-65535)")
    if jump is not None:
        parse_ssh_spec(jump)  # the same form; its error names it
    expand = lambda p: os.path.expanduser(p) if p else None  # noqa: E731
    return SSHTarget(m["user"], m["v6"] or m["host"], port, expand(identity), expand(known_hosts), jump)
