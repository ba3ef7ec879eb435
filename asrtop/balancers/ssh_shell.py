"""Long-lived remote shells for SSHHost: commands and locks without a new SSH session each.

Every fresh exec session costs ~9 ms wall on the host (sshd forks a session, runs the login shell), and an
nginx change used three (the lock's flock, nginx -t, reload): most of an action over SSH
(bench_nginx_ssh.py). So each connection keeps two `sh` on exec channels, started on first use:

- CommandShell runs one argv at a time, as a fresh session would (`timeout -k 1 T`, stdin /dev/null, stderr
  into stdout), its output and exit status framed by a marker random per shell. One difference: a command
  that a signal ended reports 128+N (the shell's $?), where a session of its own reported -N. A command past its timeout
  closes the shell (the host's `timeout` still ends the command); a busy shell is not waited for.
- LockShell holds flocks on its own file descriptors (3-9, dash has no more), taken without waiting
  (`flock -n`): its requests are all short, so an unlock never waits behind another lock. The locks die with
  the shell, the shell with its channel, the channel with the connection, as a dropped connection should.

Whatever these cannot do as a fresh session would (busy, a lock held elsewhere, no fd left, any error), the
caller does the fresh-session way (ssh_host.py), which gives the waits and errors as before.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
from typing import Any, Sequence

LOCK_FDS = range(3, 10)


class ShellGone(Exception):
    """The shell ended (its channel closed): use a fresh session, or report the connection's loss.
    sent: whether the request had gone out (a command may then have run)."""

    def __init__(self, sent: bool = True) -> None:
        super().__init__()
        self.sent = sent


class _Shell:
    def __init__(self, conn: Any, proc: Any) -> None:
        self.conn, self.proc, self.closed = conn, proc, False

    def close(self) -> None:
        self.closed = True  # never used again
        self.proc.close()

    def usable(self, conn: Any) -> bool:
        """On this connection, and not ended (killed on the host, say: its channel saw the end)."""
        if not self.closed and (self.proc.exit_status is not None or self.proc.stdout.at_eof()):
            self.close()
        return self.conn is conn and not self.closed


class CommandShell(_Shell):
    def __init__(self, conn: Any, proc: Any) -> None:
        super().__init__(conn, proc)
        self.busy, self.seq, self.token = False, 0, secrets.token_hex(8)

    async def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        """(exit status, output) of argv; the caller set busy. A cancelled wait (the op's timeout) closes the
        shell: what it was running no longer matches what it would answer."""
        self.seq += 1
        mark = f"{self.token}-{self.seq}"
        try:
            # a subshell: dash reports a job a signal ended ("Segmentation fault") on the stderr it has while
            # it waits, so the 2>&1 is the command's alone, inside it
            self.proc.stdin.write((f"(exec timeout -k 1 {timeout + 1:g} {shlex.join(argv)} </dev/null 2>&1); "
                                   f"printf '\\n%s %s\\n' {mark} \"$?\"\n").encode())
        except Exception:  # the channel closed since it was last seen open
            self.close()
            raise ShellGone(sent=False) from None
        sep = f"\n{mark} ".encode()
        try:
            out = await self.proc.stdout.readuntil(sep)
            status = await self.proc.stdout.readline()
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:  # EOF before the marker: the shell (or its connection) is gone
            self.close()
            raise ShellGone() from None
        if not status.endswith(b"\n"):
            self.close()
            raise ShellGone()
        return int(status), out[:-len(sep)].decode("utf-8", "replace")


class LockShell(_Shell):
    def __init__(self, conn: Any, proc: Any) -> None:
        super().__init__(conn, proc)
        self.free = list(LOCK_FDS)
        self.turn = asyncio.Lock()  # one request at a time; each is short (no waiting flock)

    async def _ask(self, script: str) -> str:
        """One request, one line back. Anything else (EOF, a cancelled wait) closes the shell: its requests
        and answers would no longer pair, and the locks it held go with it, as with the connection."""
        async with self.turn:
            if self.closed:
                raise ShellGone()
            try:
                self.proc.stdin.write(script.encode() + b"\n")
                line = await self.proc.stdout.readline()
            except BaseException as e:
                self.close()
                if isinstance(e, Exception):
                    raise ShellGone() from None
                raise  # cancelled
            if not line.endswith(b"\n"):
                self.close()
                raise ShellGone()
            return line.decode().strip()

    async def lock(self, directory: str) -> int | None | str:
        """The fd now holding directory's lock, None where the directory is missing (no lock, as locally), or
        "other" where the fresh-session way must answer (held elsewhere, no fd left, an error)."""
        if not self.free:
            return "other"
        fd, q = self.free.pop(), shlex.quote(directory)
        answer = await self._ask(
            f"if [ -d {q} ]; then command exec {fd}<{q} && {{ flock -xn {fd} && echo locked || "
            f"{{ exec {fd}<&-; echo other; }}; }} || echo other; else echo missing; fi")
        if answer == "locked":
            return fd
        self.free.append(fd)
        return None if answer == "missing" else "other"

    async def unlock(self, fd: int) -> None:
        await self._ask(f"exec {fd}<&-; echo unlocked")
        self.free.append(fd)


async def start_command_shell(conn: Any) -> CommandShell:
    import asyncssh

    # the shell's own stderr is not the command's output; the command's own stderr is sent into stdout by its
    # redirection, `not found` included
    return CommandShell(conn, await conn.create_process("exec sh", stderr=asyncssh.DEVNULL, encoding=None))


async def start_lock_shell(conn: Any) -> LockShell:
    import asyncssh

    return LockShell(conn, await conn.create_process("exec sh", stderr=asyncssh.DEVNULL, encoding=None))


class Shells:
    """One connection's shells, each started by the first call that wants it (a call that finds it starting
    or failed to start goes the fresh-session way). A new connection gets new shells."""

    def __init__(self) -> None:
        self._shells: dict[str, Any] = {}
        self._starting: set[str] = set()
        self._failed: dict[str, Any] = {}  # kind -> the connection it failed to start on (not tried again)

    async def _get(self, kind: str, conn: Any, start: Any) -> Any:
        shell = self._shells.get(kind)
        if shell is not None and shell.usable(conn):
            return shell
        if kind in self._starting or self._failed.get(kind) is conn:
            return None
        self._starting.add(kind)
        try:
            shell = await start(conn)
        except Exception:
            self._failed[kind] = conn
            return None
        finally:
            self._starting.discard(kind)
        self._shells[kind] = shell
        return shell

    async def command(self, conn: Any) -> CommandShell | None:
        """The command shell, marked busy for the caller (who clears it), or None when busy or absent."""
        shell = await self._get("command", conn, start_command_shell)
        if shell is None or shell.busy or shell.closed:
            return None
        shell.busy = True
        return shell

    async def lock(self, conn: Any) -> LockShell | None:
        return await self._get("lock", conn, start_lock_shell)
