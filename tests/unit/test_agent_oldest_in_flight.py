"""The oldest in-flight request's age: kept by the agent's in-path proxy, carried in /v1/status
(asr.requests.oldest_in_flight_seconds, an added key of schema 1), read by asrtop into RequestStats and
NodeView (what a rollout's wait stage shows)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from aiohttp.test_utils import TestServer

from asrtop.agentstatus import parse_status
from asrtop.config import NodeConfig
from asrtop.demo.audio import speech_like_wav
from asrtop.demo.simnode import NodeSettings, SimNode
from asrtop.fleet import AgentReading, merge
from asrtop_agent.collectors.requests import RequestCounters
from asrtop_agent.proxy import AsrProxy
from asrtop_agent.snapshot import AsrSnap, GpuReport, HostSnap, ModelSnap, Snapshot
from asrtop_agent.status import status_dict


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot(asr: AsrSnap) -> Snapshot:
    return Snapshot(node="node-1", agent_version="0.1.0", collected_at=99.0, interval_seconds=1.0, host=HostSnap(),
                    gpu=GpuReport(), asr=asr, model=ModelSnap())


def proxied(in_flight_since: float, now: float) -> AsrSnap:
    """What the collector reports with --proxy: one request in flight since `in_flight_since`."""
    clock = Clock()
    clock.now = in_flight_since
    c = RequestCounters(clock=clock)
    c.started()
    clock.now = now
    return AsrSnap(url="http://127.0.0.1:1", up=True, in_flight=1, in_flight_source="proxy", requests=c.snapshot())


def test_counters_age_the_oldest_request_still_in_flight():
    clock = Clock()
    c = RequestCounters(clock=clock)
    assert c.snapshot().oldest_in_flight_seconds is None
    first = c.started()
    clock.now = 102.0
    second = c.started()
    clock.now = 103.5
    assert c.snapshot().oldest_in_flight_seconds == 3.5
    c.finished(200, 3.5, key=first)
    assert c.snapshot().oldest_in_flight_seconds == 1.5  # the second one is now the oldest
    c.finished(200, 1.5, key=second)
    assert c.snapshot().oldest_in_flight_seconds is None and c.in_flight == 0


async def test_the_proxy_reports_the_age_of_a_request_it_is_forwarding():
    upstream = TestServer(SimNode(NodeSettings(rtf=0.5)).app(), host="127.0.0.1")
    await upstream.start_server()
    counters = RequestCounters()
    proxy = AsrProxy(str(upstream.make_url("")), counters)
    front = TestServer(proxy.app(), host="127.0.0.1")
    await front.start_server()
    try:
        async with httpx.AsyncClient(base_url=str(front.make_url("")), timeout=10) as client:
            # a long request (held 1 s by the node), then a short one that ends first
            long = asyncio.create_task(client.post("/asr", files={"file": ("a.wav", speech_like_wav(2.0))}))
            while counters.in_flight == 0:
                await asyncio.sleep(0.01)
            since = time.monotonic()
            short = await client.post("/asr", files={"file": ("b.wav", speech_like_wav(0.4))})
            assert short.status_code == 200 and counters.in_flight == 1
            age = counters.snapshot().oldest_in_flight_seconds
            assert age is not None and age >= time.monotonic() - since  # still the long one's age
            assert (await long).status_code == 200
        assert counters.snapshot().oldest_in_flight_seconds is None
    finally:
        await front.close()
        await proxy.close()
        await upstream.close()


def test_status_carries_it_and_asrtop_reads_it_into_the_node_view():
    body = json.loads(json.dumps(status_dict(snapshot(proxied(in_flight_since=50.0, now=54.25)))))
    age = body["asr"]["requests"]["oldest_in_flight_seconds"]
    assert age == 4.25
    st = parse_status(body)
    assert st.asr.requests.oldest_in_flight_seconds == age
    node = NodeConfig("node-1", address="127.0.0.1:7001", agent="http://127.0.0.1:9001")
    fresh = merge([node], {"node-1": AgentReading(node.agent, st, fetched_at=99.5)}, [], now=100.0)
    assert fresh.nodes[0].oldest_in_flight_seconds == age
    stale = merge([node], {"node-1": AgentReading(node.agent, st, fetched_at=90.0, error="timeout")}, [],
                  now=100.0, refresh_seconds=1.0)
    assert stale.nodes[0].stale and stale.nodes[0].oldest_in_flight_seconds is None


def test_unknown_without_the_proxy_or_from_an_older_agent():
    no_proxy = snapshot(AsrSnap(url="http://127.0.0.1:1", in_flight=2, in_flight_source="connections"))
    st = parse_status(json.loads(json.dumps(status_dict(no_proxy))))
    assert st.asr.requests is None
    node = NodeConfig("node-1", agent="http://127.0.0.1:9001")
    assert merge([node], {"node-1": AgentReading(node.agent, st, fetched_at=99.5)}, [],
                 now=100.0).nodes[0].oldest_in_flight_seconds is None
    older = parse_status({"schema": 1, "node": "n", "asr": {"requests": {"total": 3, "in_flight": 1}}})  # before the key
    assert older.asr.requests.oldest_in_flight_seconds is None
    garbage = parse_status({"schema": 1, "node": "n", "asr": {"requests": {"oldest_in_flight_seconds": -4}}})
    assert garbage.asr.requests.oldest_in_flight_seconds is None
