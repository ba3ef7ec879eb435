"""Budget: quitting the console of `asrtop demo` (key `q` to the process gone) <= 1.5 s, under load.

Measured: `asrtop demo --nodes 4 --load 16` in a pseudo-terminal, as an operator runs it; once the fleet
table is on screen and the load has run for --settle seconds (requests in flight on every node), `q` is
written to the terminal and the clock runs until the process has exited (console closed, load report
printed, every node, agent and HAProxy stopped, temp dir removed).

Baseline in the same run: the same cluster and load without the console, in a fresh interpreter, from the
stop request to the process gone (the demo's own report and cluster stop): what quitting costs at least.

    .venv/bin/python tests/benchmarks/bench_demo_quit.py [--runs 3] [--settle 3]
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import statistics
import subprocess
import sys
import time

BUDGET = 1.5

BASELINE = r'''
import sys, time
from asrtop.demo.cluster import DemoCluster
from asrtop.demo.run import LoadThread
with DemoCluster(nodes=4, slots=16, queue=128) as cluster:
    loader = LoadThread(cluster.url, 16, 10 ** 9).start()
    time.sleep(float(sys.argv[1]))
    print("READY", flush=True)
    sys.stdin.readline()
    print(loader.cut(), flush=True)
'''


def drain(fd: int, until: float, want: bytes | None = None, seen: bytearray | None = None) -> bool:
    """Read the terminal until `want` shows up (True) or the time is up; the child never blocks on output."""
    seen = bytearray() if seen is None else seen
    while time.monotonic() < until:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not chunk:
                return False
            seen += chunk
            if want is not None and want in seen:
                return True
    return False


def console_quit(settle: float) -> float:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the demo on this terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "asrtop.cli", "demo", "--nodes", "4", "--load", "16"],
                   env)
    try:
        seen = bytearray()
        if not drain(fd, time.monotonic() + 90, b"\x1b[?1049h", seen):  # Textual's alternate screen
            raise SystemExit(f"the console did not start:\n{seen[-2000:].decode(errors='replace')}")
        if not drain(fd, time.monotonic() + 30, b"node-4", seen):
            raise SystemExit("the fleet table did not show node-4")
        drain(fd, time.monotonic() + settle)
        t0 = time.monotonic()
        os.write(fd, b"q")
        while True:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return time.monotonic() - t0
            drain(fd, time.monotonic() + 0.005)
            if time.monotonic() - t0 > 60:
                os.kill(pid, 9)
                raise SystemExit("the demo did not end within 60 s of `q`")
    finally:
        os.close(fd)


def baseline_stop(settle: float) -> float:
    p = subprocess.Popen([sys.executable, "-c", BASELINE, str(settle)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if p.stdout.readline().strip() != "READY":
        raise SystemExit("the baseline cluster did not start")
    t0 = time.monotonic()
    p.stdin.write("\n")
    p.stdin.flush()
    p.communicate(timeout=60)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of load before quitting")
    a = ap.parse_args()
    quits, bases = [], []
    for _ in range(a.runs):
        quits.append(console_quit(a.settle))
        bases.append(baseline_stop(a.settle))
    med = statistics.median
    print(f"console quit (`q` to exit, 4 nodes, 16 streams): median {med(quits):.3f} s, max {max(quits):.3f} s"
          f"   budget {BUDGET} s   runs: {', '.join(f'{q:.3f}' for q in quits)}")
    print(f"baseline, the same stop without the console:       median {med(bases):.3f} s"
          f"   runs: {', '.join(f'{b:.3f}' for b in bases)}")
    print(f"ratio console quit / baseline: {med(quits) / med(bases):.2f}x")
    print("PASS" if max(quits) <= BUDGET else "OVER BUDGET")


if __name__ == "__main__":
    main()
