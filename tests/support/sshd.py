"""A real OpenSSH server on 127.0.0.1 for the tests: the balancer host that asrtop reaches over SSH.

Everything it needs lives under one temporary directory: a throw-away host key, a client key, its
authorized_keys and a known_hosts that trusts the host key for [127.0.0.1]:PORT. It logs in the user running
the tests (root in CI, whoever runs them locally), with that key only.
"""

from __future__ import annotations

import ctypes
import getpass
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil

from asrtop.balancers.ssh_host import SSHTarget
from support.netutil import free_port, port_open

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
Subsystem sftp internal-sftp
LogLevel ERROR
MaxStartups 50
MaxSessions 50
SetEnv HOME={dir}
"""
# SetEnv HOME: sshd starts every command through the user's login shell, and Debian's bash then sources
# ~/.bashrc; the test user's own (pyenv init here: ~0.45 s, and output of its own) would be in every command.


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "asrtop-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process ends, even killed (no listener left behind)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Sshd:
    """sshd on 127.0.0.1:port. stop() ends it and every session it serves (a dropped connection, as when the
    host goes away); start() brings it back on the same port with the same host key; new_host_key() makes the
    host present a key that known_hosts does not hold (a changed host key) from the next connection on."""

    def __init__(self, sshd_bin: str, directory: Path) -> None:
        self.bin, self.dir = sshd_bin, directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.identity = str(self.dir / "client_key")
        self.known_hosts = str(self.dir / "known_hosts")
        _keygen(self.dir / "host_key")
        _keygen(Path(self.identity))
        shutil.copy(self.identity + ".pub", self.dir / "authorized_keys")
        self._trust_host_key()
        (self.dir / "sshd_config").write_text(SSHD_CONFIG.format(port=self.port, dir=self.dir))
        self.proc: subprocess.Popen | None = None

    @property
    def spec(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def target(self) -> SSHTarget:
        return SSHTarget(self.user, "127.0.0.1", self.port, identity=self.identity, known_hosts=self.known_hosts)

    def trust_host_key(self) -> None:
        """known_hosts holds the host's current key (after new_host_key: accept the change)."""
        self._trust_host_key()

    def _trust_host_key(self) -> None:
        pub = (self.dir / "host_key.pub").read_text().split()
        Path(self.known_hosts).write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")

    def new_host_key(self) -> None:
        """A new host key (known_hosts keeps the old one); takes effect on the next connection."""
        for name in ("host_key", "host_key.pub"):
            (self.dir / name).unlink()
        _keygen(self.dir / "host_key")

    def start(self) -> "Sshd":
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        # -D: stay in the foreground (our child); -e: errors to stderr
        with open(self.dir / "sshd.log", "ab") as log:
            self.proc = subprocess.Popen([self.bin, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(self.dir / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """End sshd and the sessions it serves (they run in their own sessions, so not one process group)."""
        if self.proc is None:
            return
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.proc.kill()
        self.proc.wait(5)
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + 5  # gone (or a zombie for init to reap): psutil.wait_procs polls slowly
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.proc = None

    def __enter__(self) -> "Sshd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
