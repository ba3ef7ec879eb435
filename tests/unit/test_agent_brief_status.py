"""`GET /v1/status?view=brief` (issue 17): the subset of the status a one-shot `asrtop status` / `asrtop check`
reads. The agent's HTTP face runs for real on 127.0.0.1 (httpx as the client); `status` (text and --json) and
`check` (text and --json, with and without history) must say the same from a brief answer as from a full one,
over random fleets that make every rule that reads an agent's answer fire somewhere."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from asrtop.agentstatus import parse_status
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.check_report import render_json as check_json
from asrtop.check_report import render_text as check_text
from asrtop.config import NodeConfig, ProblemsConfig
from asrtop.fleet import AgentReading, BalancerReading, merge
from asrtop.problems import rules
from asrtop.sources.agents import AgentPoller
from asrtop.status_report import render_table, status_json
from asrtop.traffic import counter_sample, second_sample_wait, slide, traffic
from asrtop_agent.collectors.requests import RequestCounters
from asrtop_agent.server import make_app
from asrtop_agent.snapshot import (AsrSnap, GpuProcessSnap, GpuReport, GpuSnap, HostSnap, ModelDirSnap, ModelSnap,
                                   Snapshot, StreamsSnap)
from asrtop_agent.status import BRIEF_KEYS, brief, status_dict
from support.agent_http import serving
from support.sources_synth import SynthNode, serve_agents

NOW = 1_800_000_000.0
DIGESTS = ("a1" * 32, "a1" * 32, "a1" * 32, "b2" * 32)  # a majority and an odd one out
SLOWDOWNS = ("hw_thermal_slowdown", "sw_power_cap", "gpu_idle", "hw_slowdown")


def _counters(rng: random.Random, n: int):
    c = RequestCounters()
    for _ in range(n):
        c.started()
        c.finished(rng.choice((200, 200, 200, 503)), rng.uniform(0.05, 3.0), rng.uniform(1.0, 30.0))
    for _ in range(rng.randrange(3)):
        c.started()
    return c


def random_snapshot(rng: random.Random, name: str, at: float, served: int) -> Snapshot:
    """An agent's snapshot with every reading present, absent or failing at random."""
    first = rng.choice((0, 0, 2))  # NVML's index, not always the position in the list (GPU 0 lost)
    gpus = tuple(GpuSnap(
        index=first + i, uuid=f"GPU-{name}-{i}", name="NVIDIA A10", utilization_ratio=rng.choice((None, rng.random())),
        memory_used_bytes=rng.choice((None, rng.randrange(1, 24) * 2**30)),
        memory_total_bytes=rng.choice((None, 24 * 2**30, 24 * 2**30)),
        temperature_celsius=rng.choice((None, rng.uniform(40, 95))), power_watts=rng.uniform(50, 150),
        power_limit_watts=150.0, processes=(GpuProcessSnap(4242, "python", 2**30),),
        clock_event_reasons=rng.choice((None, (), tuple(rng.sample(SLOWDOWNS, rng.randrange(1, 3))))),
        ecc_errors_corrected_volatile=rng.choice((None, 0, 0, rng.randrange(1, 9))),
        ecc_errors_uncorrected_volatile=rng.choice((None, 0, 0, 0, rng.randrange(1, 3))))
        for i in range(rng.choice((0, 1, 1, 2))))
    up = rng.choice((True, True, True, False, None))
    counters = _counters(rng, served) if rng.random() < 0.7 else None
    streams = rng.choice((None, StreamsSnap("connections", 0), StreamsSnap(
        "proxy", 3, rng.uniform(1, 4000), ((60.0, 1), (None, 3)), 9, 6, 120, 40.5)))
    state = rng.choice(("ok", "ok", "ok", "hashing", "missing", "error"))
    digest = rng.choice(DIGESTS) if state == "ok" else None
    error = None if state in ("ok", "hashing") else f"{state}: /models/x"
    return Snapshot(
        node=name, agent_version="0.1.0", collected_at=at, interval_seconds=rng.choice((1.0, 2.0)),
        host=rng.choice((HostSnap(0.3, 1.0, 0.9, 0.8, rng.randrange(8, 60) * 2**30, 64 * 2**30, None),
                         HostSnap(error="cannot read /proc/meminfo"))),
        gpu=rng.choice((GpuReport("nvml", None, gpus, "550", "12.4"), GpuReport("simulated", None, gpus),
                        GpuReport("none", "NVML unavailable: no driver"),
                        GpuReport("nvml", "GPU 1 lost", gpus, "550", "12.4"))),
        asr=AsrSnap(url="http://127.0.0.1:10095", up=up, probe_latency_seconds=0.004,
                    error=None if up else "connection refused", pid=rng.choice((None, 4242, 4343)),
                    process_cpu_ratio=0.5, process_rss_bytes=5 * 2**30, in_flight=rng.choice((None, 0, 4)),
                    in_flight_source="proxy", requests=None if counters is None else counters.snapshot(),
                    streams=streams, python="3.10.14", packages=(("funasr", "1.2.7"),)),
        model=ModelSnap(state, digest, 12, 2**31, error, (ModelDirSnap("/models/x", state, digest, 12, 2**31, error),)),
        round_started_at=at - 0.2)


def node_server(rng: random.Random, name: str, port: int) -> ServerState:
    counts = rng.random() < 0.5  # HAProxy counts this node's requests; else only its agent does (as nginx OSS)
    return ServerState(name, "127.0.0.1", port, rng.choice((1, 3)), rng.random() < 0.1,
                       rng.choice((AdminState.READY, AdminState.READY, AdminState.DRAIN)),
                       rng.choice((Health.UP, Health.UP, Health.DOWN)), rng.randrange(3), 0,
                       float(rng.randrange(5)) if counts else None, 100 if counts else None,
                       rng.randrange(3) if counts else None, 0.3 if counts else None, True)


class RisingMemory:
    """Prometheus' history as `check` reads it: every node's memory rising for ten minutes, no load."""

    STEPS = 60

    def timestamps(self):
        return [NOW - 600 + 10 * i for i in range(self.STEPS)]

    def series(self, node, metric):
        if metric in ("gpu_mem", "rss_bytes", "host_mem_bytes"):
            return [0.2 + 0.005 * i if metric == "gpu_mem" else float(2**30 + 50e6 * i) for i in range(self.STEPS)]
        return [0.0] * self.STEPS


def fleet(view, seed: int = 17, count: int = 120):
    """The same random fleet as the poller would read it from answers in `view` (each agent asked twice, as
    `status` does where only agents count requests): status, status --json, and check's text and --json."""
    rng = random.Random(seed)
    configs, servers, rounds = [], [], ({}, {})
    for i in range(count):
        name, port = f"node-{i}", 20000 + i
        configs.append(NodeConfig(name, address=f"127.0.0.1:{port}", agent=f"http://127.0.0.1:{port + 5000}"))
        servers.append(node_server(rng, name, port))
        stale = rng.random() < 0.05
        window = ()
        for readings, at, served in zip(rounds, (NOW - 2.0, NOW - 1.0), (20, 30)):
            answer = random_snapshot(random.Random(rng.random()), name, at, served)
            status = parse_status(json.loads(json.dumps(view(status_dict(answer)))))
            window = slide(window, counter_sample(status))
            readings[name] = AgentReading(configs[-1].agent, status, at + 0.5 - (60.0 if stale else 0.0), None,
                                          0.003, traffic(window))
    balancer = BalancerReading("hx-a", "haproxy", tuple(servers), read_at=NOW)
    first, snap = (merge(configs, readings, [balancer], NOW, refresh_seconds=1.0) for readings in rounds)
    settings = ProblemsConfig()
    out = [second_sample_wait(first), render_table(snap), status_json(snap, "c")]
    for history in (None, RisingMemory()):
        shot = rules.check(snap, history, settings, 2, NOW)
        out += [check_text(snap, shot, 2), check_json(snap, shot, 2)]
    return out, shot


def test_status_and_check_say_the_same_from_a_brief_answer_as_from_a_full_one():
    (full_out, shot), (brief_out, _) = fleet(lambda body: body), fleet(brief)
    for f, b in zip(full_out, brief_out):
        assert f == b
    fired = {p.rule for p in shot.problems}  # the fleet reaches every rule that reads an agent's answer
    assert {"gpu-hot", "gpu-throttled", "gpu-ecc", "collector-failing", "model-differs", "model-hash-failed",
            "asr-down-with-traffic", "agent-stale", "gpu-memory-leak", "host-memory-leak"} <= fired
    assert full_out[0] is not None and "~" in full_out[1] and "*" in full_out[1]  # a second sample; simulated
    nodes = full_out[2]["nodes"]  # GPUs; requests the agents counted
    assert any(n["streams_open"] for n in nodes) and any(n["request_rate"] for n in nodes)


def test_brief_is_under_half_the_full_body_every_key_with_the_full_bodys_value():
    full = status_dict(random_snapshot(random.Random(3), "node-1", NOW, 40))
    short = brief(full)

    def same(b, f, keys):
        assert set(b) <= set(f) and set(b) <= set(keys)
        for k, v in b.items():
            if keys[k] is None or not isinstance(v, (dict, list)):
                assert v == f[k]
            elif isinstance(v, list):
                for bi, fi in zip(v, f[k], strict=True):
                    same(bi, fi, keys[k])
            else:
                same(v, f[k], keys[k])

    same(short, full, BRIEF_KEYS)
    assert len(json.dumps(short)) * 2 < len(json.dumps(full))


@pytest.fixture
async def agent():
    """The agent's HTTP face on a free loopback port, serving one snapshot."""
    snap = random_snapshot(random.Random(5), "node-1", NOW, 40)

    async def fresh(after: float) -> Snapshot:
        return snap

    app = make_app(lambda: snap, fresh, lambda: NOW)
    async with serving(app) as client:
        yield snap, client


async def test_the_agent_serves_the_brief_view_when_asked_the_full_one_otherwise(agent):
    snap, client = agent
    full = (await client.get("/v1/status")).json()
    assert full == json.loads(json.dumps(status_dict(snap)))
    assert (await client.get("/v1/status", params={"view": "full"})).json() == full
    short = await client.get("/v1/status", params={"view": "brief"})
    assert short.status_code == 200 and short.json() == json.loads(json.dumps(brief(full)))
    fresh = await client.get("/v1/status?after=now&view=brief", headers={"Accept-Encoding": "gzip"})
    assert fresh.headers["content-encoding"] == "gzip" and fresh.content == short.content
    bad = await client.get("/v1/status", params={"view": "short"})
    assert bad.status_code == 400 and bad.json() == {
        "error": "bad view='short': give view=brief or view=full (the default)"}


async def test_one_shot_asks_for_the_brief_view_and_reads_an_older_agents_full_answer_too(agent):
    snap, client = agent
    full = json.dumps(status_dict(snap)).encode()
    asked = []

    async def older(reader, writer):  # an agent from before ?view=: the full body whatever the query
        asked.append((await reader.readuntil(b"\r\n\r\n")).split(b" ")[1])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(full), full))
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(older, "127.0.0.1", 0)
    nodes = [NodeConfig("new", agent=str(client.base_url)),
             NodeConfig("old", agent=f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}")]
    one_shot, console = AgentPoller(timeout=2.0, one_shot=True), AgentPoller(timeout=2.0)
    try:
        got, seen = await one_shot.poll(nodes), await console.poll(nodes)
    finally:
        srv.close()
        await asyncio.gather(one_shot.close(), console.close())
    assert asked == [b"/v1/status?view=brief", b"/v1/status"]  # `status`, then the console
    assert {r.error for r in (*got.values(), *seen.values())} == {None}
    assert got["new"].status == parse_status(json.loads(json.dumps(brief(status_dict(snap)))))
    assert got["old"].status == seen["new"].status == seen["old"].status == parse_status(json.loads(full))
    assert got["new"].status != got["old"].status  # the console's node detail still gets every reading


async def test_the_stand_in_agents_serve_the_brief_view_as_the_agent_makes_it():
    """The benchmarks' stand-in fleet (support.sources_synth) answers `status` as a real agent does."""
    node = SynthNode("gpu-0001", 1, collected_at=NOW)
    servers, ports = await serve_agents([node])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[node.name]}", timeout=5) as client:
            short = await client.get("/v1/status?after=now&view=brief")
            full = await client.get("/v1/status")
    finally:
        for srv in servers:
            srv.close()
    assert full.json() == node.status_body() and short.json() == brief(node.status_body())
