"""Where a balancer's files, commands and admin socket live: this machine (LocalHost) or another one over SSH.

An adapter (nginx.py, haproxy*.py) does its file reads, atomic writes, test/reload commands, the lock that
serialises changes and its admin-socket conversations through a Host, so the same code drives a balancer here
and one on lb2. The SSH host (asrtop.balancers.ssh_host) has the same methods and raises the same errors.

Errors, the same on every host:
- a file: OSError subclasses as Python raises them locally (FileNotFoundError, PermissionError, ...), with
  `filename` set;
- a command: `run` returns (exit status, output); it raises CommandNotFound (exit 127), CommandDenied
  (exit 126) and CommandTimedOut, each with a one-line message;
- the host itself: HostUnreachable, one line naming the host ("ssh ops@lb1:22: connection refused"), for a
  transport that failed (unreachable, a refused key, a changed host key, a dropped connection).
"""

from __future__ import annotations

import fcntl
import os
import socket as _socket
import time
from contextlib import AbstractContextManager, contextmanager
from typing import Iterator, NamedTuple, Protocol, Sequence


class HostUnreachable(Exception):
    """The host's transport failed; str(e) is one line naming the host."""


class CommandNotFound(Exception):
    pass


class CommandDenied(Exception):
    pass


class CommandTimedOut(Exception):
    pass


class Reads(NamedTuple):
    """Host.read_many's answers: path -> its bytes or the OSError read_bytes raises; pattern -> glob's names;
    path -> is_dir."""

    files: dict[str, bytes | OSError]
    globs: dict[str, list[str]]
    dirs: dict[str, bool]


class Host(Protocol):
    """A machine that holds a balancer. `label` names it in every message ("local", "ssh ops@lb1:22");
    `transport` is "local" or "ssh"; `last_latency` is the seconds of the last round trip (None before one)."""

    label: str
    transport: str

    @property
    def last_latency(self) -> float | None: ...

    def read_bytes(self, path: str) -> bytes: ...

    def is_file(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def glob(self, pattern: str) -> list[str]: ...

    def read_many(self, files: Sequence[str] = (), globs: Sequence[str] = (), dirs: Sequence[str] = ()) -> Reads:
        """read_bytes, glob and is_dir of several paths at once (over SSH one round trip's wait for them all,
        as an nginx refresh reads its files); a file's OSError is its answer, HostUnreachable the call's."""

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace path in one step (a temp file in the same directory, fsync, rename, fsync the directory):
        readers see the old or the new bytes, never half. An existing file keeps its mode and owner (the
        owner only when this user may set it); a new one gets 0644."""

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        """Run argv (never through a shell here; quoted word by word over SSH) with no stdin; (exit status,
        stdout and stderr together)."""

    def lock(self, directory: str) -> AbstractContextManager[None]:
        """An exclusive flock on the directory, on that host, held for the with-block: asrtop processes on any
        machine that change this balancer take turns. A missing directory takes no lock (the read reports it)."""

    def unix_exchange(self, path: str, request: bytes, timeout: float) -> bytes:
        """Connect to a unix socket on that host, send request, read until the peer closes. OSError as a
        local connect raises it (FileNotFoundError, ConnectionRefusedError, PermissionError, TimeoutError)."""


class LocalHost:
    """This machine."""

    label = "local"
    transport = "local"

    def __init__(self) -> None:
        self._latency: float | None = None

    @property
    def last_latency(self) -> float | None:
        return self._latency

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def is_file(self, path: str) -> bool:
        return os.path.isfile(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def glob(self, pattern: str) -> list[str]:
        import glob

        return sorted(glob.glob(pattern))

    def read_many(self, files: Sequence[str] = (), globs: Sequence[str] = (), dirs: Sequence[str] = ()) -> Reads:
        return read_each(self, files, globs, dirs)

    def write_atomic(self, path: str, data: bytes) -> None:
        write_atomic(path, data)

    def run(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        import subprocess  # the write side only: `asrtop status` never loads it

        try:
            p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout)
        except FileNotFoundError:
            raise CommandNotFound(f"{argv[0]}: command not found") from None
        except PermissionError:
            raise CommandDenied(f"{argv[0]}: permission denied") from None
        except subprocess.TimeoutExpired:
            raise CommandTimedOut(f"{' '.join(argv)}: no answer within {timeout:g}s") from None
        return p.returncode, p.stdout.decode("utf-8", "replace")

    @contextmanager
    def lock(self, directory: str) -> Iterator[None]:
        with dir_lock(directory):
            yield

    def unix_exchange(self, path: str, request: bytes, timeout: float) -> bytes:
        start = time.monotonic()
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.settimeout(timeout)
        with s:
            s.connect(path)
            s.sendall(request)
            chunks: list[bytes] = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        self._latency = time.monotonic() - start
        return b"".join(chunks)


LOCAL = LocalHost()


def read_each(host: Host, files: Sequence[str], globs: Sequence[str], dirs: Sequence[str]) -> Reads:
    """Host.read_many one path after another."""
    answers: dict[str, bytes | OSError] = {}
    for path in files:
        try:
            answers[path] = host.read_bytes(path)
        except OSError as e:
            answers[path] = e
    return Reads(answers, {g: host.glob(g) for g in globs}, {d: host.is_dir(d) for d in dirs})


@contextmanager
def dir_lock(directory: str | os.PathLike) -> Iterator[None]:
    """flock on the directory itself (no lock file appears next to the config); released on close, so also
    when the process dies."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield  # missing directory: the read reports it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Host.write_atomic on this machine."""
    import tempfile  # the write side only: `asrtop status` never loads it

    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".asrtop", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), (st.st_mode & 0o7777) if st is not None else 0o644)
            if st is not None and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                try:
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
                except PermissionError:
                    pass  # not root: the file keeps our ownership, which the mode still governs
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
