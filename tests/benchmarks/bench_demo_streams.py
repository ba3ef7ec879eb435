"""Budget: one simulated node holds 500 concurrent real-time FunASR WebSocket streams, partial results late by
at most one chunk at p99.

    .venv/bin/python tests/benchmarks/bench_demo_streams.py [--streams 500] [--baseline 50] [--seconds 15]
        [--mode 2pass] [--chunk-interval 10] [--clients 2]

One `simnode --ws-port` process (rtf 0.1, slots above the streams); the streams come from --clients other
processes (tests/support/funasr_ws_client.py), each paced as a microphone (60 ms x chunk_size[1] /
chunk_interval of PCM per frame, on an absolute schedule), starting spread over 2 s. A partial's lateness is
the time it arrived after its chunk's audio left the client on that schedule, in chunks (600 ms). Runs
--baseline streams, then --streams, on the same node in the same run; prints p50/p99/max lateness, the
node's CPU (its CPU seconds over the time streams are live: ramp + stream length, in cores), the peak of open streams the node reported, and the ratios to the baseline. Exit 1 when
a stream got no final result, the node did not hold them all at once, or p99 > 1 chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.funasr_ws_client import stream_session, wav_to_pcm  # noqa: E402
from support.netutil import free_port, wait_for_port  # noqa: E402

CHUNK_S = 0.6  # chunk_size [5, 10, 5]
RAMP_S = 2.0


def client_process(url: str, streams: int, seconds: float, mode: str, interval: int, seed: int) -> dict:
    """One client process: `streams` concurrent real-time sessions; their partials' lateness (s)."""
    import aiohttp

    from asrtop.demo.audio import speech_like_wav

    pcm, _ = wav_to_pcm(speech_like_wav(seconds, seed=seed))
    rng = random.Random(seed)

    async def one(session: aiohttp.ClientSession, i: int):
        await asyncio.sleep(rng.uniform(0, RAMP_S))
        return await stream_session(url, pcm, mode, wav_name=f"s{seed}-{i}", chunk_interval=interval,
                                    session=session, timeout=60)

    async def run() -> dict:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            outs = await asyncio.gather(*(one(session, i) for i in range(streams)), return_exceptions=True)
        good = [o for o in outs if not isinstance(o, BaseException) and o.final is not None]
        return {"late": [x for o in good for x in o.lateness()], "finals": len(good), "cpu": time.process_time(),
                "waited": waited_s(),
                "late_sent": [x for o in good for x in o.lateness(schedule=False)],
                "failures": [repr(o)[:200] for o in outs if isinstance(o, BaseException) or o.final is None][:3]}

    return asyncio.run(run())


def waited_s(pid: int | str = "self") -> float:
    """Seconds this process spent runnable but waiting for a CPU (/proc/PID/schedstat): on a machine shared
    with other work, the lateness that is not the node's own doing."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def cpu_pressure() -> str:
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "n/a"


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def phase(url: str, stats_url: str, node: psutil.Process, streams: int, a: argparse.Namespace) -> dict:
    peak = [0]
    stop = threading.Event()

    def watch() -> None:  # the node's own count of open streams, twice a second
        while not stop.wait(0.5):
            try:
                peak[0] = max(peak[0], httpx.get(stats_url, timeout=5).json()["streams"]["open"])
            except httpx.HTTPError:
                pass

    watcher = threading.Thread(target=watch, daemon=True)
    per = [streams // a.clients + (i < streams % a.clients) for i in range(a.clients)]
    cpu0, wait0, t0 = sum(node.cpu_times()[:2]), waited_s(node.pid), time.monotonic()
    watcher.start()
    with multiprocessing.get_context("spawn").Pool(a.clients) as pool:
        parts = pool.starmap(client_process, [(url, n, a.seconds, a.mode, a.chunk_interval, 100 * streams + i)
                                              for i, n in enumerate(per)])
    stop.set()
    wall = time.monotonic() - t0
    cpu = sum(node.cpu_times()[:2]) - cpu0
    waited = waited_s(node.pid) - wait0
    late = [x / CHUNK_S for p in parts for x in p["late"]]
    late_sent = [x / CHUNK_S for p in parts for x in p["late_sent"]]
    out = {"streams": streams, "finals": sum(p["finals"] for p in parts), "partials": len(late),
           "p50": quantile(late, 0.5), "p99": quantile(late, 0.99), "max": max(late, default=float("nan")),
           "sent_p50": quantile(late_sent, 0.5), "sent_p99": quantile(late_sent, 0.99),
           "client_cores": sum(p["cpu"] for p in parts) / (a.seconds + RAMP_S), "cores": cpu / (a.seconds + RAMP_S), "peak_open": peak[0], "failures": [f for p in parts for f in p["failures"]]}
    print(f"{streams:4d} streams: finals {out['finals']}/{streams}, {out['partials']} partials, lateness in chunks "
          f"p50 {out['p50']:.3f} p99 {out['p99']:.3f} max {out['max']:.3f}; node CPU {out['cores']:.2f} cores "
          f"({cpu:.1f} s; streams live {a.seconds + RAMP_S:g} s of the phase's {wall:.1f} s); node's peak of open streams "
          f"{out['peak_open']}\n      after the audio really left the clients: p50 {out['sent_p50']:.3f} p99 "
          f"{out['sent_p99']:.3f}; client processes {out['client_cores']:.2f} cores\n      waiting for a CPU: node "
          f"{waited:.1f} s, clients {sum(p['waited'] for p in parts):.1f} s; {cpu_pressure()}", flush=True)
    for f in out["failures"]:
        print(f"  failed: {f}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--baseline", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=15.0, help="audio per stream (default 15)")
    ap.add_argument("--mode", default="2pass", choices=["online", "2pass"])
    ap.add_argument("--chunk-interval", type=int, default=10, help="frames per chunk (FunASR's default 10: 60 ms)")
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    a = ap.parse_args()
    port, ws_port = free_port(), free_port()
    node = subprocess.Popen([sys.executable, "-m", "asrtop.demo.simnode", "--port", str(port), "--ws-port",
                             str(ws_port), "--rtf", "0.1", "--slots", str(a.streams + 10)], stdout=subprocess.DEVNULL)
    try:
        if not wait_for_port("127.0.0.1", ws_port, timeout=30):
            print("simnode did not start")
            return 1
        url, stats_url = f"ws://127.0.0.1:{ws_port}/", f"http://127.0.0.1:{port}/_sim/stats"
        proc = psutil.Process(node.pid)
        print(f"one simnode (rtf 0.1), {a.mode}, {a.seconds:g} s real-time streams, chunk 600 ms, "
              f"{a.chunk_interval} frames per chunk, {a.clients} client processes, {psutil.cpu_count()} cores")
        base = phase(url, stats_url, proc, a.baseline, a)
        full = phase(url, stats_url, proc, a.streams, a)
        stats = httpx.get(stats_url).json()["streams"]
    finally:
        node.terminate()
        node.wait(10)
    print(f"ratios {a.streams} / {a.baseline} streams: p99 lateness x{full['p99'] / base['p99']:.2f}, "
          f"node CPU x{full['cores'] / base['cores']:.2f} (streams x{a.streams / a.baseline:.0f})")
    print(f"node's stream counts: {stats}")
    ok = (full["finals"] == a.streams and base["finals"] == a.baseline and full["peak_open"] >= a.streams
          and full["p99"] <= 1.0)
    print(f"budget (all {a.streams} held at once, every final result, p99 <= 1 chunk): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
