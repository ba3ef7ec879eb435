"""HAProxy's Runtime API (`stats socket ... level admin`, unix path or tcp host:port).

RuntimeAPI is the transport: one command per connection. HAProxy answers and closes, so a dead or restarted
process can never leave a half-read conversation behind; a socket that cannot be used is BalancerUnreachable
saying what to check. BackendAPI is that API for one backend: the two reads (`show servers state <backend>`,
`show stat`), commands that must answer as expected, and HAProxy's refusals worded for an operator
(BalancerRefused). The adapter (haproxy.py) is a BackendAPI; the backup re-create (haproxy_backup.py) works
through one.
"""

from __future__ import annotations

import re
import socket as _socket
from pathlib import Path

from asrtop.balancers.base import BalancerRefused, BalancerUnreachable, parse_socket, shown
from asrtop.balancers.haproxy_stat import first_line

# HAProxy proxy/server names: letters, digits, '-', '_', '.', ':' (cfgparse invalid_char); this also keeps
# a newline or ';' (command separators on the CLI) out of every command we build.
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


class RuntimeAPI:
    """Send one command to the Runtime API, return the whole answer. Errors are BalancerUnreachable."""

    def __init__(self, balancer: str, spec: str, timeout: float = 2.0):
        self.balancer, self.spec, self.timeout = balancer, spec, timeout
        self.kind, self.target = parse_socket(spec)

    def _where(self) -> str:
        return f"HAProxy socket {self.target}" if self.kind == "unix" else f"HAProxy at {self.spec}"

    def command(self, cmd: str) -> str:
        try:
            if self.kind == "unix":
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(str(self.target))
            else:
                s = _socket.create_connection(self.target, timeout=self.timeout)  # type: ignore[arg-type]
        except FileNotFoundError:
            raise BalancerUnreachable(
                f"{self.balancer}: {self._where()} does not exist; is HAProxy running, and is it the path of "
                f"`stats socket` in haproxy.cfg?") from None
        except ConnectionRefusedError:
            raise BalancerUnreachable(
                f"{self.balancer}: connection refused by {self._where()}; is HAProxy running?") from None
        except PermissionError:
            raise BalancerUnreachable(
                f"{self.balancer}: permission denied opening {self._where()}; run as a user allowed to "
                f"use it (see `stats socket ... mode/user/group`)") from None
        except _socket.timeout:
            raise BalancerUnreachable(f"{self.balancer}: {self._where()} did not answer within "
                                      f"{self.timeout:g}s") from None
        except OSError as e:
            raise BalancerUnreachable(f"{self.balancer}: cannot connect to {self._where()}: "
                                      f"{e.strerror or e}") from None
        chunks: list[bytes] = []
        try:
            with s:
                s.sendall(cmd.encode() + b"\n")
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except _socket.timeout:
            raise BalancerUnreachable(f"{self.balancer}: {self._where()} stopped answering `{cmd}` "
                                      f"after {self.timeout:g}s") from None
        except OSError as e:
            raise BalancerUnreachable(f"{self.balancer}: {self._where()} failed during `{cmd}`: "
                                      f"{e.strerror or e}") from None
        return b"".join(chunks).decode("utf-8", "replace")


class BackendAPI:
    """One backend of one HAProxy, through its Runtime API. `name` (the balancer's) starts every error.

    `api` answers command(cmd) -> text (a RuntimeAPI; tests put a fake there). `config`: that HAProxy's
    haproxy.cfg (file or directory), read for server lines by a backup toggle; None = found from the
    running process (`show info` Pid -> /proc/PID/cmdline -f) when the socket is local.
    """

    def __init__(self, name: str, backend: str, api: RuntimeAPI, config: str | Path | None = None):
        self.name, self.backend, self.api = name, backend, api
        self.config = Path(config) if config else None

    def command(self, cmd: str, server: str | None = None, ok: tuple[str, ...] = ("",)) -> str:
        """Run a command that changes something; anything but an expected answer is BalancerRefused."""
        answer = self.api.command(cmd)
        line = first_line(answer)
        if line in ok:
            return answer
        raise self.refusal(cmd, answer, server)

    def refusal(self, cmd: str, answer: str, server: str | None = None) -> BalancerRefused:
        line = first_line(answer) or "(no answer)"
        low = line.lower()
        if low.startswith("permission denied"):
            return BalancerRefused(f"{self.name}: HAProxy socket lacks `level admin` (it said {line!r} to "
                                   f"`{cmd}`); add `level admin` to its `stats socket` line")
        if low.startswith("unknown command"):
            verb = " ".join(cmd.split()[:2])
            return BalancerRefused(f"{self.name}: HAProxy does not accept `{verb}` here: the socket lacks "
                                   f"`level admin`, or this HAProxy is too old for it")
        if "backend" in low and ("no such" in low or "can't find" in low):
            return BalancerRefused(f"{self.name}: HAProxy has no backend {self.backend!r}")
        if low.startswith("no such server"):
            return BalancerRefused(f"{self.name}: HAProxy backend {self.backend!r} has no server {server!r}")
        return BalancerRefused(f"{self.name}: HAProxy refused `{cmd}`: {line}")

    def check_name(self, server: str) -> None:
        if not isinstance(server, str) or not _NAME.match(server):
            raise BalancerRefused(f"{self.name}: {shown(server)} is not a valid HAProxy server name")

    def read(self) -> tuple[str, str]:
        """Raw (`show stat`, `show servers state <backend>`) text."""
        self.check_name(self.backend)
        state = self.api.command(f"show servers state {self.backend}")
        if not state.lstrip().startswith(("1", "#")):  # version line; anything else is an error message
            raise self.refusal(f"show servers state {self.backend}", state)
        stat = self.api.command("show stat")
        if not stat.startswith("# "):
            raise self.refusal("show stat", stat)
        return stat, state
