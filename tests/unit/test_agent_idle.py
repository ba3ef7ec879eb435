"""The agent's idle cost (issue 17): slow collectors on their own interval, gzip on request, cached per
snapshot, and nothing loaded at start that only some modes (or a first scrape) use.

The HTTP face runs for real on 127.0.0.1 and is scraped with httpx (an independent client); the collectors
are fakes and the loop's clock is a fake one, so no test waits out an interval.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import subprocess
import sys

import pytest

from asrtop_agent import server as server_mod
from asrtop_agent.server import accepts_gzip, make_app
from asrtop_agent.snapshot import AsrSnap, CollectionLoop, GpuReport, HostSnap, ModelSnap
from support.agent_http import serving

SHA = "c" * 64


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Asr:
    url = "http://127.0.0.1:1"

    async def collect(self) -> AsrSnap:
        return AsrSnap(url=self.url, up=True, in_flight=1)


class Host:
    def collect(self) -> HostSnap:
        return HostSnap(cpu_ratio=0.25)


class Gpu:
    source = "none"

    def collect(self, in_flight) -> GpuReport:
        return GpuReport()


class Model:
    """Counts how the loop reads the model hasher: poll() wakes a re-check (a listing + a stat per file)."""

    def __init__(self, clock: "Clock") -> None:
        self.clock = clock
        self.calls: list[str] = []

    def poll(self) -> ModelSnap:
        self.calls.append("poll")
        return ModelSnap("ok", SHA, listed_at=900.0)

    def last(self) -> ModelSnap:
        self.calls.append("last")
        return ModelSnap("ok", SHA, listed_at=900.0)

    def fresh(self) -> ModelSnap:
        self.calls.append("fresh")
        return ModelSnap("ok", SHA, listed_at=self.clock())


def make_loop(model: Model, clock: Clock) -> CollectionLoop:
    return CollectionLoop(node="node-1", version="0.1.0", interval=1.0, host=Host(), gpu=Gpu(), asr=Asr(),
                          model=model, clock=clock, monotonic=clock, slow_interval=30.0)


async def test_model_is_rechecked_on_its_slow_interval_not_every_round():
    clock = Clock()
    model = Model(clock)
    loop = make_loop(model, clock)
    for _ in range(61):  # 61 rounds of a 1 s interval: t = 0 .. 60 s
        snap = await loop.collect_once()
        clock.t += 1.0
    assert model.calls.count("poll") == 3  # at 0, 30 and 60 s
    assert model.calls.count("last") == 58  # the last result, without waking the hasher
    assert [i for i, c in enumerate(model.calls) if c == "poll"] == [0, 30, 60]
    assert snap.model.sha256 == SHA and snap.round_started_at == 900.0  # the reading is as old as its listing
    await loop.collect_once(fresh_model=True)  # a ?after= caller waits: listed now, whatever the interval says
    assert model.calls[-1] == "fresh" and loop.latest.round_started_at == 1061.0


async def test_a_model_without_last_keeps_the_previous_reading_between_rechecks():
    class PollOnly:
        def __init__(self) -> None:
            self.polls = 0

        def poll(self) -> ModelSnap:
            self.polls += 1
            return ModelSnap("ok", SHA)

    model, clock = PollOnly(), Clock()
    loop = make_loop(model, clock)  # type: ignore[arg-type]
    for _ in range(5):
        await loop.collect_once()
        clock.t += 1.0
    assert model.polls == 1 and loop.latest.model.sha256 == SHA


def test_http_date_is_the_rfc_form():
    from email.utils import formatdate

    for t in (0.0, 1796132290.73, 951782400.0):  # 1970, a Tuesday in 2026, 29 Feb 2000
        assert server_mod.http_date(t) == formatdate(t, usegmt=True)


def test_accept_encoding_parsing():
    assert accepts_gzip("gzip") and accepts_gzip("deflate, gzip;q=0.5") and accepts_gzip("*")
    assert accepts_gzip("GZIP ; q=1.0")
    assert not accepts_gzip(None) and not accepts_gzip("") and not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0") and not accepts_gzip("br, *;q=0") and not accepts_gzip("gzip;q=x")
    assert not accepts_gzip("*, gzip;q=0")  # named beats the wildcard


@pytest.fixture
async def served():
    """The agent's HTTP face on a free loopback port, over a loop whose one round has run."""
    clock = Clock()
    loop = make_loop(Model(clock), clock)
    await loop.collect_once()
    app = make_app(lambda: loop.latest, loop.fresh, loop.clock)
    async with serving(app) as client:
        yield loop, client


@pytest.mark.parametrize("path", ["/metrics", "/v1/status"])
async def test_gzip_when_asked_the_same_text_and_compressed_once_per_snapshot(served, path, monkeypatch):
    loop, client = served
    compressed: list[int] = []
    real = server_mod._gzip
    monkeypatch.setattr(server_mod, "_gzip", lambda body: compressed.append(len(body)) or real(body))

    plain = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    assert len(plain.content) == int(plain.headers["content-length"])

    async with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as resp:
        raw = b"".join([chunk async for chunk in resp.aiter_raw()])
    assert resp.headers["content-encoding"] == "gzip" and resp.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(raw) == plain.content and len(raw) < len(plain.content)
    again = await client.get(path, headers={"Accept-Encoding": "gzip, deflate"})  # httpx decodes it
    assert again.headers["content-encoding"] == "gzip" and again.content == plain.content
    assert compressed == [len(plain.content)]  # one snapshot, one compression

    await loop.collect_once()  # a new snapshot: compressed anew on its first gzip scrape
    newer = await client.get(path, headers={"Accept-Encoding": "gzip"})
    assert newer.headers["content-encoding"] == "gzip" and len(compressed) == 2
    if path == "/v1/status":
        assert json.loads(newer.content)["collected_at"] == loop.latest.collected_at


async def test_status_after_is_gzipped_too_and_bad_requests_are_one_line(served):
    loop, client = served
    task = asyncio.create_task(loop.run())
    try:
        fresh = await client.get("/v1/status", params={"after": "now"}, headers={"Accept-Encoding": "gzip"})
    finally:
        task.cancel()
    assert fresh.status_code == 200 and fresh.headers["content-encoding"] == "gzip"
    assert fresh.json()["model"]["sha256"] == SHA
    bad = await client.get("/v1/status", params={"after": "soon"})
    assert bad.status_code == 400 and "bad after='soon'" in bad.json()["error"]
    assert (await client.post("/metrics")).status_code == 405
    missing = await client.get("/nope")
    assert missing.status_code == 404 and "/metrics" in missing.json()["error"]
    head = await client.head("/metrics")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    assert (await client.get("/healthz")).text == "ok\n"


async def test_junk_is_answered_400_at_once_not_held_until_a_line_ends(served):
    """A connection that sends no HTTP method (a TLS hello, random bytes) gets its 400 and the close without
    waiting for a newline that never comes; a request line after empty lines is still served."""
    _, client = served
    port = int(str(client.base_url).rsplit(":", 1)[1].rstrip("/"))
    for junk in (b"\x16\x03\x01\x02\x00", b"get /metrics", b"ABCDEFGHIJKLMNOPQ"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(junk)  # no newline: the old server waited for one (75 s keep-alive)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 ") and b"malformed request line" in answer, (junk, answer[:80])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok\n")


async def test_keep_alive_and_http_1_0_close(served):
    _, client = served
    port = int(str(client.base_url).rsplit(":", 1)[1].rstrip("/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined
    answers = b""
    while answers.count(b"ok\n") < 2:
        answers += await asyncio.wait_for(reader.read(4096), 5)
    assert answers.count(b"HTTP/1.1 200 OK") == 2 and b"Connection: keep-alive" in answers
    assert answers.count(b"\r\nDate: ") == 2
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    rest = await asyncio.wait_for(reader.read(), 5)  # HTTP/1.0 without keep-alive: closed after the answer
    assert rest.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in rest
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"BROKEN\r\n\r\n")
    broken = await asyncio.wait_for(reader.read(), 5)
    assert broken.startswith(b"HTTP/1.1 400 Bad Request") and b"malformed request line" in broken
    writer.close()


def test_the_agent_loads_no_web_framework_metrics_library_or_nvml_at_start_or_scrape():
    """What serve() imports for the default mode (HTTP probe, --gpu nvml|simulated|none, no --proxy), and
    what rendering every body adds."""
    code = (
        "import sys, json\n"
        "from asrtop_agent import __main__, server, snapshot\n"
        "from asrtop_agent.collectors import asr, gpu, host, model, probe, requests\n"
        "for kind in ('nvml', 'simulated', 'none'):\n"
        "    gpu.make_gpu_collector(kind, 'n', asr_url='http://127.0.0.1:1')\n"
        "probe.make_probe('http', None, 'http://127.0.0.1:1')\n"
        "assert gpu.simulated_node_faults('http://127.0.0.1:1') is None  # refused: no simulated node\n"
        "s = snapshot.CollectionLoop(node='n', version='0', interval=1, host=None, gpu=None, asr=None,\n"
        "                            model=None).latest\n"
        "for render in (server._render_metrics, server._render_status, server._render_model, server._gzip):\n"
        "    render(s) if render is not server._gzip else render(b'x')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout))
    for name in ("aiohttp", "prometheus_client", "pynvml", "urllib.request"):
        assert name not in loaded, f"{name} is loaded at start"


def test_nvml_identity_is_read_once_the_readings_every_round():
    """A GPU's UUID, name and supported clock event reasons cannot change while NVML stays initialised."""
    from asrtop_agent.collectors.gpu import NvmlGpuCollector
    from support.agent_nvml import ReplayNvml

    nv = ReplayNvml.load()
    collector = NvmlGpuCollector(nvml=nv)
    reports = [collector.collect() for _ in range(3)]
    assert reports[0] == reports[1] == reports[2] and reports[0].gpus[0].uuid and reports[0].gpus[0].name
    for once in ("uuid", "name", "clocks_event_reasons_supported"):
        assert nv.calls.count(once) == 1, once
    for every in ("utilization", "memory", "power_usage_mw", "clocks_event_reasons_current"):
        assert nv.calls.count(every) == 3, every
    nv.doc["devices"].append(dict(nv.doc["devices"][0], uuid="GPU-second"))  # a second GPU shows up
    two = collector.collect()
    assert [g.uuid for g in two.gpus] == [reports[0].gpus[0].uuid, "GPU-second"]
    assert nv.calls.count("uuid") == 3  # the count changed: both identities read again


def _everything_snapshot():
    """Every family metrics.py writes, with values and label text that exercise the format's corners."""
    from asrtop_agent.collectors.requests import RequestCounters
    from asrtop_agent.snapshot import (CollectorHealth, GpuProcessSnap, GpuSnap, ModelDirSnap, Snapshot,
                                       StreamsSnap)

    c = RequestCounters()
    for status, secs, audio in [(200, 0.4, 10.0), (200, 1.5, 30.0), (503, 400.0, None), (None, 0.1, None)]:
        c.started()
        c.finished(status, secs, audio)
    c.bytes_received, c.bytes_sent = 123_456_789_012, 900
    gpu = GpuSnap(index=0, uuid="GPU-1", name='Odd "name" \\ with\nnewline', utilization_ratio=0.93,
                  memory_used_bytes=24 * 2**30, memory_total_bytes=80 * 2**30, temperature_celsius=61.0,
                  power_watts=412.5, power_limit_watts=700.0, processes=(GpuProcessSnap(4242, "python3", 2**34),),
                  clock_event_reasons=("sw_power_cap",), clock_event_reasons_supported=("gpu_idle", "sw_power_cap"),
                  ecc_errors_corrected_volatile=3, ecc_errors_uncorrected_volatile=0)
    streams = StreamsSnap("proxy", 4, 723.5, ((60.0, 1), (300.0, 2), (None, 4)), 120, 116, 93412, 8123.4)
    return Snapshot(
        node="node-1", agent_version="0.1.0", collected_at=1796132290.7338073, interval_seconds=1.0,
        host=HostSnap(0.25, 1.5, 1.0, 0.5, 8 * 2**30, 64 * 2**30, None),
        gpu=GpuReport("nvml", None, (gpu,), "550.54.15", "12.4"),
        asr=AsrSnap(url="http://127.0.0.1:7860", up=True, probe_latency_seconds=2.5e-05, pid=4242,
                    process_cpu_ratio=1.35, process_rss_bytes=2**30, in_flight=1, in_flight_source="proxy",
                    requests=c.snapshot(), streams=streams),
        model=ModelSnap("ok", SHA, 1, 10, None, (ModelDirSnap('/models/"x"', "ok", SHA, 1, 10, None),)),
        collectors=(CollectorHealth("host", 0.000123, 0), CollectorHealth("asr", None, 2)),
    )


def test_metrics_text_is_byte_for_byte_what_prometheus_client_writes(monkeypatch):
    import prometheus_client
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    from asrtop_agent import metrics

    snap = _everything_snapshot()
    ours = metrics.render(snap)
    for name, cls in (("GaugeMetricFamily", GaugeMetricFamily), ("CounterMetricFamily", CounterMetricFamily),
                      ("HistogramMetricFamily", HistogramMetricFamily)):
        monkeypatch.setattr(metrics, name, cls)  # the same collectors, building prometheus_client's families
    monkeypatch.setattr(metrics, "CollectorRegistry", prometheus_client.CollectorRegistry)
    monkeypatch.setattr(metrics, "generate_latest", prometheus_client.generate_latest)
    theirs = metrics.render(snap)
    assert b"asr_stream_frames_total 93412.0" in theirs and b'\\"name\\" \\\\ with\\nnewline' in theirs
    assert b"asr_request_received_bytes_total 1.23456789012e+11" in theirs  # Go's exponent form
    assert ours == theirs


def test_simulated_node_faults_read_over_a_plain_socket():
    """The demo's GPU faults, asked of the simulated node every round (a canned answer here)."""
    import threading

    from asrtop_agent.collectors.gpu import simulated_node_faults

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    answers = [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + json.dumps(
        {"gpu_leaked_bytes": 3 * 2**30, "gpu_hot": True}).encode(), b"HTTP/1.1 404 Not Found\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\n\r\n[1, 2]"]
    requests: list[bytes] = []

    def serve() -> None:
        for answer in answers:
            conn, _ = srv.accept()
            with conn:
                requests.append(conn.recv(4096))
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert simulated_node_faults(url) == {"gpu_leaked_bytes": 3 * 2**30, "gpu_hot": True}
        assert simulated_node_faults(url) is None  # not 200
        assert simulated_node_faults(url) is None  # not an object
    finally:
        thread.join(5)
        srv.close()
    assert requests[0].startswith(b"GET /_sim/stats HTTP/1.0\r\n")
    assert simulated_node_faults(url) is None  # nothing listens any more
