"""Drain under FunASR-shaped load: simulated ASR nodes (asrtop.demo.simnode, real processes), POST /asr
multipart WAV uploads through an HAProxy pair, and the real `asrtop drain --wait` CLI."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
import wave

import httpx
import pytest

from support.netutil import free_port, wait_for_port
from support.balancers import ServerSpec, start_haproxy
from support.control_cluster import asrtop_argv, haproxy_entry, write_config

NODES = ("n1", "n2", "n3")
RTF = 0.5  # seconds of work per second of audio


def wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(2 * int(16000 * seconds)))
    return buf.getvalue()


@pytest.fixture
def simnodes():
    procs, ports = [], {}
    try:
        for n in NODES:
            ports[n] = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "asrtop.demo.simnode", "--port", str(ports[n]), "--name", n, "--rtf", str(RTF),
                 "--slots", "40"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        for n in NODES:
            assert wait_for_port("127.0.0.1", ports[n], timeout=20), f"simnode {n} did not start"
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


async def test_drain_wait_under_asr_uploads(simnodes, tmp_path, wheel_haproxy_bin, debian_haproxy_bin):
    specs = [ServerSpec(n, simnodes[n]) for n in NODES]
    clips = {s: wav(s) for s in (3.0, 4.0, 5.0, 6.0, 7.0)}  # 1.5 .. 3.5 s of "GPU" work each
    with start_haproxy(wheel_haproxy_bin, tmp_path, specs) as a, start_haproxy(debian_haproxy_bin, tmp_path, specs) as b:
        path = write_config(tmp_path, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)], NODES)
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
            async def stats() -> dict[str, int]:
                got = await asyncio.gather(*(client.get(f"http://127.0.0.1:{simnodes[n]}/_sim/stats") for n in NODES))
                return {n: r.json()["in_flight"] for n, r in zip(NODES, got)}

            async def transcribe(i: int) -> tuple[int, str | None, float]:
                seconds = list(clips)[i % len(clips)]
                r = await client.post((a, b)[i % 2].url("/asr"),
                                      files={"file": (f"clip{i}.wav", clips[seconds], "audio/wav")})
                node = r.json().get("node") if r.status_code == 200 else None
                return r.status_code, node, time.monotonic()

            uploads = [asyncio.create_task(transcribe(i)) for i in range(50)]
            deadline = time.monotonic() + 15
            while sum((now := await stats()).values()) < 50:
                assert time.monotonic() < deadline, now
                await asyncio.sleep(0.05)
            on_n1 = now["n1"]
            assert on_n1 > 0
            proc = await asyncio.create_subprocess_exec(
                *asrtop_argv(path, "drain", "n1", "--wait", "--timeout", "60"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            cli_done = time.monotonic()
            results = await asyncio.gather(*uploads)
    assert proc.returncode == 0, err.decode()
    assert [code for code, _, _ in results] == [200] * 50  # no transcription was cut
    n1_done = [t for _, node, t in results if node == "n1"]
    assert len(n1_done) == on_n1
    assert cli_done >= max(n1_done)
    assert out.decode().splitlines()[-1] == "n1 is empty: safe to upgrade"
