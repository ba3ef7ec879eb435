"""HAProxy adapter over the Runtime API (`stats socket ... level admin`, unix path or tcp host:port).

One command per connection: HAProxy answers and closes, so a dead or restarted process can never leave a
half-read conversation behind. Reads: `show stat` + `show servers state <backend>`, parsed by header name
(haproxy_stat.py). Writes: `set server B/S state|weight`; the backup flag has no runtime setter and is
toggled by del/add server (haproxy_backup.py, HAProxy >= 2.4).
"""

from __future__ import annotations

import re
import socket as _socket
from pathlib import Path

from asrtop.balancers.base import (
    HAPROXY_MAX_WEIGHT,
    AdminState,
    BalancerRefused,
    BalancerUnreachable,
    ServerState,
    parse_socket,
    validate_weight,
)
from asrtop.balancers.haproxy_stat import ParseError, build_server_states, first_line

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


class HAProxyBalancer:
    """Balancer protocol over HAProxy's Runtime API for one backend.

    `config`: haproxy.cfg (file or directory) to read server lines from when toggling backup; by default
    it is found from the running process (`show info` Pid -> /proc/PID/cmdline -f) for a local socket.
    `drain_timeout`: how long a backup toggle waits for the server's sessions to end before giving up.
    """

    kind = "haproxy"
    max_weight = HAPROXY_MAX_WEIGHT

    def __init__(self, name: str, socket: str, backend: str, timeout: float = 2.0,
                 config: str | Path | None = None, drain_timeout: float = 60.0):
        self.name, self.socket, self.backend, self.timeout = name, socket, backend, timeout
        self.config = Path(config) if config else None
        self.drain_timeout = drain_timeout
        self.api = RuntimeAPI(name, socket, timeout)

    def __repr__(self) -> str:
        return f"HAProxyBalancer({self.name!r}, {self.socket!r}, {self.backend!r})"

    # -- talking -----------------------------------------------------------------------------------------

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
            raise BalancerRefused(f"{self.name}: {server!r} is not a valid HAProxy server name")

    # -- Balancer protocol -------------------------------------------------------------------------------

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

    def servers(self) -> list[ServerState]:
        stat, state = self.read()
        try:
            servers = build_server_states(stat, state, self.backend)
        except (ParseError, KeyError) as e:
            raise BalancerRefused(f"{self.name}: cannot parse HAProxy's answer: {e}") from None
        if not servers and f"\n{self.backend}," not in "\n" + stat:
            raise BalancerRefused(f"{self.name}: HAProxy has no backend {self.backend!r}")
        return servers

    def set_state(self, server: str, state: AdminState) -> None:
        self.check_name(server)
        state = AdminState(state)
        self.command(f"set server {self.backend}/{server} state {state.value}", server)

    def set_weight(self, server: str, weight: int) -> None:
        self.check_name(server)
        validate_weight(self.name, weight, HAPROXY_MAX_WEIGHT, "HAProxy")
        self.command(f"set server {self.backend}/{server} weight {weight}", server)

    def set_backup(self, server: str, backup: bool, wait: float | None = None) -> None:
        from asrtop.balancers.haproxy_backup import toggle_backup

        self.check_name(server)
        toggle_backup(self, server, bool(backup), self.drain_timeout if wait is None else wait)

