"""Is the nginx that serves an upstream running, and how is *that* nginx tested and reloaded?

Open-source nginx has no admin API, so the upstream file alone cannot tell a stopped nginx from a running
one. Liveness is read from the nginx.conf nginx runs with (the main config), on the balancer's host (this
machine or one over SSH, through host.py): its master process (the `pid` file it names) must be alive and be
nginx (/proc/PID/cmdline), and a `server` block passing to the upstream must be listening (here: a TCP
connect to it; on another host: its listening socket in that host's /proc/net tables, see proc_net.py, since a
connect from here would reach this machine's loopback or a firewall, not nginx). With `stub_status` set the
page must answer instead; it is fetched from this machine, so it is used for a local nginx only. Each read
costs one read of each config file (parsed again only when its bytes change), the pid file, /proc/PID/cmdline
(only a stat of /proc/PID while the pid file names the master already seen, up to TITLE_RECHECK_S) and one
connect (on another host: /proc/net, read again only for a new master or listen set).

The main config is `-c` of a configured test/reload command, else `config` itself when it is a main config
(it has an `events` or `http` block), else Debian's /etc/nginx/nginx.conf. The prefix (`-p`) is the
`prefix` key, else `-p` of a configured command. When no test/reload command is configured the defaults
name the same main config and prefix, so `nginx -t` checks the config nginx runs, not the system's.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from asrtop.balancers import proc_net
from asrtop.balancers.base import BalancerUnreachable
from asrtop.balancers.host import LOCAL, CommandDenied, CommandNotFound, CommandTimedOut, Host
from asrtop.balancers.nginx_conf import ConfFile, Directive
from asrtop.balancers.nginx_files import ConfFiles, Refresh

DEFAULT_CONF = "/etc/nginx/nginx.conf"  # Debian's --conf-path (and nginx.org's packages')
DEFAULT_PID = "/run/nginx.pid"  # Debian's --pid-path, when the main config names no `pid`
DEFAULT_PREFIX = "/usr/share/nginx"  # Debian's --prefix: relative `pid` paths start there
CONNECT_TIMEOUT = 1.0  # a running nginx accepts at once (kernel backlog), however busy its workers
# the master's title is read again after this long even when the pid file names the same process: a pid taken
# over by another process between two refreshes (the master killed, its pid file left) is seen within it
TITLE_RECHECK_S = 60.0
PASS_DIRECTIVES = ("proxy_pass", "grpc_pass", "uwsgi_pass", "scgi_pass", "fastcgi_pass", "memcached_pass")


def argv_option(argv: Sequence[str], flag: str) -> str | None:
    """The value of `-c FILE` / `-cFILE` (flag "-c") in an nginx argv, else None."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag) and len(a) > len(flag) and not a.startswith("--"):
            return a[len(flag):]
    return None


@dataclass(frozen=True)
class MainConf:
    """What liveness needs from the main nginx.conf (and its includes)."""

    path: str
    is_main: bool  # has an `events` or `http` block: nginx can run with it (-c)
    pid: str | None  # the `pid` directive as written
    listens: tuple[str, ...]  # "host:port" or "unix:/path" of server blocks passing to the upstream
    files: tuple[str, ...]  # every file read (the main one first)


def parse_main(path: str, upstream: str, host: Host = LOCAL) -> MainConf:
    return main_conf(ConfFiles(host).walk(path), upstream)


def main_conf(files: list[ConfFile], upstream: str) -> MainConf:
    """What a main config and its includes (ConfFiles.walk) say about the nginx running with it."""
    root = files[0]
    if root.error:
        raise BalancerUnreachable(f"cannot read nginx config {root.error}")
    top = root.directives
    pid = next((d.args[0] for d in top if d.name == "pid" and d.args), None)
    listens: list[str] = []
    for f in files:
        for server in _servers(f.directives):
            if _passes_to(server, upstream):
                words = [d.args for d in server if d.name == "listen" and d.args]
                listens += [_connectable(w[0]) for w in words] or ["127.0.0.1:80"]  # nginx's default listen
    return MainConf(root.path, any(d.name in ("events", "http") for d in top), pid,
                    tuple(dict.fromkeys(listens)), tuple(f.path for f in files))


def _servers(directives: tuple[Directive, ...]):
    """Every `server { ... }` block (virtual servers; upstream `server` lines have no block)."""
    for d in directives:
        if d.block is None:
            continue
        if d.name == "server":
            yield d.block
        else:
            yield from _servers(d.block)


def _passes_to(block: tuple[Directive, ...], upstream: str) -> bool:
    for d in block:
        if d.name in PASS_DIRECTIVES and d.args:
            target = d.args[0].split("://", 1)[-1].split("/", 1)[0]
            if target == upstream:
                return True
        if _passes_to(d.block or (), upstream):
            return True
    return False


def _connectable(listen: str) -> str:
    """A `listen` argument as an address to connect to: `80`, `*:80`, `0.0.0.0:80` -> 127.0.0.1:80."""
    if listen.startswith("unix:"):
        return listen
    host, sep, port = listen.rpartition(":")
    if not sep or host.endswith(":"):  # `80`, or a bare IPv6 address without brackets (not valid nginx)
        host, port = "", listen
    if host in ("", "*", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("[::]", "[::0]"):
        host = "[::1]"
    return f"{host}:{port}"


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Open and close one connection to "host:port", "[v6]:port" or "unix:/path"; OSError if refused."""
    if address.startswith("unix:"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(address[5:])
        return
    host, _, port = address.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


class NginxSite:
    """How one configured nginx balancer finds its running nginx, checks it, and tests/reloads it.

    `memo` (a Refresh, one per refresh or change) lets the upstream read and these checks share one read of
    each file."""

    def __init__(self, config: Path, upstream: str, test_command: Sequence[str] = (),
                 reload_command: Sequence[str] = (), prefix: str | None = None, stub_status: str | None = None,
                 host: Host = LOCAL):
        self.config, self.upstream, self.stub_status, self.host = config, upstream, stub_status, host
        self.files = ConfFiles(host)
        self.configured = (tuple(test_command), tuple(reload_command))
        given = [a for a in self.configured if a]
        self.prefix = prefix or next((p for p in (argv_option(a, "-p") for a in given) if p), None)
        self.conf_option = next((c for c in (argv_option(a, "-c") for a in given) if c), None)
        self._main: dict[str, tuple[list[ConfFile], MainConf]] = {}  # path -> (the files read, what they say)
        self._real: dict[tuple, bool] = {}  # (upstream file, main's files) -> included, on another host
        self._listened: tuple | None = None  # (pid, listens) found listening on another host
        self._titled: tuple[int, float] | None = None  # (pid, monotonic time) whose title said nginx

    # -- the main config ---------------------------------------------------------------------------------

    def main_path(self, memo: Refresh | None = None) -> str:
        if self.conf_option:
            conf = Path(self.conf_option)
            return str(conf if conf.is_absolute() else Path(self.prefix or DEFAULT_PREFIX) / conf)
        return str(self.config) if self.read_main(str(self.config), memo).is_main else DEFAULT_CONF

    def read_main(self, path: str, memo: Refresh | None = None) -> MainConf:
        """Derived again only when one of its files' bytes changed (ConfFiles keeps unchanged files)."""
        files = self.files.walk(path, memo)
        cached = self._main.get(path)
        if cached is not None and len(cached[0]) == len(files) and all(a is b for a, b in zip(cached[0], files)):
            return cached[1]
        main = main_conf(files, self.upstream)
        self._main[path] = (files, main)
        return main

    # -- the commands ------------------------------------------------------------------------------------

    def commands(self, memo: Refresh | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(test, reload) argv: as configured, else `nginx [-p P] [-c MAIN] -t` / `... -s reload`, where -c
        names `config` when it is itself a main config (so the check is of the config nginx runs)."""
        base: tuple[str, ...] = ("nginx",)
        if self.prefix:
            base += ("-p", self.prefix)
        if not all(self.configured):
            try:
                if self.read_main(str(self.config), memo).is_main:
                    base += ("-c", str(self.config))
            except (OSError, BalancerUnreachable):
                pass  # read() reports a missing or unreadable file
        test, reload = self.configured
        return test or base + ("-t",), reload or base + ("-s", "reload")

    # -- liveness ----------------------------------------------------------------------------------------

    def check(self, upstream_file: str, memo: Refresh | None = None) -> None:
        """Nothing when nginx runs and answers; else BalancerUnreachable with one line saying what is wrong."""
        path = self.main_path(memo)
        try:
            main = self.read_main(path, memo)
        except OSError as e:
            raise BalancerUnreachable(f"cannot read nginx's main config {path}: {e.strerror or e} (set `config` to "
                                      "the nginx.conf your nginx runs with, or -c in test_command)") from None
        if not self._includes(main, upstream_file):
            raise BalancerUnreachable(f"nginx's main config {path} does not include {upstream_file}: that nginx "
                                      "does not serve this upstream (set `config` to the nginx.conf your nginx "
                                      "runs with, or -c in test_command)")
        pid = self._master(main, memo)
        if self.stub_status and self.host.transport == "local":
            self._stub_status(pid)
        elif main.listens:
            self._listening(pid, main.listens)

    def _includes(self, main: MainConf, upstream_file: str) -> bool:
        """Is upstream_file one of main's files, symlinks resolved (sites-enabled -> sites-available)?"""
        if os.path.normpath(upstream_file) in {os.path.normpath(f) for f in main.files}:
            return True
        if self.host.transport == "local":
            return os.path.realpath(upstream_file) in {os.path.realpath(f) for f in main.files}
        key = (upstream_file, main.files)
        if key not in self._real:  # one `realpath` on that host per change of the files
            try:
                rc, out = self.host.run(("realpath", "-m", "--", upstream_file, *main.files), CONNECT_TIMEOUT * 5)
            except (CommandNotFound, CommandDenied, CommandTimedOut):
                rc, out = 1, ""
            real = out.splitlines()
            # no answer: cannot tell, so do not call a running nginx stopped
            self._real[key] = rc != 0 or len(real) != len(main.files) + 1 or real[0] in real[1:]
        return self._real[key]

    def pid_file(self, main: MainConf) -> Path:
        p = Path(main.pid or DEFAULT_PID)
        return p if p.is_absolute() else Path(self.prefix or DEFAULT_PREFIX) / p

    def _master(self, main: MainConf, memo: Refresh | None = None) -> int:
        pid_file = self.pid_file(main)
        reads = memo or self.host
        try:
            text = reads.read_bytes(str(pid_file)).decode("utf-8", "replace").strip()
        except FileNotFoundError:
            raise BalancerUnreachable(f"nginx is not running: no pid file {pid_file} (named by {main.path})") from None
        except OSError as e:
            raise BalancerUnreachable(f"cannot read nginx's pid file {pid_file}: {e.strerror or e}") from None
        if not (text.isascii() and text.isdigit() and int(text) > 0):
            raise BalancerUnreachable(f"nginx is not running: {pid_file} holds no process id ({text[:20]!r})")
        pid = int(text)
        verified = self._titled
        if verified is not None and verified[0] == pid and time.monotonic() - verified[1] < TITLE_RECHECK_S:
            # the same master as last time: that it still exists is enough (a stat, not three SFTP requests)
            if reads.is_dir(f"/proc/{pid}"):
                return pid
        self._titled = None
        try:  # nginx titles its master "nginx: master process <argv>", whatever the binary is called
            title = self.host.read_bytes(f"/proc/{pid}/cmdline")
        except FileNotFoundError:
            if self._proc_shows_every_process():
                raise BalancerUnreachable(f"nginx is not running: no process {pid} from {pid_file}") from None
            return pid  # no /proc, or other users' processes hidden (hidepid): the pid file is all there is
        except OSError:
            return pid  # hidepid=1: alive, title unreadable
        if b"nginx" not in title:
            try:
                comm = self.host.read_bytes(f"/proc/{pid}/comm").decode("utf-8", "replace").strip()
            except OSError:
                comm = "?"
            raise BalancerUnreachable(f"nginx is not running: process {pid} from {pid_file} is {comm!r}, not "
                                      "nginx (a stale pid file)")
        self._titled = (pid, time.monotonic())
        return pid

    def _proc_shows_every_process(self) -> bool:
        """A /proc that lists every user's processes (asked only when a pid is missing from it)."""
        try:
            mounts = self.host.read_bytes("/proc/self/mounts").decode("utf-8", "replace")
        except OSError:
            return False
        options = [x.split()[3] for x in mounts.splitlines() if x.split()[1:3] == ["/proc", "proc"]]
        return bool(options) and not any(o.startswith("hidepid=") and o not in ("hidepid=0", "hidepid=off")
                                         for opts in options for o in opts.split(","))

    def _listening(self, pid: int, listens: tuple[str, ...]) -> None:
        if self.host.transport != "local":
            self._listening_there(pid, listens)
            return
        errors = []
        for address in listens:
            try:
                connect(address)
                return
            except OSError as e:
                errors.append(f"{address} ({_reason(e)})")
        raise BalancerUnreachable(f"nginx (pid {pid}) does not answer on {', '.join(errors)}, where it serves "
                                  f"upstream {self.upstream!r}")

    def _listening_there(self, pid: int, listens: tuple[str, ...]) -> None:
        """On another host: its /proc/net tables, read once per master process and set of listen addresses
        (they are large on a busy host, ~150 bytes a connection; nginx keeps its listening sockets until a
        restart, a new pid, or a reload of a changed `listen`, a new set)."""
        if self._listened == (pid, listens):
            return
        for address in listens:
            try:
                if proc_net.listening(self.host, address):
                    self._listened = (pid, listens)
                    return
            except OSError:
                return  # no /proc/net tables there (not Linux): the master process is all we can check
        raise BalancerUnreachable(f"nginx (pid {pid}) does not listen on {', '.join(listens)}, where it serves "
                                  f"upstream {self.upstream!r}")

    def _stub_status(self, pid: int) -> None:
        try:
            with urllib.request.urlopen(self.stub_status, timeout=CONNECT_TIMEOUT) as r:
                body = r.read(4096).decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            raise BalancerUnreachable(f"nginx (pid {pid}) stub_status {self.stub_status} answered HTTP {e.code}"
                                      ) from None
        except (OSError, ValueError) as e:
            reason = _reason(e.reason) if isinstance(e, urllib.error.URLError) else _reason(e)
            raise BalancerUnreachable(f"nginx (pid {pid}) does not answer at stub_status {self.stub_status} "
                                      f"({reason})") from None
        if "Active connections" not in body:
            raise BalancerUnreachable(f"{self.stub_status} is not an nginx stub_status page (no \"Active "
                                      "connections\" in it)")


def _reason(e: object) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"no answer within {CONNECT_TIMEOUT:g}s"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)
