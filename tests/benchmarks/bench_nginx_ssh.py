"""nginx adapter, a pair local vs a pair over SSH (run by hand, prints figures):

    .venv/bin/python tests/benchmarks/bench_nginx_ssh.py [ROUNDS]

Two real nginx (each a 50-server upstream in conf.d/, main config with includes, its own pid file), read two
ways in the same run: directly (LocalHost) and through a real sshd on 127.0.0.1 (SSHHost, one kept
connection, as bench_ssh_balancers.py does for HAProxy). A refresh is servers() of both balancers as the
console's poll reads them (sources.live.read_balancer: in threads, at once): the upstream file, the main
config and its includes, the pid file, the master process, liveness. Prints the process CPU per refresh (this
thread, the reading threads and the SSH loop's thread) for each pair, the two pairs alternating round by
round so that load from elsewhere hits both alike, against issue 16's budget (two SSH balancers with 50
servers each: <= 20 ms CPU). Then the p50 wall time of one action (set_weight + servers(), nginx -t and
reload included) on one balancer each way.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.balancers import nginx_upstream_block, start_backends, start_nginx  # noqa: E402
from support.sshd import Sshd  # noqa: E402

from asrtop.balancers.nginx import NginxBalancer  # noqa: E402
from asrtop.balancers.ssh_host import ssh_host  # noqa: E402
from asrtop.sources.live import read_balancer  # noqa: E402


async def refresh_cpu(balancers: list[NginxBalancer]) -> float:
    """Process CPU seconds of one refresh of the balancers (all at once, in threads)."""
    t = time.process_time()
    readings = await asyncio.gather(*(read_balancer(b) for b in balancers))
    took = time.process_time() - t
    assert all(r.reachable and len(r.servers) == 50 for r in readings), [r.error for r in readings]
    return took


def action(b: NginxBalancer, server: str, rounds: int) -> float:
    wall = []
    for i in range(rounds):
        t = time.perf_counter()
        b.set_weight(server, 2 + i % 5)
        b.servers()
        wall.append(time.perf_counter() - t)
    return statistics.median(wall) * 1000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def line(label: str, xs: list[float]) -> None:
    print(f"{label:<38} p50 {statistics.median(xs) * 1000:6.2f} ms CPU  p95 {pct(xs, 0.95) * 1000:6.2f}  "
          f"max {max(xs) * 1000:6.2f}")


async def compare(local: list[NginxBalancer], remote: list[NginxBalancer], rounds: int) -> None:
    for _ in range(5):  # connect, warm up
        await refresh_cpu(local)
        await refresh_cpu(remote)
    cpu_local, cpu_ssh = [], []
    for _ in range(rounds):
        cpu_local.append(await refresh_cpu(local))
        cpu_ssh.append(await refresh_cpu(remote))
    print(f"{rounds} refreshes of each pair, 2 x nginx, 50 servers per upstream, sshd on 127.0.0.1; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    line("refresh, two local balancers", cpu_local)
    line("refresh, two SSH balancers", cpu_ssh)
    p50 = statistics.median(cpu_ssh)
    print(f"budget refresh of two SSH balancers <= 20 ms CPU: {'OK' if p50 <= 0.020 else 'OVER'} "
          f"({p50 * 1000:.2f} ms, {p50 / statistics.median(cpu_local):.1f}x two local)")


def main(rounds: int = 200, actions: int = 15) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        sshd = stack.enter_context(Sshd("/usr/sbin/sshd", Path(tmp) / "sshd"))
        host = ssh_host(sshd.target, 5.0)
        local, remote = [], []
        for i in range(2):
            be = stack.enter_context(start_backends([f"n{i}-{k}" for k in range(50)]))
            ng = stack.enter_context(start_nginx("/usr/sbin/nginx", Path(tmp),
                                                 nginx_upstream_block("asr", be.specs()), upstream="asr"))
            args = (ng.upstream_conf, "asr", ng.test_command, ng.reload_command)
            local.append(NginxBalancer(f"local-{i}", *args))
            remote.append(NginxBalancer(f"ssh-{i}", *args, host=host))
        asyncio.run(compare(local, remote, rounds))
        server = local[0].servers()[7].name
        la = action(local[0], server, actions)
        ra = action(remote[0], server, actions)
        print(f"action (set_weight + servers(), nginx -t + reload): local p50 {la:.0f} ms | ssh p50 {ra:.0f} ms "
              f"| ssh/local {ra / la:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
