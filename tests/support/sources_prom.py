"""Start a real Prometheus on a free loopback port scraping the given targets (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

from support.netutil import free_port, wait_for_port


def _get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def instant(base: str, promql: str) -> list[dict]:
    doc = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    return doc["data"]["result"]


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def prometheus(binary: str, targets: list[str], workdir: Path, scrape_interval: str = "1s",
               job: str = "asr", extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Yields the base URL once Prometheus is ready; always stops it (no orphans)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = workdir / "prometheus.yml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                   "scrape_timeout": scrape_interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
    }))
    log = open(workdir / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h", "--log.level=warn",
         *extra_args],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_port("127.0.0.1", port, timeout=30):
            raise AssertionError(f"prometheus did not listen: {(workdir / 'prometheus.log').read_text()[-2000:]}")
        wait_until(lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200, 30, "ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def wait_scraped(base: str, count: int, timeout: float = 60.0, job: str = "asr") -> None:
    """Until `count` targets of `job` are up and have asr_node_info."""
    def ready():
        up = instant(base, f'count(up{{job="{job}"}} == 1)')
        info = instant(base, "count(asr_node_info)")
        n_up = int(float(up[0]["value"][1])) if up else 0
        n_info = int(float(info[0]["value"][1])) if info else 0
        return n_up >= count and n_info >= count
    wait_until(ready, timeout, f"{count} targets scraped")
