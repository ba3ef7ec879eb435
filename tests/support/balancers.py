"""Real HAProxy / nginx processes and tiny HTTP backends on 127.0.0.1 for integration tests.

Everything here starts real processes as children (never daemons), on free ports, in a tmp dir, and
stop() always ends them (terminate, then kill). Use them as context managers or with try/finally:

    with start_backends(["n1", "n2"]) as be, start_haproxy(bin, tmp_path, be.specs()) as hx:
        HAProxyBalancer("hx", hx.socket, hx.backend).servers()
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from aiohttp import web

from support.netutil import free_port, wait_for_port


# -- HTTP backends ------------------------------------------------------------------------------------------


class Backends:
    """N aiohttp servers in one background thread. GET / -> the backend's name; /slow?s=2 sleeps first;
    /fail answers 500.

    `hits[name]` counts requests each one answered; `in_flight[name]` is the number being served now.
    """

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.ports: dict[str, int] = {}  # bound to port 0 by the kernel: no race with other tests
        self.hits = {n: 0 for n in self.names}
        self.in_flight = {n: 0 for n in self.names}
        self._loop = asyncio.new_event_loop()
        self._runners: list[web.AppRunner] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="test-backends")

    def _app(self, name: str) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.hits[name] += 1
            self.in_flight[name] += 1
            try:
                if request.path == "/slow":
                    await asyncio.sleep(float(request.query.get("s", "1")))
                if request.path == "/fail":
                    return web.Response(status=500, text=name)
                return web.Response(text=name)
            finally:
                self.in_flight[name] -= 1

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def _start(self) -> None:
        for n in self.names:
            runner = web.AppRunner(self._app(n), access_log=None)
            await runner.setup()
            self._runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.ports[n] = runner.addresses[0][1]

    async def _stop(self) -> None:
        for r in self._runners:
            await r.cleanup()

    def start(self) -> "Backends":
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def specs(self, **per_server) -> list["ServerSpec"]:
        """ServerSpec for each backend; per_server={"n1": {"weight": 3, "check": True}} overrides."""
        return [ServerSpec(n, self.ports[n], **per_server.get(n, {})) for n in self.names]

    def __enter__(self) -> "Backends":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_backends(names: Sequence[str]) -> Backends:
    return Backends(names).start()


@dataclass(frozen=True)
class ServerSpec:
    name: str
    port: int
    weight: int = 1
    backup: bool = False
    check: bool = False
    extra: str = ""  # more server keywords, verbatim (e.g. "inter 500 fall 2 rise 3 maxconn 10")


def _stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# -- HAProxy ------------------------------------------------------------------------------------------------


@dataclass
class RunningHAProxy:
    proc: subprocess.Popen
    binary: str
    config_path: Path
    socket: str  # admin unix socket path
    user_socket: str  # `level user` unix socket (for permission tests)
    tcp_socket: str | None  # "127.0.0.1:PORT" admin socket, when asked for
    frontend_port: int
    backend: str
    log_path: Path
    sock_dir: Path | None = None  # removed by stop()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.frontend_port}{path}"

    def command(self, cmd: str, sock: str | None = None) -> str:
        """Raw Runtime API command (independent of the adapter under test)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(sock or self.socket)
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def reload(self, timeout: float = 10.0) -> None:
        """Soft reload: a new process on the same config with `-sf OLDPID` takes over (the old one finishes
        its connections and exits); returns once the new process answers on the admin socket."""
        old = self.proc
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.config_path), "-sf", str(old.pid)],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.config_path.parent)
        old.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.command("show info").startswith("Name:"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"haproxy did not come back after a reload: {self.log_path.read_text()[-1000:]}")

    def stop(self) -> None:
        _stop_process(self.proc)
        if self.sock_dir is not None:
            shutil.rmtree(self.sock_dir, ignore_errors=True)

    def __enter__(self) -> "RunningHAProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def haproxy_config(servers: Sequence[ServerSpec], frontend_port: int, admin_sock: str, user_sock: str,
                   tcp_port: int | None = None, backend: str = "asr", balance: str = "leastconn",
                   backend_extra: Sequence[str] = (), extra_sections: str = "",
                   global_extra: Sequence[str] = ()) -> str:
    lines = ["global", f"    stats socket {admin_sock} mode 600 level admin",
             f"    stats socket {user_sock} mode 600 level user", *(f"    {x}" for x in global_extra)]
    if tcp_port:
        lines.append(f"    stats socket ipv4@127.0.0.1:{tcp_port} level admin")
    lines += ["defaults", "    mode http", "    timeout connect 2s", "    timeout client 30s",
              "    timeout server 30s", "",
              "frontend fe", f"    bind 127.0.0.1:{frontend_port}", f"    default_backend {backend}", "",
              f"backend {backend}", f"    balance {balance}", *(f"    {x}" for x in backend_extra)]
    for s in servers:
        words = [f"server {s.name} 127.0.0.1:{s.port}", f"weight {s.weight}"]
        if s.backup:
            words.append("backup")
        if s.check:
            words.append("check")
        if s.extra:
            words.append(s.extra)
        lines.append("    " + " ".join(words))
    return "\n".join(lines) + "\n" + extra_sections


class PortTaken(RuntimeError):
    """The free port we picked was taken before the process bound it: try again with new ports."""


def _retry_ports(start, *args, **kwargs):
    for attempt in range(3):
        try:
            return start(*args, **kwargs)
        except PortTaken:
            if attempt == 2:
                raise


def start_haproxy(*args, **kwargs) -> RunningHAProxy:
    """HAProxy in the foreground (-db) as our child, with admin + user unix sockets (+ tcp admin).

    Arguments: binary, tmp_path, servers (ServerSpec list); keywords: backend="asr", balance="leastconn",
    tcp_admin=False, backend_extra=() (lines for the backend), extra_sections="" (more config text),
    global_extra=() (lines for the global section).
    """
    return _retry_ports(_start_haproxy, *args, **kwargs)


def start_nginx(*args, **kwargs) -> RunningNginx:
    """nginx in the foreground as our child (see _start_nginx for the arguments)."""
    return _retry_ports(_start_nginx, *args, **kwargs)


def _start_haproxy(binary: str, tmp_path: Path, servers: Sequence[ServerSpec], *, backend: str = "asr",
                  balance: str = "leastconn", tcp_admin: bool = False, backend_extra: Sequence[str] = (),
                  extra_sections: str = "", global_extra: Sequence[str] = (), timeout: float = 10.0) -> RunningHAProxy:
    """HAProxy in the foreground (-db) as our child, with admin + user unix sockets (+ tcp admin)."""
    binary = os.path.abspath(binary) if os.sep in binary else binary  # it runs with cwd = its tmp dir
    d = Path(tmp_path) / f"haproxy-{free_port()}"
    d.mkdir(parents=True)
    # unix socket paths are limited to ~107 bytes; pytest tmp paths can be long
    sock_dir = Path(f"/tmp/asrtop-hx-{os.getpid()}-{d.name}")
    sock_dir.mkdir(parents=True, exist_ok=True)
    admin, user = str(sock_dir / "admin.sock"), str(sock_dir / "user.sock")
    fport = free_port()
    tport = free_port() if tcp_admin else None
    cfg = d / "haproxy.cfg"
    cfg.write_text(haproxy_config(servers, fport, admin, user, tport, backend, balance, backend_extra,
                                  extra_sections, global_extra))
    log = d / "haproxy.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=d)
    hx = RunningHAProxy(proc, binary, cfg, admin, user, f"127.0.0.1:{tport}" if tport else None, fport,
                        backend, log, sock_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if os.path.exists(admin) and wait_for_port("127.0.0.1", fport, timeout=0.05):
            try:
                if hx.command("show info").startswith("Name:"):
                    return hx
            except OSError:
                pass
        time.sleep(0.02)
    hx.stop()
    text = log.read_text(errors="replace")
    if "Address already in use" in text:
        raise PortTaken(text[-500:])
    raise RuntimeError(f"haproxy did not start: {text[-2000:]}")


# -- nginx --------------------------------------------------------------------------------------------------


@dataclass
class RunningNginx:
    proc: subprocess.Popen
    binary: str
    prefix: Path
    conf: Path  # main nginx.conf
    upstream_conf: Path  # file holding the upstream block
    port: int
    upstream: str
    error_log: Path
    pid_file: Path
    test_command: tuple[str, ...] = field(default=())
    reload_command: tuple[str, ...] = field(default=())

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def master_pid(self) -> int:
        return self.proc.pid

    def retired_workers(self) -> int:
        """Workers that finished after a reload (their "exiting" notice in the error log)."""
        try:
            return sum(1 for x in self.error_log.read_text(errors="replace").splitlines() if x.endswith(": exiting"))
        except FileNotFoundError:
            return 0

    def shutdowns(self) -> int:
        """Old workers told to shut down by a reload (logged once the new workers run; the old ones then
        stop accepting at once but finish their in-flight requests)."""
        try:
            return self.error_log.read_text(errors="replace").count("gracefully shutting down")
        except FileNotFoundError:
            return 0

    def wait_switched(self, shutdowns_before: int, timeout: float = 10.0) -> bool:
        """After a reload: new connections meet the new config (old workers may still be finishing)."""
        return wait_until(lambda: self.shutdowns() > shutdowns_before, timeout)

    def wait_reloaded(self, retired_before: int, timeout: float = 10.0) -> bool:
        """After a reload: wait until an old worker has exited, so new connections meet the new config."""
        return wait_until(lambda: self.retired_workers() > retired_before, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _stop_process(self.proc)

    def __enter__(self) -> "RunningNginx":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def nginx_upstream_block(upstream: str, servers: Sequence[ServerSpec], method: str = "least_conn") -> str:
    lines = [f"upstream {upstream} {{"]
    if method:
        lines.append(f"    {method};")
    for s in servers:
        words = [f"server 127.0.0.1:{s.port}"]
        if s.weight != 1:
            words.append(f"weight={s.weight}")
        if s.backup:
            words.append("backup")
        if s.extra:
            words.append(s.extra)
        lines.append("    " + " ".join(words) + ";")
    return "\n".join(lines) + "\n}\n"


def _start_nginx(binary: str, tmp_path: Path, upstream_block: str, *, upstream: str = "fun_asr_backend",
                included: bool = True, timeout: float = 10.0) -> RunningNginx:
    """nginx (master + 1 worker) in the foreground (`daemon off`) as our child, everything under tmp.

    `upstream_block` is nginx text holding the upstream (e.g. nginx_upstream_block(...) or the seed's block
    with addresses rewritten); with included=True it lives in conf.d/upstream.conf, included from
    nginx.conf (`include conf.d/*.conf`), else inline in nginx.conf. The server proxies / to the upstream.
    Changes take effect after a reload: use wait_reloaded(retired_workers() taken before the change).
    """
    prefix = Path(tmp_path) / f"nginx-{free_port()}"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "conf.d").mkdir()
    port = free_port()
    pid_file, error_log = prefix / "logs" / "nginx.pid", prefix / "logs" / "error.log"
    upstream_conf = prefix / "conf.d" / "upstream.conf"
    body = ("include conf.d/*.conf;" if included else upstream_block)
    if included:
        upstream_conf.write_text(upstream_block)
    conf = prefix / "nginx.conf"
    # `user root` only when root: the default `nobody` could not read a tmp dir under /root
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"""{user}worker_processes 1;
pid {pid_file};
error_log {error_log} notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp_body;
    proxy_temp_path {prefix}/tmp_proxy;
    fastcgi_temp_path {prefix}/tmp_fastcgi;
    uwsgi_temp_path {prefix}/tmp_uwsgi;
    scgi_temp_path {prefix}/tmp_scgi;
    {body}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://{upstream}; proxy_read_timeout 60s; }}
        location /healthz {{ return 200 'healthy\\n'; }}
    }}
}}
""")
    if not included:
        upstream_conf = conf
    base = (binary, "-p", str(prefix), "-c", str(conf))
    with open(prefix / "logs" / "stderr.log", "wb") as errf:
        proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=errf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    ngx = RunningNginx(proc, binary, prefix, conf, upstream_conf, port, upstream, error_log, pid_file,
                       test_command=(*base, "-t", "-q", "-g", "daemon off;"),
                       reload_command=(*base, "-g", "daemon off;", "-s", "reload"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if pid_file.exists() and wait_for_port("127.0.0.1", port, timeout=0.05):
            return ngx
        time.sleep(0.02)
    ngx.stop()
    logs = "".join(p.read_text(errors="replace") for p in (prefix / "logs").glob("*.log"))
    if "Address already in use" in logs:
        raise PortTaken(logs[-500:])
    raise RuntimeError(f"nginx did not start: {logs[-2000:]}")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll predicate() until true or timeout (for eventual effects such as an nginx reload)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
