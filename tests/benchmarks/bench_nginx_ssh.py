"""nginx adapter, local vs over SSH (run by hand, prints figures):

    .venv/bin/python tests/benchmarks/bench_nginx_ssh.py

One real nginx (50-server upstream in conf.d/, main config with includes) read and changed two ways in the
same run: directly (LocalHost) and through a real sshd on 127.0.0.1 (SSHHost). Prints, per refresh
(servers(): the upstream file, the main config, pid file, /proc/PID/cmdline, liveness) the CPU of this
process and the wall time, and per action (set_weight + servers(), nginx -t and reload included) the p50
wall time, each with the SSH/local ratio.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.balancers import nginx_upstream_block, start_backends, start_nginx  # noqa: E402
from support.sshd import Sshd  # noqa: E402

from asrtop.balancers.nginx import NginxBalancer  # noqa: E402
from asrtop.balancers.ssh_host import ssh_host  # noqa: E402


def refresh(b: NginxBalancer, rounds: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per servers(), medians."""
    cpu, wall = [], []
    for _ in range(rounds):
        c, t = time.process_time(), time.perf_counter()
        b.servers()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return statistics.median(cpu) * 1000, statistics.median(wall) * 1000


def action(b: NginxBalancer, server: str, rounds: int) -> float:
    wall = []
    for i in range(rounds):
        t = time.perf_counter()
        b.set_weight(server, 2 + i % 5)
        b.servers()
        wall.append(time.perf_counter() - t)
    return statistics.median(wall) * 1000


def main(rounds: int = 100, actions: int = 15) -> None:
    with tempfile.TemporaryDirectory() as tmp, start_backends([f"n{i}" for i in range(50)]) as be, \
            Sshd("/usr/sbin/sshd", Path(tmp) / "sshd") as sshd:
        with start_nginx("/usr/sbin/nginx", Path(tmp), nginx_upstream_block("asr", be.specs()), upstream="asr") as ng:
            local = NginxBalancer("local", ng.upstream_conf, "asr", ng.test_command, ng.reload_command)
            remote = NginxBalancer("ssh", ng.upstream_conf, "asr", ng.test_command, ng.reload_command,
                                   host=ssh_host(sshd.target, 5.0))
            for b in (local, remote):
                for _ in range(5):
                    b.servers()
            lc, lw = refresh(local, rounds)
            rc, rw = refresh(remote, rounds)
            print(f"refresh (servers(), 50 servers): local CPU {lc:.2f} ms wall {lw:.2f} ms | ssh CPU {rc:.2f} ms "
                  f"wall {rw:.2f} ms | ssh/local CPU {rc / lc:.1f}x, wall {rw / lw:.1f}x")
            server = local.servers()[7].name
            la = action(local, server, actions)
            ra = action(remote, server, actions)
            print(f"action (set_weight + servers(), nginx -t + reload): local p50 {la:.0f} ms | ssh p50 {ra:.0f} ms "
                  f"| ssh/local {ra / la:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
