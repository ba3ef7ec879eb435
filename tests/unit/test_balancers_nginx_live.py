"""nginx liveness and the derived test/reload commands, on files (real nginx: tests/integration)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asrtop.balancers import proc_net
from asrtop.balancers.base import BalancerRefused, BalancerUnreachable
from asrtop.balancers.host import LOCAL, CommandNotFound, HostUnreachable, LocalHost
from asrtop.balancers.nginx import NginxBalancer
from asrtop.balancers.nginx_conf import NginxConfError, locate, parse_file
from asrtop.balancers.nginx_files import ConfFiles
from asrtop.balancers.nginx_live import NginxSite, argv_option, parse_main

UPSTREAM = "upstream fun_asr_backend {\n    least_conn;\n    server 127.0.0.1:1 weight=3;\n}\n"


def main_conf(tmp_path, listen: str, pid_file, upstream_included: bool = True, extra: str = "") -> str:
    (tmp_path / "conf.d").mkdir(exist_ok=True)
    (tmp_path / "conf.d" / "asr.conf").write_text(UPSTREAM)
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {pid_file};\nevents {{}}\nhttp {{\n"
                    + ("    include conf.d/*.conf;\n" if upstream_included else "")
                    + f"    server {{ listen {listen}; location / {{ proxy_pass http://fun_asr_backend/; }} }}\n"
                    + "    server { listen 127.0.0.1:9; location / { return 200; } }\n" + extra + "}\n")
    return str(conf)


FAKE_NGINX = ("import socket, time\n"
              "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
              "print(s.getsockname()[1], flush=True); time.sleep(60)")


@pytest.fixture
def fake_nginx(tmp_path):
    """(pid, port): a real process named nginx (python through a symlink called `nginx`) listening on
    127.0.0.1, standing in for nginx's master and its socket."""
    exe = tmp_path / "bin" / "nginx"
    exe.parent.mkdir()
    exe.symlink_to(sys.executable)
    p = subprocess.Popen([str(exe), "-c", FAKE_NGINX], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline())
    yield p.pid, port
    p.kill()
    p.wait()


@pytest.fixture
def sleeper():
    """A live process that is not nginx (a stale pid file pointing at a reused pid)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


def exec_done(pid: int) -> None:
    """Wait until process `pid` shows its new argv. Popen returns once the exec has begun (its close-on-exec
    pipe closed), and /proc/PID/cmdline stays empty a moment longer, until the kernel has laid out the new
    program's arguments: a real nginx writes its pid file long after that."""
    deadline = time.monotonic() + 5
    while not Path(f"/proc/{pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.001)


def balancer(conf: str, **kw) -> NginxBalancer:
    return NginxBalancer("ng", conf, "fun_asr_backend", ("true",), ("true",), **kw)


def test_argv_option():
    assert argv_option(("nginx", "-p", "/srv", "-c", "conf/n.conf", "-t"), "-c") == "conf/n.conf"
    assert argv_option(("nginx", "-c/x/n.conf", "-t"), "-c") == "/x/n.conf"
    assert argv_option(("systemctl", "reload", "nginx"), "-c") is None


def test_main_config_names_pid_and_the_listens_that_pass_to_the_upstream(tmp_path):
    conf = main_conf(tmp_path, "8080", "/x/nginx.pid")
    m = parse_main(conf, "fun_asr_backend")
    assert (m.is_main, m.pid, m.listens) == (True, "/x/nginx.pid", ("127.0.0.1:8080",))  # not the :9 server
    assert str(tmp_path / "conf.d" / "asr.conf") in m.files
    assert parse_main(str(tmp_path / "conf.d" / "asr.conf"), "fun_asr_backend").is_main is False
    for listen, want in (("[::]:80", "[::1]:80"), ("*:81", "127.0.0.1:81"), ("10.0.0.5:82 default_server", "10.0.0.5:82"),
                         ("unix:/run/ngx.sock", "unix:/run/ngx.sock")):
        assert parse_main(main_conf(tmp_path, listen, "/x.pid"), "fun_asr_backend").listens == (want,)


def test_running_and_answering_reads(tmp_path, fake_nginx):
    pid, port = fake_nginx
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(f"{pid}\n")
    b = balancer(main_conf(tmp_path, f"127.0.0.1:{port}", pid_file))
    assert [s.name for s in b.servers()] == ["127.0.0.1:1"]


@pytest.mark.parametrize("case", ["no pid file", "no process", "not nginx", "garbage", "not listening"])
def test_stopped_nginx_is_unreachable_in_one_line(tmp_path, case, sleeper, fake_nginx):
    pid_file = tmp_path / "run" / "nginx.pid"
    pid_file.parent.mkdir()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]  # closed again: nothing listens there
    conf = main_conf(tmp_path, f"127.0.0.1:{closed_port}", pid_file)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_text = {"no process": f"{dead.pid}\n", "not nginx": f"{sleeper}\n", "garbage": "x1",
                "not listening": f"{fake_nginx[0]}\n"}.get(case)
    if pid_text is not None:
        pid_file.write_text(pid_text)
    want = {"no pid file": f"ng: nginx is not running: no pid file {pid_file} (named by {conf})",
            "no process": f"ng: nginx is not running: no process {dead.pid} from {pid_file}",
            "not nginx": f"ng: nginx is not running: process {sleeper} from {pid_file} is 'python",
            "garbage": f"ng: nginx is not running: {pid_file} holds no process id ('x1')",
            "not listening": f"ng: nginx (pid {fake_nginx[0]}) does not answer on 127.0.0.1:{closed_port} "
                             "(connection refused), where it serves upstream 'fun_asr_backend'"}[case]
    with pytest.raises(BalancerUnreachable) as info:
        balancer(conf).servers()
    assert str(info.value).startswith(want) and "\n" not in str(info.value)


def test_a_config_nginx_does_not_run_is_named(tmp_path, monkeypatch):
    """config is an included file, no -c anywhere: the default main config must include it, else say so."""
    (tmp_path / "asr.conf").write_text(UPSTREAM)
    (tmp_path / "system").mkdir()
    system = main_conf(tmp_path / "system", "80", "/x.pid")  # includes its own conf.d, not ours
    monkeypatch.setattr("asrtop.balancers.nginx_live.DEFAULT_CONF", system)
    b = NginxBalancer("ng", tmp_path / "asr.conf", "fun_asr_backend")
    assert b.site.main_path() == system
    with pytest.raises(BalancerUnreachable) as info:
        b.servers()
    assert str(info.value) == (f"ng: nginx's main config {system} does not include {tmp_path / 'asr.conf'}: that "
                               "nginx does not serve this upstream (set `config` to the nginx.conf your nginx runs "
                               "with, or -c in test_command)")


def test_default_commands_name_the_config_nginx_runs(tmp_path):
    conf = main_conf(tmp_path, "80", "logs/nginx.pid")
    included = str(tmp_path / "conf.d" / "asr.conf")
    assert NginxSite(tmp_path / "nginx.conf", "fun_asr_backend").commands() == (
        ("nginx", "-c", conf, "-t"), ("nginx", "-c", conf, "-s", "reload"))
    assert NginxSite(tmp_path / "nginx.conf", "fun_asr_backend", prefix="/srv/ngx").commands() == (
        ("nginx", "-p", "/srv/ngx", "-c", conf, "-t"), ("nginx", "-p", "/srv/ngx", "-c", conf, "-s", "reload"))
    # an included file: nginx's own default config, as before
    assert NginxSite(included, "fun_asr_backend").commands() == (("nginx", "-t"), ("nginx", "-s", "reload"))
    # what the operator configured is kept, and its -c/-p locate the running nginx
    site = NginxSite(included, "fun_asr_backend", ("nginx", "-p", str(tmp_path), "-c", "nginx.conf", "-t"),
                     ("systemctl", "reload", "nginx"))
    assert site.commands() == (("nginx", "-p", str(tmp_path), "-c", "nginx.conf", "-t"),
                               ("systemctl", "reload", "nginx"))
    assert site.main_path() == conf
    assert site.pid_file(site.read_main(conf)) == tmp_path / "logs" / "nginx.pid"  # relative to the prefix


def test_main_config_is_parsed_again_only_when_a_file_changes(tmp_path, monkeypatch):
    """Every read takes the files' bytes (through the host); a file is parsed again only when they changed."""
    conf = main_conf(tmp_path, "80", "/x.pid")
    site = NginxSite(tmp_path / "nginx.conf", "fun_asr_backend")
    calls = []
    real = parse_file
    monkeypatch.setattr("asrtop.balancers.nginx_files.parse_file", lambda path, data: calls.append(path) or real(path, data))
    first = site.read_main(conf)
    for _ in range(5):
        assert site.read_main(conf) is first
    assert calls == [conf, str(tmp_path / "conf.d" / "asr.conf")]
    (tmp_path / "conf.d" / "asr.conf").write_text(UPSTREAM + "# edited\n")  # an include changed, same size class
    assert site.read_main(conf).listens == ("127.0.0.1:80",)
    assert calls[2:] == [str(tmp_path / "conf.d" / "asr.conf")]  # only the changed file


# -- through a Host: the includes, and a balancer on another host -------------------------------------------


class Elsewhere(LocalHost):
    """This machine's files and commands, presented as another host (transport "ssh"), with /proc/net tables
    taken from `tables` (name -> text) so that a socket can listen "there" and not here."""

    label, transport = "ssh ops@lb2:22", "ssh"

    def __init__(self, tables: dict[str, str] | None = None, fail_run: int = 0, fail_write_after: int | None = None):
        super().__init__()
        self.tables, self.reads = tables or {}, []
        self.fail_run, self.writes, self.fail_write_after = fail_run, 0, fail_write_after

    def read_bytes(self, path: str) -> bytes:
        self.reads.append(path)
        if path in self.tables:
            return self.tables[path].encode()
        return super().read_bytes(path)

    def run(self, argv, timeout):
        if self.fail_run:
            self.fail_run -= 1
            raise HostUnreachable(f"{self.label}: connection lost (reset by peer)")
        return super().run(argv, timeout)

    def write_atomic(self, path: str, data: bytes) -> None:
        self.writes += 1
        if self.fail_write_after is not None and self.writes > self.fail_write_after:
            raise HostUnreachable(f"{self.label}: connection refused")
        super().write_atomic(path, data)


TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp_table(port: int, state: str = "0A", address: str = "0100007F") -> str:
    return TCP_HEADER + f"   0: {address}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000 0 0 1\n"


def test_includes_are_followed_through_the_host(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("server { listen 1; }\n")
    (tmp_path / "conf.d" / "b.conf").write_text("# pool\n\n" + UPSTREAM)
    (tmp_path / "broken.conf").write_text("http { upstream other {\n")
    (tmp_path / "nginx.conf").write_text(f"events {{}}\nhttp {{\n include conf.d/*.conf;\n include {tmp_path}/none.conf;\n"
                                         " include broken.conf;\n}\n")
    host = Elsewhere()
    files = ConfFiles(host).walk(str(tmp_path / "nginx.conf"))
    assert [f.path for f in files] == [str(tmp_path / "nginx.conf"), str(tmp_path / "conf.d" / "a.conf"),
                                       str(tmp_path / "conf.d" / "b.conf"), str(tmp_path / "none.conf"),
                                       str(tmp_path / "broken.conf")]
    assert locate(files, "fun_asr_backend") == (str(tmp_path / "conf.d" / "b.conf"), 3)
    assert files[3].error == f"{tmp_path / 'none.conf'}: No such file or directory (included from {tmp_path / 'nginx.conf'})"
    with pytest.raises(NginxConfError) as e:  # not found: the first file nginx would refuse is named
        locate(files, "nope")
    assert str(e.value) == f"{tmp_path / 'none.conf'}: No such file or directory (included from {tmp_path / 'nginx.conf'})"
    assert files[4].error == f'{tmp_path / "broken.conf"}: unexpected end of file, expecting "}}"'
    assert all(p.startswith(str(tmp_path)) for p in host.reads)  # every byte came through the host


def test_a_refresh_reads_each_file_once_and_checks_liveness_on_the_host(tmp_path, fake_nginx, sleeper):
    """Another host: its /proc/net says the server socket listens (nothing listens here); the stub_status URL,
    which only this machine could fetch, is not used."""
    pid, _ = fake_nginx
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens here
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(f"{pid}\n")
    conf = main_conf(tmp_path, f"127.0.0.1:{port}", pid_file)
    host = Elsewhere({"/proc/net/tcp": tcp_table(port)})
    b = balancer(conf, host=host, stub_status=f"http://127.0.0.1:{port}/status")
    assert [s.name for s in b.servers()] == ["127.0.0.1:1"]
    assert sorted(host.reads) == sorted([conf, str(tmp_path / "conf.d" / "asr.conf"), str(pid_file),
                                         f"/proc/{pid}/cmdline", "/proc/net/tcp"])
    host.reads.clear()
    b.servers()
    assert "/proc/net/tcp" not in host.reads  # known to listen while the master and its listen set are the same
    other = balancer(conf, host=Elsewhere({"/proc/net/tcp": tcp_table(port, "01"), "/proc/net/tcp6": TCP_HEADER}))
    with pytest.raises(BalancerUnreachable) as e:
        other.servers()
    assert str(e.value) == (f"ng: nginx (pid {pid}) does not listen on 127.0.0.1:{port}, where it serves upstream "
                            "'fun_asr_backend' on ssh ops@lb2:22")
    pid_file.write_text(f"{sleeper}\n")
    with pytest.raises(BalancerUnreachable, match=r"^ng: nginx is not running: process \d+ from .* is 'python.*"
                                                  r"\(a stale pid file\) on ssh ops@lb2:22$"):
        balancer(conf, host=Elsewhere()).servers()


def test_proc_net_tables(tmp_path):
    with socket.socket() as s, socket.socket() as bound:
        s.bind(("127.0.0.1", 0))
        s.listen()
        bound.bind(("127.0.0.1", 0))  # bound, not listening
        port, closed = s.getsockname()[1], bound.getsockname()[1]
        assert proc_net.listening(LOCAL, f"127.0.0.1:{port}") and proc_net.listening(LOCAL, f"localhost:{port}")
        assert not proc_net.listening(LOCAL, f"127.0.0.1:{closed}")
        assert not proc_net.listening(LOCAL, f"127.0.0.2:{port}")
    with socket.socket() as any_address:
        any_address.bind(("0.0.0.0", 0))
        any_address.listen()
        assert proc_net.listening(LOCAL, f"127.0.0.1:{any_address.getsockname()[1]}")
    ip = ipaddress.ip_address("10.0.0.5")
    assert proc_net.tcp_listening(tcp_table(80, address="0500000A"), ip, 80)  # little-endian host
    assert proc_net.tcp_listening(tcp_table(80, address="0A000005"), ip, 80)  # big-endian host
    assert not proc_net.tcp_listening(tcp_table(80, address="0600000A"), ip, 80)
    with socket.socket(socket.AF_UNIX) as u, socket.socket(socket.AF_UNIX) as quiet:
        u.bind(str(tmp_path / "ngx.sock"))
        u.listen()
        quiet.bind(str(tmp_path / "quiet.sock"))
        assert proc_net.listening(LOCAL, f"unix:{tmp_path / 'ngx.sock'}")
        assert not proc_net.listening(LOCAL, f"unix:{tmp_path / 'quiet.sock'}")


@pytest.mark.parametrize("case", ["restored", "unreachable", "changed by someone else"])
def test_a_transport_lost_mid_change_is_undone_or_said(tmp_path, case):
    """The connection drops during `nginx -t` (the lock went with it): on a new connection, under the lock
    again, the old bytes go back if the file still holds our change; else the line says what is there."""
    f = tmp_path / "asr.conf"
    f.write_text(UPSTREAM)
    host = Elsewhere(fail_run=1, fail_write_after=1 if case == "unreachable" else None)
    if case == "changed by someone else":
        def run(argv, timeout):  # another writer, then the drop
            f.write_text(UPSTREAM + "# theirs\n")
            raise HostUnreachable(f"{host.label}: connection lost (reset by peer)")
        host.run = run
    b = NginxBalancer("ng", f, "fun_asr_backend", ("nginx", "-t"), ("true",), check_running=False, host=host)
    with pytest.raises(BalancerUnreachable) as e:
        b.set_weight("127.0.0.1:1", 5)
    head = "ng: ssh ops@lb2:22: connection lost (reset by peer); "
    assert str(e.value) == head + {
        "restored": f"{f} restored",
        "unreachable": f"{f} may hold the change (not reloaded): check it on ssh ops@lb2:22 once it answers "
                       "(nginx -t, reload or put it back)",
        "changed by someone else": f"{f} was changed since by someone else: left as it is"}[case]
    assert f.read_text() == {"restored": UPSTREAM, "unreachable": UPSTREAM.replace(":1 weight=3", ":1 weight=5"),
                             "changed by someone else": UPSTREAM + "# theirs\n"}[case]


def test_a_lock_that_cannot_be_taken_there_is_one_line(tmp_path):
    f = tmp_path / "asr.conf"
    f.write_text(UPSTREAM)
    host = Elsewhere()

    def no_flock(directory):
        raise CommandNotFound("flock: command not found (ssh ops@lb2:22; the lock needs util-linux)")
    host.lock = no_flock
    b = NginxBalancer("ng", f, "fun_asr_backend", ("true",), ("true",), check_running=False, host=host)
    with pytest.raises(BalancerRefused) as e:
        b.set_weight("127.0.0.1:1", 5)
    assert str(e.value) == (f"ng: cannot lock {tmp_path}, nothing changed: flock: command not found (ssh ops@lb2:22; "
                            "the lock needs util-linux)")
    assert f.read_text() == UPSTREAM


def test_a_symlinked_include_is_resolved_on_the_host(tmp_path, fake_nginx):
    """sites-enabled/asr -> sites-available/asr: on another host `realpath` runs there, once per file set."""
    pid, port = fake_nginx
    (tmp_path / "sites-available").mkdir()
    (tmp_path / "sites-enabled").mkdir()
    (tmp_path / "sites-available" / "asr").write_text(UPSTREAM)
    (tmp_path / "sites-enabled" / "asr").symlink_to(tmp_path / "sites-available" / "asr")
    (tmp_path / "nginx.pid").write_text(f"{pid}\n")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nevents {{}}\nhttp {{ include sites-enabled/*;\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://fun_asr_backend; }} }} }}\n")
    host = Elsewhere({"/proc/net/tcp": tcp_table(port)})
    ran = []
    host.run = lambda argv, timeout: ran.append(argv) or LocalHost.run(host, argv, timeout)
    b = NginxBalancer("ng", tmp_path / "sites-available" / "asr", "fun_asr_backend",
                      ("nginx", "-c", str(tmp_path / "nginx.conf"), "-t"), ("true",), host=host)
    for _ in range(2):
        assert [s.name for s in b.servers()] == ["127.0.0.1:1"]
    assert [argv[0] for argv in ran] == ["realpath"]


def test_the_masters_title_is_read_again_only_for_another_pid(tmp_path, fake_nginx, sleeper, monkeypatch):
    """The master seen at the last refresh: a stat of /proc/PID, not its cmdline (over SSH three requests
    fewer); a new pid in the file has its title read, and a master gone (its pid file left) is seen at once."""
    pid, port = fake_nginx
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(f"{pid}\n")
    conf = main_conf(tmp_path, f"127.0.0.1:{port}", pid_file)
    host = Elsewhere({"/proc/net/tcp": tcp_table(port)})
    b = balancer(conf, host=host)
    b.servers()
    host.reads.clear()
    b.servers()
    assert f"/proc/{pid}/cmdline" not in host.reads and str(pid_file) in host.reads
    pid_file.write_text(f"{sleeper}\n")  # a restart's new pid, here not nginx
    with pytest.raises(BalancerUnreachable, match=rf"process {sleeper} from .* is 'python.*a stale pid file"):
        b.servers()
    other = subprocess.Popen([str(tmp_path / "bin" / "nginx"), "-c", "import time; time.sleep(60)"])
    exec_done(other.pid)
    pid_file.write_text(f"{other.pid}\n")
    b.servers()
    other.kill()
    other.wait()
    with pytest.raises(BalancerUnreachable, match=rf"^ng: nginx is not running: no process {other.pid} from "):
        b.servers()
    pid_file.write_text(f"{pid}\n")
    monkeypatch.setattr("asrtop.balancers.nginx_live.TITLE_RECHECK_S", 0.0)  # the title read again after it
    host.reads.clear()
    b.servers()
    b.servers()
    assert host.reads.count(f"/proc/{pid}/cmdline") == 2


def test_the_upstream_block_is_parsed_again_only_when_its_file_changed(tmp_path, monkeypatch):
    import asrtop.balancers.nginx as nginx_module

    f = tmp_path / "asr.conf"
    f.write_text(UPSTREAM)
    calls = []
    real = nginx_module.parse_upstream
    monkeypatch.setattr(nginx_module, "parse_upstream", lambda *a: calls.append(a[0]) or real(*a))
    b = NginxBalancer("ng", f, "fun_asr_backend", ("true",), ("true",), check_running=False)
    for _ in range(3):
        assert [s.weight for s in b.servers()] == [3]
    assert len(calls) == 1
    f.write_text(UPSTREAM.replace("weight=3", "weight=5"))  # same size
    assert [s.weight for s in b.servers()] == [5] and len(calls) == 2


def test_a_refresh_asks_the_host_at_once_for_what_the_last_one_read(tmp_path, fake_nginx):
    """Over SSH that is one round trip's wait instead of one per file, glob and stat; what the read-ahead
    did not cover (the upstream moved to a new include) is read at once, in the same refresh."""
    pid, port = fake_nginx
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(f"{pid}\n")
    conf = main_conf(tmp_path, f"127.0.0.1:{port}", pid_file)
    host = Elsewhere({"/proc/net/tcp": tcp_table(port)})
    asked, direct = [], []
    for name in ("read_bytes", "glob", "is_dir"):
        real = getattr(host, name)
        setattr(host, name, lambda path, real=real, name=name: direct.append((name, path)) or real(path))
    host.read_many = lambda *plan: asked.append(plan) or LocalHost.read_many(Elsewhere(host.tables), *plan)
    b = balancer(conf, host=host)
    for _ in range(2):  # the first reads the master's title, the second stats /proc/PID
        b.servers()
    asked.clear()
    direct.clear()
    assert [s.weight for s in b.servers()] == [3]
    included = str(tmp_path / "conf.d" / "asr.conf")
    assert asked == [((conf, included, str(pid_file)), (str(tmp_path / "conf.d" / "*.conf"),), (f"/proc/{pid}",))]
    assert direct == []
    (tmp_path / "conf.d" / "b.conf").write_text(UPSTREAM.replace("weight=3", "weight=9"))
    (tmp_path / "conf.d" / "asr.conf").write_text("# moved to b.conf\n")
    asked.clear()
    assert [s.weight for s in b.servers()] == [9]
    assert len(asked) == 1 and direct == [("read_bytes", str(tmp_path / "conf.d" / "b.conf"))]
