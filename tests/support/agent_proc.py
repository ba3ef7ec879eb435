"""Start the agent and the simulated FunASR node as real processes on loopback, and always stop them."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import wave
from contextlib import contextmanager
from pathlib import Path

import httpx

from asrtop.demo.procs import spawn
from support.netutil import free_port, wait_for_port


def wav_bytes(pcm_bytes: int, rate: int = 16000, seed: bytes | None = None) -> bytes:
    """A mono 16-bit WAV with `pcm_bytes` of noise (fast to make; the simnode's VAD sees speech)."""
    pcm = (seed or os.urandom(4096)) * (pcm_bytes // 4096 + 1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm[:pcm_bytes - pcm_bytes % 2])
    return buf.getvalue()


class Proc:
    def __init__(self, argv: list[str], log: Path):
        self.argv, self.log = argv, log
        # PDEATHSIG: the child dies with the test process even if pytest is killed outright
        self.popen = spawn(argv, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


@contextmanager
def simnode(tmp: Path, port: int | None = None, **opts):
    port = port or free_port()
    argv = [sys.executable, "-m", "asrtop.demo.simnode", "--port", str(port)]
    for k, v in opts.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    p = Proc(argv, tmp / f"simnode-{port}.log")
    try:
        if not wait_for_port("127.0.0.1", port, timeout=20):
            raise RuntimeError(f"simnode did not start: {p.output()}")
        p.url = f"http://127.0.0.1:{port}"
        p.port = port
        yield p
    finally:
        p.stop()


@contextmanager
def agent(tmp: Path, asr_url: str, *args: str, proxy: bool = False):
    port = free_port()
    argv = [sys.executable, "-m", "asrtop_agent", "--asr-url", asr_url, "--listen", f"127.0.0.1:{port}", *args]
    proxy_port = None
    if proxy:
        proxy_port = free_port()
        argv += ["--proxy", f"127.0.0.1:{proxy_port}"]
    p = Proc(argv, tmp / f"agent-{port}.log")
    try:
        if not wait_for_port("127.0.0.1", port, timeout=20):
            raise RuntimeError(f"agent did not start: {p.output()}")
        p.url = f"http://127.0.0.1:{port}"
        p.proxy_url = f"http://127.0.0.1:{proxy_port}" if proxy_port else None
        yield p
    finally:
        p.stop()


def wait_status(url: str, predicate, timeout: float = 20.0) -> dict:
    """Poll /v1/status until predicate(body) holds; the last body in the error otherwise."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        try:
            body = httpx.get(url + "/v1/status", timeout=5).json()
            if predicate(body):
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"status never matched; last: {body}")
