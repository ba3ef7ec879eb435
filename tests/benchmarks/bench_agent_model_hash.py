"""Budgets: model hashing >= 4x `sha256sum` throughput on the same 1 GB file; re-check of an unchanged
2 GB / 10-file model dir <= 5 ms.

    .venv/bin/python tests/benchmarks/bench_agent_model_hash.py [--dir DIR]

The 1 GB file holds random data (real pages, not sparse) and is read once before timing, so both sides
read from the page cache and the figure compares hashing, not the disk. Best of 3 for each side.
The 2 GB dir is made of sparse files (fast to create); its first hash reads zero pages that the kernel
never stored, which is NOT representative of a real model's first hash (that one is bounded by disk or
page cache like the 1 GB figure) — the re-check, which only stats, is representative.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asrtop_agent.collectors.model import ModelHasher, sha256_file

GB = 1024**3


def best_of(n: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        big = Path(tmp) / "model-1g.bin"
        with open(big, "wb") as f:
            block = os.urandom(16 * 1024 * 1024)
            for i in range(GB // len(block)):
                f.write(block[i % 7:] + block[:i % 7])  # distinct blocks, cheap to make
        subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache

        def coreutils():
            out = subprocess.run(["sha256sum", str(big)], capture_output=True, text=True, check=True)
            return out.stdout.split()[0]

        t_sum, d_sum = best_of(3, coreutils)
        t_ours, d_ours = best_of(3, lambda: sha256_file(str(big)))
        assert d_sum == d_ours, "digests differ"
        ratio = t_sum / t_ours
        print(f"1 GiB file: sha256sum {t_sum:.3f} s ({GB / t_sum / 1e6:.0f} MB/s), agent {t_ours:.3f} s "
              f"({GB / t_ours / 1e6:.0f} MB/s): {ratio:.2f}x   budget >= 4x: {'OK' if ratio >= 4 else 'UNDER'}")
        big.unlink()

        model = Path(tmp) / "model-2g"
        model.mkdir()
        for i in range(10):
            with open(model / f"shard-{i:02d}.safetensors", "wb") as f:
                f.truncate(GB // 5)  # sparse: 10 x 205 MiB = 2 GiB apparent size
        hasher = ModelHasher([str(model)], start=False)
        t0 = time.perf_counter()
        first = hasher.scan()
        t_first = time.perf_counter() - t0
        assert first.state == "ok" and first.bytes == 10 * (GB // 5)
        t_re, again = best_of(20, hasher.scan)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            hasher.scan()
            times.append(time.perf_counter() - t0)
        times.sort()
        assert again.sha256 == first.sha256
        print(f"2 GiB / 10-file dir: first hash {t_first:.2f} s (sparse, not representative); unchanged re-check "
              f"best {t_re * 1000:.3f} ms, median {times[25] * 1000:.3f} ms, worst {times[-1] * 1000:.3f} ms   "
              f"budget <= 5 ms: {'OK' if times[25] <= 0.005 else 'OVER'}")
    return 0 if ratio >= 4 and times[25] <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
