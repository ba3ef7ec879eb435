"""SSHHost (asrtop/balancers/ssh_host.py) against a real OpenSSH server on 127.0.0.1: every Host method with
LocalHost's semantics and errors, host keys verified, each transport failure one line, reconnect, jump host."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from asrtop.balancers.host import LOCAL, CommandDenied, CommandNotFound, CommandTimedOut, HostUnreachable
from asrtop.balancers.ssh_host import SSHHost, ssh_host
from support.netutil import free_port


@pytest.fixture(scope="module")
def host(sshd):
    return ssh_host(sshd.target, 3.0)


def lock_is_free(directory: Path) -> bool:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def unix_server(tmp_path):
    """A unix socket that answers "got <request>" and closes, as HAProxy's Runtime API does."""
    path = str(tmp_path / "admin.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(16)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.sendall(b"got " + c.recv(4096))

    threading.Thread(target=serve, daemon=True).start()
    yield path
    srv.close()


def test_files(host, tmp_path):
    (tmp_path / "a.conf").write_bytes(b"upstream x {}\n")
    (tmp_path / "b.conf").write_bytes(b"")
    (tmp_path / ".hidden.conf").write_bytes(b"")  # as glob.glob: `*` does not match it
    (tmp_path / "sub").mkdir()
    assert host.read_bytes(str(tmp_path / "a.conf")) == b"upstream x {}\n"
    assert host.last_latency is not None and host.last_latency > 0
    assert host.is_file(str(tmp_path / "a.conf")) and not host.is_file(str(tmp_path / "sub"))
    assert host.is_dir(str(tmp_path / "sub")) and not host.is_dir(str(tmp_path / "a.conf"))
    assert not host.is_file(str(tmp_path / "none")) and not host.is_dir(str(tmp_path / "none"))
    assert host.glob(str(tmp_path / "*.conf")) == [str(tmp_path / "a.conf"), str(tmp_path / "b.conf")]
    assert host.glob(str(tmp_path / "*.nothing")) == []
    assert host.glob(str(tmp_path / ".*.conf")) == [str(tmp_path / ".hidden.conf")]
    with pytest.raises(FileNotFoundError) as e:
        host.read_bytes(str(tmp_path / "none"))
    assert e.value.filename == str(tmp_path / "none")
    with pytest.raises(IsADirectoryError):
        host.read_bytes(str(tmp_path / "sub"))


def test_read_many_answers_as_local_in_one_call(host, tmp_path):
    """Files (small, empty, larger than one SFTP read, /proc, missing, a directory), globs and dirs at once:
    the same answers and errors as LocalHost's, in one call (last_latency is that one round trip)."""
    (tmp_path / "a.conf").write_bytes(b"upstream x {}\n")
    (tmp_path / "b.conf").write_bytes(b"")
    (tmp_path / "big").write_bytes(bytes(range(256)) * 700)  # 175 KB: past the one-request read
    (tmp_path / "sub").mkdir()
    files = [str(tmp_path / n) for n in ("a.conf", "b.conf", "big", "none", "sub")] + [f"/proc/{os.getpid()}/cmdline"]
    (tmp_path / "sub" / "c.conf").write_bytes(b"")
    globs = [str(tmp_path / p) for p in ("*.conf", "*.x", "none/*.conf", "s*/*.conf", "[ab].conf")]
    args = (files, globs, [str(tmp_path / "sub"), str(tmp_path / "a.conf")])
    calls = []
    real = host._call
    host._call = lambda *a, **kw: calls.append(a) or real(*a, **kw)
    try:
        there = host.read_many(*args)
    finally:
        del host._call
    here = LOCAL.read_many(*args)
    assert len(calls) == 1 and there.globs == here.globs and there.dirs == here.dirs == {
        str(tmp_path / "sub"): True, str(tmp_path / "a.conf"): False}
    for path in files:
        a, b = there.files[path], here.files[path]
        assert (type(a), getattr(a, "filename", None)) == (type(b), getattr(b, "filename", None)), path
        if isinstance(b, bytes):
            assert a == b, path
    assert there.globs[globs[3]] == [str(tmp_path / "sub" / "c.conf")] and len(there.globs[globs[4]]) == 2
    assert isinstance(there.files[str(tmp_path / "none")], FileNotFoundError)
    assert isinstance(there.files[str(tmp_path / "sub")], IsADirectoryError)


def test_write_atomic_keeps_mode_and_owner(host, tmp_path):
    f = tmp_path / "up.conf"
    f.write_bytes(b"old")
    os.chmod(f, 0o640)
    if os.geteuid() == 0:
        os.chown(f, 1234, 1234)  # as root there, the owner is kept as locally
    before = f.stat()
    host.write_atomic(str(f), b"new bytes")
    after = f.stat()
    assert f.read_bytes() == b"new bytes" and after.st_ino != before.st_ino  # replaced, not rewritten in place
    assert (after.st_mode & 0o7777, after.st_uid, after.st_gid) == (0o640, before.st_uid, before.st_gid)
    host.write_atomic(str(tmp_path / "new.conf"), b"x")
    assert (tmp_path / "new.conf").stat().st_mode & 0o7777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.conf", "up.conf"]  # no temp file left

    with pytest.raises(FileNotFoundError):
        host.write_atomic(str(tmp_path / "no-dir" / "x.conf"), b"x")


def test_run_quotes_argv_word_by_word(host, tmp_path):
    status, out = host.run(["printf", "%s|", "a b", "$HOME", ";", "'q'", ""], 5)
    assert (status, out) == (0, "a b|$HOME|;|'q'||")
    assert host.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 5) == (3, "out\nerr\n")
    with pytest.raises(CommandNotFound, match=r"^no-such-cmd-xyz: command not found \(ssh "):
        host.run(["no-such-cmd-xyz", "-t"], 5)
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(CommandDenied, match="permission denied"):
        host.run([str(script)], 5)


def test_a_hanging_command_times_out_and_is_killed(host):
    start = time.monotonic()
    with pytest.raises(CommandTimedOut, match=r"sleep 41\.5: no answer within 0\.3s"):
        host.run(["sleep", "41.5"], 0.3)
    assert time.monotonic() - start < 10  # not the 41.5 s the command would take (bounds wide: a loaded CI box)
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", "sleep 41.5"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the remote command outlived its timeout"
        time.sleep(0.05)
    assert host.run(["true"], 5) == (0, "")  # the connection is still good


def test_unix_exchange(host, unix_server, tmp_path):
    assert host.unix_exchange(unix_server, b"show info\n", 2) == b"got show info\n"
    assert 0 < host.last_latency < 2
    with pytest.raises(FileNotFoundError):
        host.unix_exchange(str(tmp_path / "none.sock"), b"x", 2)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "dead.sock"))  # bound, not listening: refused, as a local connect is
    with pytest.raises(ConnectionRefusedError):
        host.unix_exchange(str(tmp_path / "dead.sock"), b"x", 2)
    dead.close()


def test_unix_exchange_times_out(host, tmp_path):
    path = str(tmp_path / "mute.sock")
    mute = socket.socket(socket.AF_UNIX)
    mute.bind(path)
    mute.listen(1)  # accepts, never answers
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        host.unix_exchange(path, b"show info\n", 0.5)
    assert time.monotonic() - start < 10  # not held until the peer goes
    mute.close()


def test_calls_from_many_threads_share_one_connection(host, unix_server, tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    results, errors = [], []

    def worker(i):
        try:
            results.append(host.unix_exchange(unix_server, b"cmd %d\n" % i, 5))
            results.append(host.read_bytes(str(tmp_path / "f")))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    assert sorted(r for r in results if r != b"data") == sorted(b"got cmd %d\n" % i for i in range(8))
    assert results.count(b"data") == 8


def test_lock_held_on_the_host_for_the_block(host, tmp_path):
    assert lock_is_free(tmp_path)
    with host.lock(str(tmp_path)):
        assert not lock_is_free(tmp_path)  # the remote flock excludes a local asrtop too
    assert lock_is_free(tmp_path)
    with host.lock(str(tmp_path / "missing")):  # no directory: no lock, the read reports it
        pass


def test_one_host_per_target(sshd, host):
    assert ssh_host(sshd.target, 1.0) is host
    assert ssh_host(dataclasses.replace(sshd.target), 1.0) is host
    assert host.label == f"ssh {sshd.user}@127.0.0.1:{sshd.port}"


def test_unknown_and_changed_host_keys_are_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    stranger = SSHHost(dataclasses.replace(sshd.target, known_hosts=str(empty)), 3.0)
    with pytest.raises(HostUnreachable) as e:
        stranger.run(["true"], 5)
    assert str(e.value).startswith(f"ssh {sshd.user}@127.0.0.1:{sshd.port}: host key not trusted")
    sshd.new_host_key()
    try:
        with pytest.raises(HostUnreachable, match="host key changed"):
            SSHHost(sshd.target, 3.0).run(["true"], 5)
    finally:
        sshd.trust_host_key()
    assert SSHHost(sshd.target, 3.0).run(["true"], 5) == (0, "")


def test_refused_key(sshd, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(HostUnreachable, match=rf"^ssh \S+:{sshd.port}: authentication refused \(key {other};"):
        SSHHost(dataclasses.replace(sshd.target, identity=str(other)), 3.0).run(["true"], 5)
    missing = tmp_path / "no_such_key"
    with pytest.raises(HostUnreachable, match=rf"^ssh \S+: {missing}: No such file or directory$"):
        SSHHost(dataclasses.replace(sshd.target, identity=str(missing)), 3.0).run(["true"], 5)


def test_unreachable_and_black_holed_hosts(sshd):
    port = free_port()
    with pytest.raises(HostUnreachable, match=rf"^ssh \S+@127.0.0.1:{port}: connection refused"):
        SSHHost(dataclasses.replace(sshd.target, port=port), 3.0).read_bytes("/etc/hostname")
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # the TCP handshake completes, no SSH banner ever comes
    try:
        start = time.monotonic()
        with pytest.raises(HostUnreachable, match=r"no answer within 0\.5s"):
            SSHHost(dataclasses.replace(sshd.target, port=hole.getsockname()[1]), 0.5).run(["true"], 5)
        assert time.monotonic() - start < 3
    finally:
        hole.close()


def test_drop_then_reconnect_and_the_lock_dies_with_the_connection(sshd, tmp_path):
    host = SSHHost(sshd.target, 3.0)
    assert host.run(["true"], 5) == (0, "")
    with pytest.raises(HostUnreachable, match=r"^ssh \S+: "):
        with host.lock(str(tmp_path)):
            assert not lock_is_free(tmp_path)
            sshd.stop()  # the host goes away with the lock's holder
            assert lock_is_free(tmp_path)
            host.run(["true"], 5)
    try:
        with pytest.raises(HostUnreachable, match="connection refused"):
            host.read_bytes(str(tmp_path / "x"))
    finally:
        sshd.start()
    assert host.run(["echo", "back"], 5) == (0, "back\n")  # the next call reconnects


def test_jump_host(sshd, tmp_path):
    (tmp_path / "f").write_bytes(b"via jump")
    via = SSHHost(dataclasses.replace(sshd.target, jump=sshd.spec), 3.0)
    assert via.read_bytes(str(tmp_path / "f")) == b"via jump"
    assert via.run(["echo", "ok"], 5) == (0, "ok\n")
    bad = SSHHost(dataclasses.replace(sshd.target, jump=f"{sshd.user}@127.0.0.1:{free_port()}"), 3.0)
    with pytest.raises(HostUnreachable, match=r"^ssh \S+: jump host \S+: connection refused"):
        bad.run(["true"], 5)


def test_a_host_that_stops_answering_never_hangs_the_caller(sshd, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    before = {p.pid for p in psutil.Process(sshd.proc.pid).children(recursive=True)}
    host = SSHHost(sshd.target, 1.0)
    assert _read_connecting(host, tmp_path / "f") == b"x"
    session = [p for p in psutil.Process(sshd.proc.pid).children(recursive=True) if p.pid not in before]
    for p in session:
        with contextlib.suppress(psutil.NoSuchProcess):  # another test's session ending meanwhile
            p.suspend()  # the connection stays up, nothing answers on it: a black-holed host
    try:
        start = time.monotonic()
        with pytest.raises(HostUnreachable, match=r"^ssh \S+: no answer within 1s"):
            host.read_bytes(str(tmp_path / "f"))
        assert time.monotonic() - start < 10  # ended by the timeout, not hung
    finally:
        for p in session:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.resume()
    assert _read_connecting(host, tmp_path / "f") == b"x"  # a new connection


def _read_connecting(host: SSHHost, path) -> bytes:
    """read_bytes that may connect: a 1 s connect may take a few tries on a loaded machine."""
    for attempt in range(5):
        try:
            return host.read_bytes(str(path))
        except HostUnreachable:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def test_the_lock_serialises_two_connections(sshd, tmp_path):
    first, second = SSHHost(sshd.target, 3.0), SSHHost(sshd.target, 3.0)
    order = []

    def take_second():
        with second.lock(str(tmp_path)):
            order.append("second")

    with first.lock(str(tmp_path)):
        t = threading.Thread(target=take_second)
        t.start()
        time.sleep(0.3)  # long enough for the second flock to be waiting on the host
        order.append("first done")
    t.join(10)
    assert order == ["first done", "second"]


def test_commands_and_locks_open_no_new_session_once_connected(tmp_path):
    """An nginx change is a lock, a write and two commands: on a kept connection none of them starts an SSH
    session on the host (each would be a fork and a login shell there, ~9 ms: bench_nginx_ssh.py), counted by
    sshd itself; and a command there still answers as in a session of its own."""
    from conftest import require_binary
    from support.sshd import Sshd

    server = Sshd(require_binary("sshd"), tmp_path / "sshd")
    config = server.dir / "sshd_config"
    config.write_text(config.read_text().replace("LogLevel ERROR", "LogLevel VERBOSE"))  # logs each session
    with server:
        def sessions() -> int:
            return (server.dir / "sshd.log").read_text().count("Starting session: command")

        host = SSHHost(server.target, 3.0)
        with host.lock(str(tmp_path)):  # connect, start what the connection keeps
            assert host.run(["true"], 5) == (0, "")
        before = sessions()
        for i in range(3):
            with host.lock(str(tmp_path)):
                assert not lock_is_free(tmp_path)
                host.write_atomic(str(tmp_path / "upstream.conf"), b"server a;\n")
                assert host.run(["sh", "-c", "printf 'out\\nerr' >&2; exit 3"], 5) == (3, "out\nerr")
                assert host.run(["cat"], 5) == (0, "")  # stdin is empty, as in a session of its own
                assert host.run(["sh", "-c", "kill -SEGV $$"], 5)[1] == ""  # no word of the shell's in it
            assert lock_is_free(tmp_path)
        assert sessions() == before
        with pytest.raises(CommandNotFound, match="no-such-command"):
            host.run(["no-such-command"], 5)


def test_a_shell_ended_on_the_host_is_replaced(sshd, host, tmp_path):
    """The kept shells (ssh_shell.py) ended between calls (killed there): the next command and lock work."""
    host.run(["true"], 5)
    with host.lock(str(tmp_path)):
        pass
    shells = [p for p in psutil.Process(sshd.proc.pid).children(recursive=True) if p.cmdline() == ["sh"]]
    assert len(shells) >= 2
    for p in shells:
        p.kill()
    time.sleep(0.2)  # the channels' ends reach the client
    assert host.run(["sh", "-c", "echo again"], 5) == (0, "again\n")
    with host.lock(str(tmp_path)):
        assert not lock_is_free(tmp_path)
    assert lock_is_free(tmp_path)
