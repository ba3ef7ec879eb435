"""The seed's own setup (issue 12's "Done when"): a real nginx `least_conn` upstream (`weight=3 max_fails=2
fail_timeout=30s`, one `backup`) in front of three simulated FunASR nodes, each behind an `asrtop-agent --proxy`
(nginx points at the agents' proxy ports). nginx OSS counts nothing per server, so `asrtop status` shows
the agents' req/s, 5xx and latency per node, marked as theirs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from support.agent_proc import Proc, wav_bytes
from support.balancers import ServerSpec, nginx_upstream_block, start_nginx
from support.control_cluster import asrtop_argv, nginx_entry, node_entry, write_config
from support.netutil import free_port, wait_for_port

pytestmark = pytest.mark.timeout(120)

NODES = ("asr-1", "asr-2", "asr-3")  # asr-3 is the backup; asr-2 fails a third of its recognitions


@contextmanager
def seed_fleet(tmp_path):
    """Three simnodes and their agents, started all at once (each waits only for its own port afterwards)."""
    with ExitStack() as stack:
        ports = {n: (free_port(), free_port(), free_port()) for n in NODES}  # service, agent, proxy
        procs = []
        for name, (svc, agent, proxy) in ports.items():
            errors = ["--error-rate", "0.33", "--seed", "7"] if name == "asr-2" else []
            procs.append((svc, Proc([sys.executable, "-m", "asrtop.demo.simnode", "--port", str(svc), "--name", name,
                                     "--rtf", "0.05", *errors], tmp_path / f"{name}.log")))
            procs.append((agent, Proc([sys.executable, "-m", "asrtop_agent", "--asr-url", f"http://127.0.0.1:{svc}",
                                       "--listen", f"127.0.0.1:{agent}", "--proxy", f"127.0.0.1:{proxy}",
                                       "--node", name, "--gpu", "none"], tmp_path / f"{name}-agent.log")))
        for _, p in procs:
            stack.callback(p.stop)
        for port, p in procs:
            assert wait_for_port("127.0.0.1", port, timeout=20), p.output()
        yield ports


def transcribe_until(url: str, stop: threading.Event, limit: int = 2000) -> list[int]:
    """Recognitions through nginx, four at a time, until `stop` (bounded in count); their status codes."""
    wav = wav_bytes(16_000)  # half a second of audio

    def one(client: httpx.Client) -> int:
        return client.post(url, files={"file": ("a.wav", wav, "audio/wav")}).status_code

    codes: list[int] = []
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(4) as pool:
        while not stop.is_set() and len(codes) < limit:
            codes += pool.map(lambda _: one(client), range(4))
    return codes


def cell(header: str, row: str, column: str) -> str:
    """The text under `column` in a row of the status table (columns are left-aligned under their names)."""
    start = re.search(rf"(^| ){re.escape(column)}( |$)", header).start()
    start += header[start] == " "
    nxt = re.search(r" \S", header[start + len(column):])
    end = start + len(column) + nxt.start() + 1 if nxt else len(row)
    return row[start:end].strip()


def test_status_shows_the_agents_request_figures_for_an_nginx_fleet(tmp_path, nginx_bin):
    with seed_fleet(tmp_path) as ports:
        specs = [ServerSpec("asr-1", ports["asr-1"][2], weight=3, extra="max_fails=2 fail_timeout=30s"),
                 ServerSpec("asr-2", ports["asr-2"][2], weight=3, extra="max_fails=2 fail_timeout=30s"),
                 ServerSpec("asr-3", ports["asr-3"][2], backup=True)]
        with start_nginx(nginx_bin, tmp_path, nginx_upstream_block("fun_asr_backend", specs)) as ngx:
            nodes = [node_entry(n, f"127.0.0.1:{proxy}", f"http://127.0.0.1:{agent}")
                     for n, (_, agent, proxy) in ports.items()]
            path = write_config(tmp_path, [nginx_entry("ngx", ngx)], nodes)
            stop = threading.Event()
            with ThreadPoolExecutor(3) as pool:
                load = pool.submit(transcribe_until, ngx.url("/asr"), stop)
                # an operator looks while the fleet serves: `status` and `status --json` at the same time
                runs = [pool.submit(subprocess.run, asrtop_argv(path, "status", *extra), capture_output=True,
                                    text=True, timeout=60) for extra in ((), ("--json",))]
                text, js = (r.result() for r in runs)
                stop.set()
                codes = load.result()
        # nginx stopped, its agents still answer: `status` must not pass (issue 12: it printed "1/1 reachable")
        down = subprocess.run(asrtop_argv(path, "status"), capture_output=True, text=True, timeout=60)
    assert down.returncode == 5, (down.stdout, down.stderr)
    assert down.stderr.startswith("asrtop: no balancer could be read: ngx: nginx is not running"), down.stderr
    assert "  ngx: UNREACHABLE: nginx is not running" in down.stdout
    assert 200 in codes and 500 in codes, codes[:20]
    assert text.returncode == 0 and js.returncode == 0, text.stderr + js.stderr
    doc = {n["name"]: n for n in json.loads(js.stdout)["nodes"]}
    for name in NODES:
        assert doc[name]["requests_source"] == "agent", doc[name]
        assert doc[name]["errors_5xx_total"] is not None
    for name in ("asr-1", "asr-2"):  # least_conn spreads over the primaries; the backup stays idle
        assert doc[name]["request_rate"] > 0 and doc[name]["response_seconds"] > 0, doc[name]
        assert doc[name]["audio_rate"] > 0
    assert doc["asr-2"]["errors_5xx_total"] > 0 and doc["asr-1"]["errors_5xx_total"] == 0
    assert doc["asr-3"]["request_rate"] == 0.0 and doc["asr-3"]["response_seconds"] is None

    lines = text.stdout.splitlines()
    rows = {ln.split()[0]: ln for ln in lines[1:4]}
    for name in ("asr-1", "asr-2"):
        req, err, resp = (cell(lines[0], rows[name], c) for c in ("REQ/S", "5XX", "RESP"))
        assert req.startswith("*") and float(req[1:]) > 0, lines
        assert err.startswith("*") and resp.startswith("*") and resp.endswith("s"), lines
    assert cell(lines[0], rows["asr-2"], "5XX") != "*0" and cell(lines[0], rows["asr-1"], "5XX") == "*0"
    assert cell(lines[0], rows["asr-3"], "REQ/S") == "*0" and cell(lines[0], rows["asr-3"], "RESP") == "-"
    assert "  *: counted by the node's agent (the balancer counts no requests): all nodes" in lines
