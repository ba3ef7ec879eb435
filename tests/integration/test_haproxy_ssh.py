"""An HA pair of real HAProxy 2.8 processes, one reached locally ("lb1") and one through the real sshd ("lb2":
its admin socket a unix path on the "remote" host, spoken to over SSH), driven by the real `asrtop` CLI.

Every action lands on both; sshd stopped in the middle of an action is a partial naming lb2 and its host;
sshd back, the rerun converges. The CLI runs where lb2's directories (its admin socket, haproxy.cfg, state
file) are empty (a private mount namespace): it can reach them only over SSH, as if on another host; its
running config and server-state file are found through that host's /proc.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable

import pytest

from asrtop.balancers.base import BalancerUnreachable
from asrtop.balancers.haproxy import HAProxyBalancer
from asrtop.balancers.haproxy_backup import Plan
from asrtop.balancers.haproxy_state_file import find
from asrtop.balancers.ssh_host import ssh_host
from asrtop.exitcodes import PARTIAL
from support.balancers import start_backends, start_haproxy
from support.control_cluster import DRAIN_BIT, MAINT_BIT, _q, asrtop_argv, haproxy_entry, raw_servers, write_config
from support.relay import _forward

NODES = ("n1", "n2", "n3")
STATE = ["server-state-file state"]  # relative: resolved against HAProxy's cwd, read there (/proc/PID/cwd)
LOAD = ["load-server-state-from-file global"]


def unseen(directories: list[Path], argv: list[str]) -> list[str]:
    """argv run where each directory is an empty tmpfs (a private mount namespace)."""
    ns = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    mounts = " && ".join(f'mount -t tmpfs tmpfs "${i}"' for i in range(len(directories)))
    return [*ns, "sh", "-c", f'{mounts} && shift {len(directories) - 1} && exec "$@"', *map(str, directories),
            *argv]


def ssh_entry(name: str, socket_path: str, sshd) -> str:
    return (haproxy_entry(name, socket_path) + f"ssh = {_q(sshd.spec)}\nssh_identity = {_q(sshd.identity)}\n"
            f"ssh_known_hosts = {_q(sshd.known_hosts)}\n")


class StopBefore:
    """A Runtime API relay in front of the remote HAProxy's socket: forwards every command, except that the
    first one starting with `prefix` (once armed) runs `stop` (sshd goes away) and is never forwarded: the
    step boundary where lb2's change is being sent."""

    def __init__(self, target: str, path: str):
        self.target, self.path = target, path
        self.armed: tuple[str, Callable[[], None]] | None = None
        self.tripped: list[str] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(16)
        threading.Thread(target=self._serve, daemon=True, name="stop-before").start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                raw = b""
                while b"\n" not in raw and (chunk := conn.recv(65536)):
                    raw += chunk
                cmd = raw.decode(errors="replace").strip()
                if self.armed and cmd.startswith(self.armed[0]):
                    stop, self.armed = self.armed[1], None
                    self.tripped.append(cmd)
                    stop()
                    continue
                try:
                    conn.sendall(_forward(self.target, raw))
                except OSError:
                    pass

    def close(self) -> None:
        self._server.close()
        Path(self.path).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ha_pair(tmp_path_factory, wheel_haproxy_bin, sshd):
    """(lb1 local HAProxy, lb2 "remote" HAProxy, cluster file, cluster file with lb2 behind StopBefore, relay)."""
    tmp = tmp_path_factory.mktemp("ha-ssh")
    with start_backends(NODES) as be, \
            start_haproxy(wheel_haproxy_bin, tmp, be.specs(), global_extra=STATE, backend_extra=LOAD) as lb1, \
            start_haproxy(wheel_haproxy_bin, tmp, be.specs(n1={"check": True, "extra": "inter 300"}),
                          global_extra=STATE, backend_extra=LOAD) as lb2:
        relay = StopBefore(lb2.socket, str(lb2.sock_dir / "relay.sock"))
        try:
            path = write_config(tmp, [haproxy_entry("lb1", lb1.socket), ssh_entry("lb2", lb2.socket, sshd)], NODES)
            cut = write_config(tmp, [haproxy_entry("lb1", lb1.socket), ssh_entry("lb2", relay.path, sshd)], NODES,
                               name="cut.toml")
            hidden = [lb2.sock_dir, lb2.config_path.parent]

            def cli(config: Path, *args: str) -> subprocess.CompletedProcess:  # lb2's files seen only over SSH
                return subprocess.run(unseen(hidden, asrtop_argv(config, *args)), capture_output=True, text=True,
                                      timeout=60)

            assert subprocess.run(unseen(hidden, ["ls", "-A", *map(str, hidden)]), capture_output=True,
                                  text=True).stdout.split() == [f"{d}:" for d in hidden]
            yield lb1, lb2, path, cut, relay, cli
        finally:
            relay.close()


def both(lb1, lb2, server: str) -> list[dict[str, str]]:
    return [raw_servers(hx)[server] for hx in (lb1, lb2)]


def test_every_action_lands_on_both_and_status_says_how_each_is_reached(ha_pair, sshd):
    lb1, lb2, path, _, _, run_cli = ha_pair
    admin = lambda s: [int(r["srv_admin_state"]) for r in both(lb1, lb2, s)]  # noqa: E731
    for args, check in (
            (("drain", "n1"), lambda: all(a & DRAIN_BIT for a in admin("n1"))),
            (("ready", "n1"), lambda: admin("n1") == [0, 0]),
            (("maint", "n1"), lambda: all(a & MAINT_BIT for a in admin("n1"))),
            (("ready", "n1"), lambda: admin("n1") == [0, 0]),
            (("weight", "n1", "5"), lambda: [r["srv_uweight"] for r in both(lb1, lb2, "n1")] == ["5", "5"]),
            (("backup", "n2", "on"), lambda: [r["bck"] for r in map(lambda hx: stat(hx, "n2"), (lb1, lb2))]
             == ["1", "1"]),
            (("backup", "n2", "off"), lambda: [r["bck"] for r in map(lambda hx: stat(hx, "n2"), (lb1, lb2))]
             == ["0", "0"])):
        p = run_cli(path, *args)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        assert "lb1" in p.stdout and "lb2" in p.stdout, p.stdout
        assert check(), (args, both(lb1, lb2, args[1]))
    # lb2's server-state file was written on its host (found from its process's /proc there): weight 5 kept
    state = (lb2.config_path.parent / "state").read_text().splitlines()
    assert any(ln.split()[3:4] == ["n1"] and ln.split()[7] == "5" for ln in state), state

    p = run_cli(path, "status", "--json")
    assert p.returncode == 0, p.stderr
    links = {b["name"]: (b["transport"], b["latency_seconds"]) for b in json.loads(p.stdout)["balancers"]}
    assert links["lb1"][0] == "local socket" and links["lb2"][0] == f"ssh {sshd.spec}"
    assert all(0 < lat < 10 for _, lat in links.values()), links


def stat(hx, server: str) -> dict[str, str]:
    from asrtop.balancers.haproxy_stat import parse_show_stat

    return next(r for r in parse_show_stat(hx.command("show stat")) if r["pxname"] == "asr" and r["svname"] == server)


def test_sshd_stopped_mid_action_is_partial_and_named_then_the_rerun_converges(ha_pair, sshd):
    lb1, lb2, _, cut, relay, run_cli = ha_pair
    # both read for the plan, lb1 changed; sshd goes away as lb2's change is being sent
    relay.armed = ("set server asr/n3 state drain", sshd.stop)
    try:
        p = run_cli(cut, "drain", "n3")
    finally:
        relay.armed = None
        sshd.start()
    assert relay.tripped == ["set server asr/n3 state drain"]
    assert p.returncode == PARTIAL, (p.stdout, p.stderr)
    out = p.stdout + p.stderr
    assert "NOT on lb2" in out and f"ssh {sshd.spec}" in out, out
    assert [int(r["srv_admin_state"]) & DRAIN_BIT for r in both(lb1, lb2, "n3")] == [DRAIN_BIT, 0]  # nothing hidden

    p = run_cli(cut, "drain", "n3")  # sshd is back: the same action converges
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert all(int(r["srv_admin_state"]) & DRAIN_BIT for r in both(lb1, lb2, "n3"))


def test_the_remote_running_config_is_read_over_ssh_and_a_dead_socket_names_the_host(ha_pair, sshd):
    _, lb2, _, _, _, _ = ha_pair
    host = ssh_host(sshd.target, 5.0)
    remote = HAProxyBalancer("lb2", lb2.socket, "asr", host=host)
    # no `config` given: the -f file of the process on that host, read there (the words only it has)
    assert " inter 300" in Plan(remote, "n1").add_command("n1", True)
    where = find(remote)
    assert not isinstance(where, str) and where.path == lb2.config_path.parent / "state", where
    assert remote.transport == f"ssh {sshd.spec}"
    gone = HAProxyBalancer("lb2", str(lb2.sock_dir / "nope.sock"), "asr", host=host)
    with pytest.raises(BalancerUnreachable, match=rf"^lb2: HAProxy socket .*nope.sock on ssh {sshd.spec} does "
                                                  r"not exist; is HAProxy running there"):
        gone.servers()
