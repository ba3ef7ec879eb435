"""Is the nginx that serves an upstream running, and how is *that* nginx tested and reloaded?

Open-source nginx has no admin API, so the upstream file alone cannot tell a stopped nginx from a running
one. Liveness is read from the nginx.conf nginx runs with (the main config): its master process (the `pid`
file it names) must be alive and be nginx, and the socket of a `server` block passing to the upstream must
accept a TCP connection (or, when configured, the `stub_status` URL must answer). Each read costs a few
stat() calls, one small file read and one loopback connect: the main config is parsed again only when one
of its files changes (mtime).

The main config is `-c` of a configured test/reload command, else `config` itself when it is a main config
(it has an `events` or `http` block), else Debian's /etc/nginx/nginx.conf. The prefix (`-p`) is the
`prefix` key, else `-p` of a configured command. When no test/reload command is configured the defaults
name the same main config and prefix, so `nginx -t` checks the config nginx runs, not the system's.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import crossplane

from asrtop.balancers.base import BalancerUnreachable

DEFAULT_CONF = "/etc/nginx/nginx.conf"  # Debian's --conf-path (and nginx.org's packages')
DEFAULT_PID = "/run/nginx.pid"  # Debian's --pid-path, when the main config names no `pid`
DEFAULT_PREFIX = "/usr/share/nginx"  # Debian's --prefix: relative `pid` paths start there
CONNECT_TIMEOUT = 1.0  # a running nginx accepts at once (kernel backlog), however busy its workers
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


def parse_main(path: str, upstream: str) -> MainConf:
    payload = crossplane.parse(path, catch_errors=True, check_ctx=False, check_args=False, comments=False)
    files = payload.get("config") or []
    if not files:
        raise OSError(2, "No such file or directory", path)
    top = files[0].get("parsed") or []
    if not top and files[0].get("errors"):
        e = files[0]["errors"][0]
        raise BalancerUnreachable(f"cannot read nginx config {path}: {e.get('error')}")
    pid = next((d["args"][0] for d in top if d.get("directive") == "pid" and d.get("args")), None)
    listens: list[str] = []
    for f in files:
        for server in _servers(f.get("parsed") or []):
            if _passes_to(server, upstream):
                words = [d["args"] for d in server if d.get("directive") == "listen" and d.get("args")]
                listens += [_connectable(w[0]) for w in words] or ["127.0.0.1:80"]  # nginx's default listen
    return MainConf(path, any(d.get("directive") in ("events", "http") for d in top), pid,
                    tuple(dict.fromkeys(listens)), tuple(f["file"] for f in files))


def _servers(directives: list[dict]):
    """Every `server { ... }` block (virtual servers; upstream `server` lines have no block)."""
    for d in directives:
        block = d.get("block")
        if block is None:
            continue
        if d.get("directive") == "server":
            yield block
        else:
            yield from _servers(block)


def _passes_to(block: list[dict], upstream: str) -> bool:
    for d in block:
        if d.get("directive") in PASS_DIRECTIVES and d.get("args"):
            target = d["args"][0].split("://", 1)[-1].split("/", 1)[0]
            if target == upstream:
                return True
        if _passes_to(d.get("block") or [], upstream):
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
    """How one configured nginx balancer finds its running nginx, checks it, and tests/reloads it."""

    def __init__(self, config: Path, upstream: str, test_command: Sequence[str] = (),
                 reload_command: Sequence[str] = (), prefix: str | None = None, stub_status: str | None = None):
        self.config, self.upstream, self.stub_status = config, upstream, stub_status
        self.configured = (tuple(test_command), tuple(reload_command))
        given = [a for a in self.configured if a]
        self.prefix = prefix or next((p for p in (argv_option(a, "-p") for a in given) if p), None)
        self.conf_option = next((c for c in (argv_option(a, "-c") for a in given) if c), None)
        self._parsed: dict[str, tuple[tuple, MainConf]] = {}  # path -> (its files' stamp, what they say)

    # -- the main config ---------------------------------------------------------------------------------

    def main_path(self) -> str:
        if self.conf_option:
            conf = Path(self.conf_option)
            return str(conf if conf.is_absolute() else Path(self.prefix or DEFAULT_PREFIX) / conf)
        return str(self.config) if self.read_main(str(self.config)).is_main else DEFAULT_CONF

    def read_main(self, path: str) -> MainConf:
        """Parsed once per change of any of its files' mtimes."""
        cached = self._parsed.get(path)
        if cached is not None and _stamp(cached[1].files) == cached[0]:
            return cached[1]
        main = parse_main(path, self.upstream)
        self._parsed[path] = (_stamp(main.files), main)
        return main

    # -- the commands ------------------------------------------------------------------------------------

    def commands(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(test, reload) argv: as configured, else `nginx [-p P] [-c MAIN] -t` / `... -s reload`, where -c
        names `config` when it is itself a main config (so the check is of the config nginx runs)."""
        base: tuple[str, ...] = ("nginx",)
        if self.prefix:
            base += ("-p", self.prefix)
        if not all(self.configured):
            try:
                if self.read_main(str(self.config)).is_main:
                    base += ("-c", str(self.config))
            except (OSError, BalancerUnreachable):
                pass  # read() reports a missing or unreadable file
        test, reload = self.configured
        return test or base + ("-t",), reload or base + ("-s", "reload")

    # -- liveness ----------------------------------------------------------------------------------------

    def check(self, upstream_file: str) -> None:
        """Nothing when nginx runs and answers; else BalancerUnreachable with one line saying what is wrong."""
        path = self.main_path()
        try:
            main = self.read_main(path)
        except OSError as e:
            raise BalancerUnreachable(f"cannot read nginx's main config {path}: {e.strerror or e} (set `config` to "
                                      "the nginx.conf your nginx runs with, or -c in test_command)") from None
        if os.path.realpath(upstream_file) not in {os.path.realpath(f) for f in main.files}:
            raise BalancerUnreachable(f"nginx's main config {path} does not include {upstream_file}: that nginx "
                                      "does not serve this upstream (set `config` to the nginx.conf your nginx "
                                      "runs with, or -c in test_command)")
        pid = self._master(main)
        if self.stub_status:
            self._stub_status(pid)
        elif main.listens:
            self._listening(pid, main.listens)

    def pid_file(self, main: MainConf) -> Path:
        p = Path(main.pid or DEFAULT_PID)
        return p if p.is_absolute() else Path(self.prefix or DEFAULT_PREFIX) / p

    def _master(self, main: MainConf) -> int:
        pid_file = self.pid_file(main)
        try:
            text = pid_file.read_text(errors="replace").strip()
        except FileNotFoundError:
            raise BalancerUnreachable(f"nginx is not running: no pid file {pid_file} (named by {main.path})") from None
        except OSError as e:
            raise BalancerUnreachable(f"cannot read nginx's pid file {pid_file}: {e.strerror or e}") from None
        if not (text.isascii() and text.isdigit() and int(text) > 0):
            raise BalancerUnreachable(f"nginx is not running: {pid_file} holds no process id ({text[:20]!r})")
        pid = int(text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise BalancerUnreachable(f"nginx is not running: no process {pid} from {pid_file}") from None
        except PermissionError:
            pass  # alive, owned by another user (root's nginx seen by an operator)
        try:  # nginx titles its master "nginx: master process <argv>", whatever the binary is called
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
            comm = Path(f"/proc/{pid}/comm").read_text(errors="replace").strip()
        except OSError:
            return pid  # no /proc: the signal check is all there is
        if b"nginx" not in title:
            raise BalancerUnreachable(f"nginx is not running: process {pid} from {pid_file} is {comm!r}, not "
                                      "nginx (a stale pid file)")
        return pid

    def _listening(self, pid: int, listens: tuple[str, ...]) -> None:
        errors = []
        for address in listens:
            try:
                connect(address)
                return
            except OSError as e:
                errors.append(f"{address} ({_reason(e)})")
        raise BalancerUnreachable(f"nginx (pid {pid}) does not answer on {', '.join(errors)}, where it serves "
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


def _stamp(files: Sequence[str]) -> tuple:
    out = []
    for f in files:
        try:
            st = os.stat(f)
            out.append((f, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((f, None))
    return tuple(out)


def _reason(e: object) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"no answer within {CONNECT_TIMEOUT:g}s"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)
