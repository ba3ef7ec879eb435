"""Budget: the agent's WebSocket proxy (--proxy-ws) with 200 live streams costs <= 5 % of one core beyond
the streams' own forwarding, and adds <= 2 ms to the p50 latency of partial results, vs the same streams
sent directly to the node, in the same run.

    .venv/bin/python tests/benchmarks/bench_agent_proxy_ws.py [seconds of audio per stream, default 6] [--streams N] [--rt]

A simulated FunASR node (--ws-port, rtf 0.01) and three ways to reach it, in alternating phases
(D B A A B D D B A: each sees the same drift in machine load):
  D  direct to the node's stream port;
  B  a bare forwarder: the agent's own WsProxy class with counting off (streams=None), alone in a process
     (no collection loop, no HTTP face): the cost of forwarding the streams, the baseline;
  A  the real agent (`python -m asrtop_agent --proxy-ws ... --stream-port ... --gpu none --interval 1s`):
     forwarding + exact counting + its collection loop and probe.
Each phase runs N (200) concurrent real-time online streams (60 ms PCM chunks paced like a microphone,
starts spread over 1 s). Latency: each partial result's lateness after the end of its audio left the
client (tests/support/funasr_ws_client.py); added = p50(B or A) - p50(D). CPU: the forwarding process'
user+sys time over the phase, as % of one core; beyond forwarding = A - B.
--rt (root) runs the node, both forwarders and the clients under SCHED_FIFO 10: on a shared, saturated
machine the latencies then measure the hops, not the wait for a CPU behind other tenants.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from agent_bench_util import pct

from support.agent_proc import Proc, agent, simnode
from support.funasr_ws_client import stream_session
from support.netutil import free_port, wait_for_port


def bare_forwarder(port: int, upstream: str) -> None:
    from aiohttp import web

    from asrtop_agent.proxy_ws import WsProxy

    proxy = WsProxy(upstream, streams=None)
    web.run_app(proxy.app(), host="127.0.0.1", port=port, access_log=None, print=None)


async def phase(url: str, streams: int, pcm: bytes, proc: psutil.Process | None) -> tuple[list[float], float | None]:
    late: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int):
            await asyncio.sleep(i / streams)  # starts spread over 1 s
            out = await stream_session(url, pcm, mode="online", wav_name=f"s{i}", session=session, timeout=60)
            assert out.final is not None and out.error is None, (out.handshake_status, out.error)
            late.extend(out.lateness())

        cpu0, t0 = (sum(proc.cpu_times()[:2]) if proc else 0.0), time.monotonic()
        await asyncio.gather(*(one(i) for i in range(streams)))
        cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0) if proc else None
    return late, cpu


def realtime(pid: int) -> None:
    for t in psutil.Process(pid).threads():  # threads started later inherit the policy
        os.sched_setscheduler(t.id, os.SCHED_FIFO, os.sched_param(10))


async def main(seconds: float, streams: int, rt: bool) -> None:
    pcm = os.urandom(int(16000 * 2 * seconds))
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-ws-"))
    ws_port, agent_ws, bare_port = free_port(), free_port(), free_port()
    with simnode(tmp, ws_port=ws_port, slots=streams + 50, queue=0, rtf=0.01) as node, \
            agent(tmp, node.url, "--gpu", "none", "--interval", "1s", "--stream-port", str(ws_port),
                  "--proxy-ws", f"127.0.0.1:{agent_ws}") as ag:
        bare = Proc([sys.executable, __file__, "--bare-forwarder", str(bare_port), f"ws://127.0.0.1:{ws_port}"],
                    tmp / "bare.log")
        try:
            assert wait_for_port("127.0.0.1", bare_port, 20), bare.output()
            if rt:
                for pid in (node.pid, ag.pid, bare.pid, os.getpid()):
                    realtime(pid)
            targets = {"D": (f"ws://127.0.0.1:{ws_port}/", None),
                       "B": (f"ws://127.0.0.1:{bare_port}/", psutil.Process(bare.pid)),
                       "A": (f"ws://127.0.0.1:{agent_ws}/", psutil.Process(ag.pid))}
            idle = psutil.Process(ag.pid)
            c0 = sum(idle.cpu_times()[:2])
            await asyncio.sleep(5)
            idle_cpu = (sum(idle.cpu_times()[:2]) - c0) / 5
            await phase(targets["A"][0], 20, pcm[:64000], None)  # warm-up: connections, imports, JIT-free paths
            late = {k: [] for k in targets}
            cpu = {k: [] for k in targets}
            for name in "DBAABDDBA":
                url, proc = targets[name]
                lat, c = await phase(url, streams, pcm, proc)
                late[name] += lat
                if c is not None:
                    cpu[name].append(c)
                print(f"  phase {name}: {len(lat)} partials, p50 {pct(lat, 0.5) * 1000:.2f} ms"
                      + (f", CPU {c * 100:.1f} % of a core" if c is not None else ""), flush=True)
            async with aiohttp.ClientSession() as status:
                for _ in range(50):  # the last streams' closes reach the next snapshot
                    async with status.get(ag.url + "/v1/status") as r:
                        st = (await r.json())["asr"]["streams"]
                    if st["closed_total"] == 3 * streams + 20:
                        break
                    await asyncio.sleep(0.1)
        finally:
            bare.stop()
    p50 = {k: pct(v, 0.5) for k, v in late.items()}
    print(f"\n{streams} live streams x {seconds:g} s of audio, 60 ms chunks, 3 phases per way"
          f"{', all under SCHED_FIFO 10' if rt else ''}; load average now {os.getloadavg()[0]:.1f}")
    for k, label in (("D", "direct"), ("B", "bare forwarder"), ("A", "agent --proxy-ws")):
        extra = f", CPU {sum(cpu[k]) / len(cpu[k]) * 100:.1f} % of a core" if cpu[k] else ""
        print(f"  {label:18s} partial lateness p50 {p50[k] * 1000:.2f} ms, p95 {pct(late[k], 0.95) * 1000:.2f} ms"
              f" ({len(late[k])} partials){extra}")
    a_cpu, b_cpu = sum(cpu["A"]) / len(cpu["A"]), sum(cpu["B"]) / len(cpu["B"])
    print(f"  added p50 latency: agent {1000 * (p50['A'] - p50['D']):+.2f} ms (budget <= 2 ms), "
          f"bare forwarder {1000 * (p50['B'] - p50['D']):+.2f} ms")
    print(f"  agent CPU beyond forwarding: {100 * (a_cpu - b_cpu):+.1f} % of a core (budget <= 5 %); "
          f"the agent idle (no streams): {100 * idle_cpu:.1f} %")
    print(f"  the agent counted: opened {st['opened_total']}, closed {st['closed_total']}, "
          f"frames {st['frames_total']}, audio {st['audio_seconds_total']:.1f} s "
          f"(sent through it: {3 * streams + 20} streams, {3 * streams * seconds + 20 * 2.0:.1f} s)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare-forwarder"]:
        bare_forwarder(int(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    argv = sys.argv[1:]
    n = int(argv.pop(argv.index("--streams") + 1)) if "--streams" in argv else 200
    args = [a for a in argv if not a.startswith("--")]
    asyncio.run(main(float(args[0]) if args else 6.0, n, "--rt" in argv))
