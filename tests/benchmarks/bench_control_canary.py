"""Budget: the rollout's canary on a simulated node <= 2x the clip's processing time at the node's rtf.

run_canary (a fresh aiohttp session, one multipart or JSON request, the answer read and parsed) with the
shipped 2.5 s clip against a real simulated node process (python -m asrtop.demo.simnode) on 127.0.0.1, for
each api, at the demo's rtf 0.1 and its slow node's 0.2. Baseline: the clip's processing time at that rtf
(clip seconds x rtf: what the node holds a slot for); the ratio is canary wall time / baseline.

    .venv/bin/python tests/benchmarks/bench_control_canary.py [RUNS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from asrtop.control.canary import check_canary, clip_seconds, default_clip, run_canary  # noqa: E402
from support.netutil import free_port, wait_for_port  # noqa: E402

BUDGET = 2.0


async def measure(address: str, clip: bytes, api: str, runs: int) -> list[float]:
    out = []
    reference = None
    for _ in range(runs):
        r = await run_canary(address, clip, api=api)
        why = check_canary(r, reference, max_rtf=1.0)
        assert why is None, why
        reference = r.text
        out.append(r.seconds)
    return out


def main(runs: int) -> int:
    clip = default_clip()
    audio = clip_seconds(clip)
    print(f"{runs} canaries per row, clip {audio:.2f} s; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    worst = 0.0
    for rtf in (0.1, 0.2):
        port = free_port()
        p = subprocess.Popen([sys.executable, "-m", "asrtop.demo.simnode", "--port", str(port), "--rtf", str(rtf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_for_port("127.0.0.1", port, timeout=20), "simnode did not start"
            base = audio * rtf
            for api in ("openai", "funasr", "gradio"):
                xs = asyncio.run(measure(f"127.0.0.1:{port}", clip, api, runs))
                p50, top = statistics.median(xs), max(xs)
                worst = max(worst, top / base)
                print(f"rtf {rtf:<4} {api:<7} p50 {p50 * 1000:7.1f} ms  max {top * 1000:7.1f} ms  "
                      f"baseline {base * 1000:6.1f} ms  ratio p50 {p50 / base:4.2f}x  max {top / base:4.2f}x")
        finally:
            p.terminate()
            p.wait(10)
    verdict = "within" if worst <= BUDGET else "OVER"
    print(f"worst ratio {worst:.2f}x: {verdict} the {BUDGET:g}x budget")
    return 0 if worst <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
