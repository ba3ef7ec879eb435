"""nginx liveness and the derived test/reload commands, on files (real nginx: tests/integration)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from asrtop.balancers.base import BalancerUnreachable
from asrtop.balancers.nginx import NginxBalancer
from asrtop.balancers.nginx_conf import parse_file
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
