"""A balancer host reached over SSH (asyncssh): the Host of host.py, with the same methods and errors.

One kept connection per target per process (ssh_host caches it), re-established on the next call after a
drop. Files go over SFTP, commands run as argv quoted word by word, the admin socket is a direct-streamlocal
channel (no socat on the host), the lock is `flock` held by a remote process that lives as long as its
channel. The methods are sync (the adapters are, called from several threads); one background thread runs
the asyncio loop all connections share. asyncssh is imported on the first connection only, so a config
without `ssh` never loads it.

Host keys are verified against known_hosts (the file given, else ~/.ssh/known_hosts and ~/.ssh/config's),
never accepted blindly; ~/.ssh/config (User, Port, IdentityFile, ProxyJump...) and the ssh agent apply.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import threading
import time
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar

from asrtop.balancers import ssh_errors
from asrtop.balancers.host import CommandDenied, CommandNotFound, CommandTimedOut, HostUnreachable, Reads
from asrtop.balancers.ssh_files import glob, isdir, read_or_error, write_atomic
from asrtop.balancers.ssh_shell import Shells, ShellGone
from asrtop.balancers.ssh_target import SSHTarget, parse_ssh_spec

__all__ = ["SSHHost", "SSHTarget", "parse_ssh_spec", "ssh_host"]

T = TypeVar("T")

KEEPALIVE_S, KEEPALIVE_MISSES = 5.0, 3  # a black-holed host is found dead in ~15-20 s even between calls


class _Loop:
    """The one asyncio loop (a daemon thread) every SSH connection of this process lives on."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="asrtop-ssh", daemon=True).start()
                cls._loop = loop
            return cls._loop


def _client_factory(host: "SSHHost") -> Any:
    """asyncssh client callbacks: a lost connection is forgotten at once, so the next call reconnects."""
    import asyncssh

    class Client(asyncssh.SSHClient):
        conn: Any = None

        def connection_made(self, conn: Any) -> None:
            self.conn = conn

        def connection_lost(self, exc: Exception | None) -> None:
            host._lost(self.conn, exc)

    return Client()


class SSHHost:
    """One balancer host over SSH (see the module doc); get one with ssh_host()."""

    transport = "ssh"

    def __init__(self, target: SSHTarget, timeout: float) -> None:
        self.target, self.timeout, self.label = target, timeout, target.label
        self._latency: float | None = None
        self._conn: Any = None
        self._jump: Any = None
        self._sftp: Any = None
        self._lost_why: str | None = None
        self._connect_lock: asyncio.Lock | None = None  # made on the loop
        self._sftp_lock: asyncio.Lock | None = None
        self._shells = Shells()  # commands and locks without a fresh session each (ssh_shell.py)

    def __repr__(self) -> str:
        return f"SSHHost({self.target.address})"

    @property
    def last_latency(self) -> float | None:
        return self._latency

    # -- the loop and the connection ------------------------------------------------------------------------

    def _call(self, op: Callable[[Any], Awaitable[T]], timeout: float | None,
              timed_out: Callable[[], BaseException] | None = None) -> T:
        """Run op(connection) on the loop; every call ends within connect + op timeout (None: the op waits as
        long as the connection lives, as the lock does). An op past its timeout raises timed_out(); without
        one, the host is taken as gone (HostUnreachable, and the next call reconnects)."""
        future = asyncio.run_coroutine_threadsafe(self._guarded(op, timeout, timed_out), _Loop.get())
        limit = None if timeout is None else 2 * self.timeout + timeout + 1
        try:
            return future.result(limit)
        except TimeoutError:
            if future.done():
                raise  # the op's own
            future.cancel()
            raise HostUnreachable(f"{self.label}: no answer within {limit:g}s") from None

    async def _guarded(self, op: Callable[[Any], Awaitable[T]], timeout: float | None,
                       timed_out: Callable[[], BaseException] | None) -> T:
        conn = await self._connection()
        try:
            async with asyncio.timeout(timeout):  # no extra task per call, unlike wait_for
                return await op(conn)
        except TimeoutError:
            if timed_out is not None:
                raise timed_out() from None
            self._drop(conn)
            raise HostUnreachable(f"{self.label}: no answer within {timeout:g}s") from None
        except Exception as e:
            if self._conn is not conn or ssh_errors.is_transport_error(e):
                self._drop(conn)
                why = self._lost_why or ssh_errors.transport_why(e, self.target)
                raise HostUnreachable(f"{self.label}: connection lost ({why})") from None
            raise

    async def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._conn is None:
                try:
                    await asyncio.wait_for(self._connect(), self.timeout * (2 if self.target.jump else 1))
                except Exception as e:
                    await self._close_jump()
                    why = ssh_errors.connect_why(e, self.target, self.timeout)
                    raise HostUnreachable(f"{self.label}: {why}") from None
            return self._conn

    async def _connect(self) -> None:
        import asyncssh

        t = self.target
        tunnel: Any = ()
        if t.jump:
            jump = parse_ssh_spec(t.jump, identity=t.identity, known_hosts=t.known_hosts)
            try:
                self._jump = tunnel = await asyncssh.connect(jump.host, **_options(jump))
                await _no_delay(tunnel)
            except Exception as e:
                why = ssh_errors.connect_why(e, jump, self.timeout)
                raise ssh_errors.JumpFailed(f"jump host {jump.address}: {why}") from None
        self._lost_why = None
        conn = await asyncssh.connect(t.host, tunnel=tunnel, client_factory=lambda: _client_factory(self),
                                      **_options(t))
        await _no_delay(conn)
        self._conn = conn

    async def _close_jump(self) -> None:
        jump, self._jump = self._jump, None
        if jump is not None:
            jump.close()

    def _lost(self, conn: Any, exc: Exception | None) -> None:
        if conn is not None and conn is self._conn:  # not an old connection we dropped ourselves
            self._lost_why = ssh_errors.transport_why(exc, self.target) if exc else "closed by the host"
            self._conn = self._sftp = None

    def _drop(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = self._sftp = None
        conn.close()
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    async def _sftp_client(self, conn: Any) -> Any:
        """The connection's one SFTP session (started by the first call that needs it)."""
        if self._sftp is None or self._conn is not conn:
            if self._sftp_lock is None:
                self._sftp_lock = asyncio.Lock()
            async with self._sftp_lock:
                if self._sftp is None or self._conn is not conn:
                    sftp = await conn.start_sftp_client()
                    if self._conn is conn:
                        self._sftp = sftp
                    return sftp
        return self._sftp

    def _timed(self, op: Callable[[Any], Awaitable[T]]) -> T:
        """A file or socket round trip: last_latency is its seconds."""
        start = time.monotonic()
        result = self._call(op, self.timeout)
        self._latency = time.monotonic() - start
        return result

    # -- files ----------------------------------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        path = os.fspath(path)

        async def op(conn: Any) -> bytes:
            data = await read_or_error(await self._sftp_client(conn), path)
            if isinstance(data, OSError):
                raise data
            return data

        return self._timed(op)

    def read_many(self, files: Sequence[str] = (), globs: Sequence[str] = (), dirs: Sequence[str] = ()) -> Reads:
        """Every request sent at once on the one SFTP session (the server answers them in turn): a refresh's
        reads cost one wait, not one per file, glob and stat (with nginx_files.Refresh, a pair of nginx
        balancers' refresh ~8 ms CPU instead of ~16-19: bench_nginx_ssh.py)."""
        files = [os.fspath(p) for p in files]

        async def op(conn: Any) -> list[Any]:
            sftp = await self._sftp_client(conn)
            # a file's error is its answer (read_or_error); what is raised is the transport's
            return await asyncio.gather(*(read_or_error(sftp, p) for p in files), *(glob(sftp, g) for g in globs),
                                        *(isdir(sftp, d) for d in dirs))

        answers = self._timed(op)
        n, m = len(files), len(files) + len(globs)
        return Reads(dict(zip(files, answers[:n])), dict(zip(globs, answers[n:m])), dict(zip(dirs, answers[m:])))

    def is_file(self, path: str) -> bool:
        return self._test(os.fspath(path), "isfile")

    def is_dir(self, path: str) -> bool:
        return self._test(os.fspath(path), "isdir")

    def _test(self, path: str, how: str) -> bool:
        async def op(conn: Any) -> bool:
            sftp = await self._sftp_client(conn)
            try:
                return await getattr(sftp, how)(path)
            except ssh_errors.sftp_error_types():
                return False  # as os.path.isfile: unreadable counts as absent

        return self._timed(op)

    def glob(self, pattern: str) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return await glob(await self._sftp_client(conn), pattern)

        return self._timed(op)

    def write_atomic(self, path: str, data: bytes) -> None:
        path = os.fspath(path)

        async def op(conn: Any) -> None:
            await write_atomic(await self._sftp_client(conn), path, data)

        self._timed(op)

    # -- commands and the lock ------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        # OpenSSH ignores signal requests (privilege separation), and a closed channel leaves the command
        # running: coreutils' `timeout` ends it on the host a moment after we stop waiting
        command = f"exec timeout -k 1 {timeout + 1:g} " + shlex.join(argv)

        async def op(conn: Any) -> tuple[int, str]:
            shell = await self._shells.command(conn)
            if shell is not None:
                try:
                    return await shell.run(argv, timeout)
                except ShellGone as e:  # sent: it may have run, so not again (as a session lost under it)
                    if e.sent:
                        raise EOFError("the connection closed under the command") from None
                finally:
                    shell.busy = False
            proc = await conn.create_process(command, stdin=_devnull(), stderr=_stdout(), encoding=None)
            try:
                out, _ = await proc.communicate()
            except asyncio.CancelledError:
                proc.close()  # timed out
                raise
            if proc.returncode is None:  # neither an exit status nor a signal: the channel went with the connection
                raise EOFError("the connection closed under the command")
            return ssh_errors.exit_code(proc), (out or b"").decode("utf-8", "replace")

        def timed_out() -> CommandTimedOut:
            return CommandTimedOut(f"{' '.join(argv)}: no answer within {timeout:g}s ({self.label})")

        status, out = self._call(op, timeout, timed_out)
        if status == 127:
            if "timeout" in out and argv[0] != "timeout" and "not found" in out and out.count("\n") <= 1:
                raise CommandNotFound(f"timeout: command not found ({self.label}; commands there need "
                                      f"coreutils' timeout)")
            raise CommandNotFound(f"{argv[0]}: command not found ({self.label})")
        if status == 126:
            raise CommandDenied(f"{argv[0]}: permission denied ({self.label})")
        return status, out

    @contextmanager
    def lock(self, directory: str) -> Iterator[None]:
        directory = os.fspath(directory)
        q = shlex.quote(directory)
        # flock holds the lock while `cat` reads the channel: the channel's end (or the connection's) ends it
        command = (f"if [ -d {q} ]; then exec flock -x {q} sh -c 'echo locked; exec cat >/dev/null'; "
                   f"else echo missing; fi")

        async def take(conn: Any) -> Any:
            shell = await self._shells.lock(conn)
            if shell is not None:
                try:
                    fd = await shell.lock(directory)
                except ShellGone:
                    if conn.is_closed():
                        raise EOFError("connection closed while taking the lock") from None
                    fd = "other"
                if fd != "other":
                    return None if fd is None else (shell, fd)
            # held elsewhere (this waits for it, as the local flock does), or the shell cannot: a session
            proc = await conn.create_process(command, stderr=_stdout(), encoding=None)
            line = await proc.stdout.readline()
            if line.strip() == b"locked":
                return proc
            if line.strip() == b"missing":
                proc.close()
                return None  # no directory, no lock (the read reports it), as locally
            if not line and conn.is_closed():
                raise EOFError("connection closed while waiting for the lock")
            out = (line + await proc.stdout.read()).decode("utf-8", "replace").strip()  # flock has ended
            proc.close()
            if "flock" in out and ("not found" in out or proc.exit_status == 127):
                raise CommandNotFound(f"flock: command not found ({self.label}; the lock needs util-linux)")
            raise CommandDenied(f"flock {directory}: {out or 'failed'} ({self.label})")

        proc = self._call(take, None)
        try:
            yield
        finally:
            if proc is not None:
                self._unlock(proc)

    def _unlock(self, proc: Any) -> None:
        """End the flock's process and wait for it, so the lock is free when the with-block ends, as locally;
        never a reconnect for it: a lost connection took the lock with it."""
        async def release() -> None:
            if isinstance(proc, tuple):  # held by the lock shell
                shell, fd = proc
                await shell.unlock(fd)
                return
            proc.stdin.write_eof()  # cat ends, then flock
            await proc.wait()
            proc.close()

        loop = _Loop.get()
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(release(), self.timeout), loop)
        try:
            future.result(self.timeout + 1)
        except Exception:
            future.cancel()
            # the channel's end ends cat, then flock (or the lock shell, and the locks it holds)
            loop.call_soon_threadsafe(proc[0].close if isinstance(proc, tuple) else proc.close)

    # -- the admin socket -----------------------------------------------------------------------------------

    def unix_exchange(self, path: str, request: bytes, timeout: float) -> bytes:
        async def op(conn: Any) -> bytes:
            reader, writer = await ssh_errors.open_unix(conn, path, lambda: self._sftp_client(conn))
            try:
                writer.write(request)
                return await reader.read()
            finally:
                writer.close()

        def timed_out() -> TimeoutError:
            return TimeoutError(f"{path}: no answer within {timeout:g}s ({self.label})")

        start = time.monotonic()
        result = self._call(op, timeout, timed_out)
        self._latency = time.monotonic() - start
        return result


async def _no_delay(conn: Any) -> None:
    """Make sshd send this connection's packets at once. sshd turns Nagle off (TCP_NODELAY) only on a
    connection whose first session has a pty; without it every Runtime API answer's last packet waits for a
    delayed ACK: ~44 ms a command instead of ~1.5 ms (bench_ssh_transport.py). So the first session is a pty
    running `cat`, idle, ended with the connection (it shows in `who` on the host while asrtop is connected).
    A host that refuses ptys (PermitTTY no) still works, at the slower pace."""
    try:
        await conn.create_process("exec cat >/dev/null", term_type="dumb", encoding=None)
    except Exception:
        pass


def _options(t: SSHTarget) -> dict[str, Any]:
    """asyncssh.connect options for a target: what is given, else ~/.ssh/config's and asyncssh's defaults."""
    # AES-GCM preferred (put first, asyncssh's defaults after): one AEAD call a packet, where asyncssh's
    # default chacha20-poly1305 costs ~2.5x the CPU per Runtime API command (bench_ssh_transport.py)
    opts: dict[str, Any] = {"keepalive_interval": KEEPALIVE_S, "keepalive_count_max": KEEPALIVE_MISSES,
                            "encryption_algs": "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"}
    if t.port:
        opts["port"] = t.port
    if t.user:
        opts["username"] = t.user
    if t.identity:
        opts["client_keys"] = [t.identity]
    if t.known_hosts:
        opts["known_hosts"] = t.known_hosts  # never None: that would accept any host key
    return opts


def _devnull() -> Any:
    import asyncssh

    return asyncssh.DEVNULL


def _stdout() -> Any:
    import asyncssh

    return asyncssh.STDOUT


_HOSTS: dict[SSHTarget, SSHHost] = {}
_HOSTS_LOCK = threading.Lock()


def ssh_host(target: SSHTarget, timeout: float) -> SSHHost:
    """The one SSHHost of this process for target (one kept connection); its timeout is the longest asked."""
    with _HOSTS_LOCK:
        host = _HOSTS.get(target)
        if host is None:
            host = _HOSTS[target] = SSHHost(target, timeout)
        host.timeout = max(host.timeout, timeout)
        return host
