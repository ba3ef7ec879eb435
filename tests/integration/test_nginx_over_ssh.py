"""nginx over SSH: a real nginx on this machine reached as if on another host, through a real OpenSSH server
(tests/support/sshd.py): the file is read, written, tested and reloaded there, the lock is taken there, and
every failure is one line naming the balancer and the host."""

from __future__ import annotations

import os
import subprocess

import psutil
import pytest

from asrtop.balancers.base import BalancerRefused, BalancerUnreachable
from asrtop.balancers.host import dir_lock
from asrtop.balancers.nginx import NginxBalancer
from asrtop.balancers.ssh_host import SSHTarget, ssh_host
from support.balancers import nginx_upstream_block, start_backends, start_nginx, wait_until
from support.control_cluster import asrtop_argv, nginx_entry, node_entry, run_cli, write_config
from support.netutil import free_port

NODES = ("n1", "n2", "n3")


def ssh_entry(name: str, ngx, sshd) -> str:
    return (nginx_entry(name, ngx) + f'ssh = "{sshd.spec}"\nssh_identity = "{sshd.identity}"\n'
            f'ssh_known_hosts = "{sshd.known_hosts}"\n')


@pytest.fixture
def remote(tmp_path, nginx_bin, sshd):
    """(backends, nginx, config path of a cluster whose one balancer is that nginx over SSH)."""
    with start_backends(NODES) as be:
        block = nginx_upstream_block("fun_asr_backend", be.specs(n1={"weight": 3, "extra": "max_fails=2"}))
        with start_nginx(nginx_bin, tmp_path, block) as ngx:
            nodes = [node_entry(n, f"127.0.0.1:{be.ports[n]}") for n in NODES]
            yield be, ngx, write_config(tmp_path, [ssh_entry("ngx", ngx, sshd)], nodes)


def unseen(directory, argv: list[str]) -> list[str]:
    """argv run where `directory` is an empty tmpfs (a private mount namespace): that asrtop can reach the
    nginx files only over SSH, as if they were on another host."""
    ns = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    return [*ns, "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(directory), *argv]


def over_ssh(ngx, sshd, **kw) -> NginxBalancer:
    return NginxBalancer("ngx", ngx.upstream_conf, ngx.upstream, ngx.test_command, ngx.reload_command,
                         host=ssh_host(sshd.target, 3.0), **kw)


def test_every_action_through_the_cli_lands_in_the_remote_file_and_reloads(remote, sshd):
    """asrtop runs where the nginx directory is empty: the file, its includes, the pid file, nginx -t and the
    reload are all reached over SSH."""
    be, ngx, path = remote
    n1, n2 = (f"server 127.0.0.1:{be.ports[n]}" for n in ("n1", "n2"))
    steps = [(("drain", "n1"), f"{n1} weight=3 max_fails=2 down;"),
             (("ready", "n1"), f"{n1} weight=3 max_fails=2;"),
             (("maint", "n2"), f"{n2} down;"),
             (("weight", "n2", "5"), f"{n2} weight=5 down;"),
             (("backup", "n2", "on"), f"{n2} weight=5 down backup;")]
    assert subprocess.run(unseen(ngx.prefix, ["ls", "-A", str(ngx.prefix)]), capture_output=True, text=True).stdout == ""
    for args, line in steps:
        shutdowns = ngx.shutdowns()
        p = subprocess.run(unseen(ngx.prefix, asrtop_argv(path, *args)), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == f"{' '.join(args)}: done on ngx", (args, p.stdout, p.stderr)
        assert line in ngx.upstream_conf.read_text(), args
        assert ngx.wait_switched(shutdowns), f"nginx was not reloaded after {args}"


def test_a_failing_remote_nginx_t_restores_the_file_byte_for_byte(remote, sshd):
    _, ngx, path = remote
    (ngx.prefix / "conf.d" / "zz-broken.conf").write_text("bogus_directive on;\n")  # nginx -t fails on it
    ngx.upstream_conf.chmod(0o640)
    before = ngx.upstream_conf.read_bytes()
    p = run_cli(path, "weight", "n2", "4")
    assert p.returncode == 7 and len(p.stderr.splitlines()) == 1, p.stderr
    assert (f"(ngx: `{' '.join(ngx.test_command)}` failed on ssh {sshd.spec}, {ngx.upstream_conf} restored: "
            in p.stderr and '[emerg]' in p.stderr and 'unknown directive "bogus_directive"' in p.stderr), p.stderr
    assert ngx.upstream_conf.read_bytes() == before and ngx.upstream_conf.stat().st_mode & 0o777 == 0o640
    assert [f.name for f in ngx.upstream_conf.parent.iterdir() if f.name.endswith(".asrtop")] == []


def test_the_lock_holds_across_hosts(remote, sshd):
    """A local process holding the directory's flock holds back a change over SSH, and an SSH session holding
    it (the remote flock) holds back a local asrtop."""
    be, ngx, path = remote
    nodes = [node_entry(n, f"127.0.0.1:{be.ports[n]}") for n in NODES]
    local = write_config(path.parent, [nginx_entry("ngx", ngx)], nodes, name="local.toml")
    inode = ngx.upstream_conf.parent.stat().st_ino
    for held_by, config, args, line in (("local", path, ("weight", "n2", "6"), "weight=6;"),
                                        ("ssh", local, ("weight", "n2", "7"), "weight=7;")):
        lock = dir_lock(ngx.upstream_conf.parent) if held_by == "local" else \
            ssh_host(sshd.target, 3.0).lock(str(ngx.upstream_conf.parent))
        with lock:
            argv = unseen(ngx.prefix, asrtop_argv(config, *args)) if held_by == "local" else asrtop_argv(config, *args)
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert wait_until(lambda: waiting_for_flock(inode) or proc.poll() is not None, 20)
            assert proc.poll() is None and line not in ngx.upstream_conf.read_text(), f"lock held by {held_by} ignored"
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and line in ngx.upstream_conf.read_text(), (held_by, out, err)


def waiting_for_flock(inode: int) -> bool:
    """Is some process on this machine (the remote flock, or a local asrtop) blocked on a flock of inode?"""
    with open("/proc/locks") as f:
        return any(" -> FLOCK " in x and x.split()[6].endswith(f":{inode}") for x in f)


def test_an_unreachable_host_and_a_hanging_command_are_one_line(remote, sshd):
    _, ngx, _ = remote
    port = free_port()
    gone = NginxBalancer("ngx", ngx.upstream_conf, ngx.upstream, ngx.test_command, ngx.reload_command,
                         host=ssh_host(SSHTarget(sshd.user, "127.0.0.1", port, identity=sshd.identity,
                                                 known_hosts=sshd.known_hosts), 1.0))
    with pytest.raises(BalancerUnreachable) as e:
        gone.servers()
    assert str(e.value).startswith(f"ngx: ssh {sshd.user}@127.0.0.1:{port}: ") and "\n" not in str(e.value)
    hangs = NginxBalancer("ngx", ngx.upstream_conf, ngx.upstream, ("sleep", "30"), ngx.reload_command,
                          host=ssh_host(sshd.target, 3.0))
    hangs.timeout = 0.5  # the adapter allows nginx -t at least 10 s; a hang is a hang
    before = ngx.upstream_conf.read_bytes()
    server = hangs.servers()[1].name
    with pytest.raises(BalancerRefused) as e:
        hangs.set_weight(server, 2)
    assert str(e.value) == (f"ngx: `sleep 30` failed on ssh {sshd.spec}, {ngx.upstream_conf} restored: sleep 30: no "
                            f"answer within 0.5s (ssh {sshd.spec})")
    assert ngx.upstream_conf.read_bytes() == before


def test_a_connection_lost_mid_change_is_undone_on_a_new_one(remote, sshd):
    """nginx -t drops the SSH connection (it kills its own sshd session): the file was written, the lock went
    with the connection; the adapter reconnects, takes the lock again and puts the old bytes back."""
    _, ngx, _ = remote
    script = ngx.prefix / "drop-connection"
    script.write_text("#!/bin/sh\nkill -9 $(ps -o ppid= -p $PPID)\n")  # the sshd session above `timeout`
    script.chmod(0o755)
    drop = (str(script),)
    b = NginxBalancer("ngx", ngx.upstream_conf, ngx.upstream, drop, ngx.reload_command, host=ssh_host(sshd.target, 3.0))
    before = ngx.upstream_conf.read_bytes()
    server = b.servers()[1].name
    with pytest.raises(BalancerUnreachable) as e:
        b.set_weight(server, 2)
    assert str(e.value).startswith(f"ngx: ssh {sshd.spec}: connection lost") and "\n" not in str(e.value)
    assert str(e.value).endswith(f"; {ngx.upstream_conf} restored")
    assert ngx.upstream_conf.read_bytes() == before
    assert over_ssh(ngx, sshd).servers()[1].weight == 1  # and the host answers again


def test_a_stopped_remote_nginx_is_named_with_its_host(remote, sshd):
    _, ngx, _ = remote
    b = over_ssh(ngx, sshd)
    assert [s.weight for s in b.servers()] == [3, 1, 1]
    master = psutil.Process(ngx.master_pid())
    ngx.stop()
    assert wait_until(lambda: not master.is_running())
    with pytest.raises(BalancerUnreachable) as e:
        b.servers()
    assert str(e.value) == (f"ngx: nginx is not running: no pid file {ngx.pid_file} (named by {ngx.conf}) on ssh "
                            f"{sshd.spec}")


def test_a_same_size_edit_in_the_same_second_is_read_at_once(remote, sshd):
    """SFTP gives a file's mtime in whole seconds and no inode: an edit of the same size with the same mtime
    (in place, or a new file renamed over it) must still be read at the next refresh, here and over SSH."""
    _, ngx, _ = remote
    f = ngx.upstream_conf
    pair = (over_ssh(ngx, sshd), NginxBalancer("ngx", f, ngx.upstream, ngx.test_command, ngx.reload_command))
    for weight, how in ((7, "in place"), (8, "renamed over")):
        before = [s.weight for s in pair[0].servers()]
        assert [s.weight for s in pair[1].servers()] == before and before[0] != weight
        st = f.stat()
        text = f.read_text().replace(f"weight={before[0]}", f"weight={weight}", 1)
        assert len(text) == st.st_size
        if how == "in place":
            f.write_text(text)
        else:
            (f.parent / "new.tmp").write_text(text)
            os.replace(f.parent / "new.tmp", f)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same second, to the nanosecond
        assert [[s.weight for s in b.servers()][0] for b in pair] == [weight, weight], how
