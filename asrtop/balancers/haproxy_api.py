"""HAProxy's Runtime API (`stats socket ... level admin`, unix path or tcp host:port).

RuntimeAPI is the transport: one command per connection. HAProxy answers and closes, so a dead or restarted
process can never leave a half-read conversation behind; a socket that cannot be used is BalancerUnreachable
saying what to check. HostRuntimeAPI is the same for a unix socket on another host (host.py: over SSH), each
command one exchange through host.unix_exchange; the local socket keeps its own direct path (no extra layer). BackendAPI is that API for one backend: the two reads (`show servers state <backend>`,
`show stat`), commands that must answer as expected, and HAProxy's refusals worded for an operator
(BalancerRefused). The adapter (haproxy.py) is a BackendAPI; the backup re-create (haproxy_backup.py) works
through one.
"""

from __future__ import annotations

import re
import socket as _socket
from pathlib import Path

from asrtop.balancers.base import BalancerRefused, BalancerUnreachable, parse_socket, shown
from asrtop.balancers.haproxy_config import RunningConfig, running_config
from asrtop.balancers.haproxy_stat import first_line, to_int
from asrtop.balancers.host import LOCAL, Host, HostUnreachable

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


class HostRuntimeAPI:
    """RuntimeAPI for a unix socket on another host: one host.unix_exchange per command. The host's own
    failure (HostUnreachable: unreachable, refused key, changed host key, dropped) is BalancerUnreachable
    with the host's line; the socket's is worded like the local one's, naming the host."""

    kind = "unix"

    def __init__(self, balancer: str, spec: str, host: Host, timeout: float = 2.0):
        kind, target = parse_socket(spec)
        if kind != "unix":  # the config refuses it too: a tcp admin socket is reached directly, never over SSH
            raise ValueError(f"balancer {balancer!r}: a tcp HAProxy socket ({spec}) cannot be reached over ssh; "
                             f"give the unix path of its `stats socket`")
        self.balancer, self.spec, self.host, self.timeout = balancer, spec, host, timeout
        self.target = str(target)

    def _where(self) -> str:
        return f"HAProxy socket {self.target} on {self.host.label}"

    def command(self, cmd: str) -> str:
        try:
            answer = self.host.unix_exchange(self.target, cmd.encode() + b"\n", self.timeout)
        except HostUnreachable as e:
            raise BalancerUnreachable(f"{self.balancer}: {e} (during `{cmd}`)") from None
        except FileNotFoundError:
            raise BalancerUnreachable(
                f"{self.balancer}: {self._where()} does not exist; is HAProxy running there, and is it the path "
                f"of `stats socket` in its haproxy.cfg?") from None
        except ConnectionRefusedError:
            raise BalancerUnreachable(
                f"{self.balancer}: connection refused by {self._where()}; is HAProxy running?") from None
        except PermissionError:
            raise BalancerUnreachable(
                f"{self.balancer}: permission denied opening {self._where()}; log in as a user allowed to "
                f"use it (see `stats socket ... mode/user/group`)") from None
        except TimeoutError:
            raise BalancerUnreachable(f"{self.balancer}: {self._where()} did not answer `{cmd}` within "
                                      f"{self.timeout:g}s") from None
        except OSError as e:
            raise BalancerUnreachable(f"{self.balancer}: {self._where()} failed during `{cmd}`: "
                                      f"{e.strerror or e}") from None
        return answer.decode("utf-8", "replace")


def runtime_api(balancer: str, spec: str, host: Host = LOCAL, timeout: float = 2.0) -> RuntimeAPI | HostRuntimeAPI:
    """The Runtime API of a socket on `host`: the direct local one on this machine, else through the host."""
    if host.transport == "local":
        return RuntimeAPI(balancer, spec, timeout)
    return HostRuntimeAPI(balancer, spec, host, timeout)


class BackendAPI:
    """One backend of one HAProxy, through its Runtime API. `name` (the balancer's) starts every error.

    `api` answers command(cmd) -> text (a RuntimeAPI or HostRuntimeAPI; tests put a fake there). `config`: that
    HAProxy's haproxy.cfg (file or directory) on `host`, read for server lines by a backup toggle and for the
    server-state file; None = found from the running process (`show info` Pid -> /proc/PID/cmdline -f) when
    the socket is on `host` (a unix path, or tcp to this machine's loopback). `host`: where the socket, the
    config files and the state file live (host.py).
    """

    def __init__(self, name: str, backend: str, api: RuntimeAPI | HostRuntimeAPI, config: str | Path | None = None,
                 host: Host = LOCAL):
        self.name, self.backend, self.api, self.host = name, backend, api, host
        self.config = Path(config) if config else None
        self._running: tuple[int, RunningConfig] | None = None  # (pid, how it was started): fixed for a pid

    def process_on_host(self) -> bool:
        """Whether the HAProxy answering the socket runs on `host` (so its /proc there is its own)."""
        return self.api.kind == "unix" or self.api.target[0] in ("127.0.0.1", "localhost", "::1")

    def running(self) -> RunningConfig | None:
        """The `-f` files and cwd of the HAProxy answering the socket (`show info` Pid -> /proc/PID on `host`),
        None when it is not on `host` or says no Pid. BalancerError from `show info`; HostUnreachable from
        the host's files."""
        if not self.process_on_host():
            return None
        info = self.api.command("show info")
        pid = next((to_int(x.split(":", 1)[1].strip()) for x in info.splitlines() if x.startswith("Pid:")), None)
        if not pid:
            return None
        if self._running is None or self._running[0] != pid:  # a reload is a new pid: read its /proc again
            self._running = (pid, running_config(pid, self.host))
        return self._running[1]

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
