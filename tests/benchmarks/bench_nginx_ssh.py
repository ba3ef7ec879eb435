"""nginx adapter, a pair local vs a pair over SSH (run by hand, prints figures):

    .venv/bin/python tests/benchmarks/bench_nginx_ssh.py [ROUNDS]

Two real nginx (each a 50-server upstream in conf.d/, main config with includes, its own pid file), read two
ways in the same run: directly (LocalHost) and through a real sshd on 127.0.0.1 (SSHHost, one kept
connection, as bench_ssh_balancers.py does for HAProxy). A refresh is servers() of both balancers as the
console's poll reads them (sources.live.read_balancer: in threads, at once): the upstream file, the main
config and its includes, the pid file, the master process, liveness. Prints the process CPU per refresh (this
thread, the reading threads and the SSH loop's thread) for each pair, the two pairs alternating round by
round so that load from elsewhere hits both alike, against issue 16's budget (two SSH balancers with 50
servers each: <= 20 ms CPU).

Then issue 16's action budget: one action on an HA pair (one local + one SSH nginx, changed together as the
controller does: both at once, in two threads, each set_weight then servers() read back), p50 wall <= 2x the
same action on two local nginx, the two pairs alternating round by round. The SSH balancer's action is split
by step (lock, read, write, nginx -t, reload, unlock, read-back; p50 wall ms of each), measured through a
proxy around its host.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.balancers import nginx_upstream_block, start_backends, start_nginx  # noqa: E402
from support.sshd import Sshd  # noqa: E402

from asrtop.balancers.host import LOCAL  # noqa: E402
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


class StepTimer:
    """A host proxy: the wall seconds of each step of an nginx action (the adapter's calls on its host)."""

    def __init__(self, host) -> None:
        self.host, self.steps, self.phase = host, defaultdict(list), "read"

    def __getattr__(self, name):
        attr = getattr(self.host, name)
        if not callable(attr):
            return attr

        def timed(*args, **kw):
            t = time.perf_counter()
            try:
                return attr(*args, **kw)
            finally:
                step = {"write_atomic": "write"}.get(name, self.phase)
                if name == "run":
                    step = "nginx -t" if "-t" in args[0] else "reload"
                self.steps[step].append(time.perf_counter() - t)
        return timed

    @contextmanager
    def lock(self, directory):
        t = time.perf_counter()
        with self.host.lock(directory):
            self.steps["lock"].append(time.perf_counter() - t)
            yield
            t = time.perf_counter()
        self.steps["unlock"].append(time.perf_counter() - t)


def one_action(b: NginxBalancer, server: str, weight: int) -> None:
    b.set_weight(server, weight)
    host = b.host
    if isinstance(host, StepTimer):
        host.phase = "read-back"
    b.servers()
    if isinstance(host, StepTimer):
        host.phase = "read"


def pair_actions(pairs: dict[str, list[tuple[NginxBalancer, str]]], rounds: int) -> dict[str, list[float]]:
    """Each pair's action (both balancers at once, in two threads) p50 wall, the pairs alternating."""
    wall: dict[str, list[float]] = {k: [] for k in pairs}
    with ThreadPoolExecutor(2) as pool:
        for i in range(rounds + 3):
            for k, (label, pair) in enumerate(pairs.items()):  # the pairs share files: each round a new weight
                weight = 2 + (i * len(pairs) + k) % 5
                t = time.perf_counter()
                for f in [pool.submit(one_action, b, server, weight) for b, server in pair]:
                    f.result()
                if i >= 3:  # the first rounds connect and warm up
                    wall[label].append(time.perf_counter() - t)
    return wall


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def line(label: str, xs: list[float], unit: str = "ms CPU") -> None:
    print(f"{label:<38} p50 {statistics.median(xs) * 1000:6.2f} {unit}  p95 {pct(xs, 0.95) * 1000:6.2f}  "
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


def main(rounds: int = 200, actions: int = 40) -> None:
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
        timer, local_timer = StepTimer(host), StepTimer(LOCAL)
        mixed = NginxBalancer("ssh-timed", *args, host=timer)  # the second nginx, over SSH
        direct = NginxBalancer("local-timed", *args, host=local_timer)  # the same, directly
        a, b = ((x, x.servers()[7].name) for x in local)
        wall = pair_actions({"two local": [a, (direct, b[1])], "local + ssh": [a, (mixed, b[1])]}, actions)
        print(f"{actions} actions on each pair (set_weight + servers(), nginx -t + reload; both balancers at "
              f"once); load average {os.getloadavg()[0]:.2f}")
        line("action, two local nginx (baseline)", wall["two local"], "ms")
        line("action, one local + one over SSH", wall["local + ssh"], "ms")
        ratio = statistics.median(wall["local + ssh"]) / statistics.median(wall["two local"])
        print(f"budget action p50 <= 2x two local: {'OK' if ratio <= 2 else 'OVER'} ({ratio:.2f}x)")
        for label, t in (("SSH", timer), ("local", local_timer)):
            split = " | ".join(f"{k} {statistics.median(v) * 1000:.1f}" for k, v in t.steps.items())
            print(f"  the second balancer's steps ({label}), p50 wall ms: {split}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
