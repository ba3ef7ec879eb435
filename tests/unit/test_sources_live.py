"""asrtop.sources.live.LiveFleetSource: with the nodes known (no discovery), the agents are polled while the
balancers are read, not after (issue 17: a 1,000-node `status` waits for the longer of the two, not both)."""

from __future__ import annotations

import asyncio
import threading

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import ClusterConfig, NodeConfig
from asrtop.fleet import AgentReading
from asrtop.sources.live import LiveFleetSource


class SlowBalancer:
    """Answers only once the agents' poll has begun (or fails after 2 s)."""

    name, kind = "hx", "haproxy"

    def __init__(self, polling: threading.Event):
        self.polling = polling

    def servers(self):
        if not self.polling.wait(2.0):
            raise RuntimeError("read before the agents were polled")
        return [ServerState("n1", "10.0.0.1", 80, 1, False, AdminState.READY, Health.UP)]


class Facts:
    error = None

    def __init__(self, polling: threading.Event):
        self.polling = polling

    async def poll(self, nodes):
        self.polling.set()
        await asyncio.sleep(0.05)
        return {n.name: AgentReading(n.agent, None, None, "refused") for n in nodes}

    async def close(self):
        pass


def test_agents_polled_while_the_balancers_are_read():
    polling = threading.Event()
    cfg = ClusterConfig(None, nodes=(NodeConfig("n1", agent="http://10.0.0.1:10860"),))
    snap = asyncio.run(LiveFleetSource(cfg, Facts(polling), [SlowBalancer(polling)]).snapshot())
    assert snap.balancers[0].reachable, snap.balancers[0].error
    assert snap.node("n1").servers["hx"].name == "n1" and snap.node("n1").agent.error == "refused"


class ViaSSH:
    """A balancer that says how it is reached (ReportsTransport); fails on demand."""

    name, kind, transport = "lb2", "haproxy", "ssh ops@lb2:22"

    def __init__(self, error: str | None = None):
        self.error = error

    def servers(self):
        from asrtop.balancers.base import BalancerUnreachable

        if self.error:
            raise BalancerUnreachable(self.error)
        return [ServerState("n1", "10.0.0.1", 80, 1, False, AdminState.READY, Health.UP)]


def test_a_reading_says_its_transport_and_how_long_the_read_took():
    from asrtop.sources.live import read_balancer

    ok = asyncio.run(read_balancer(ViaSSH()))
    assert ok.transport == "ssh ops@lb2:22" and ok.latency is not None and 0 < ok.latency < 1
    down = asyncio.run(read_balancer(ViaSSH("lb2: ssh ops@lb2:22: connection refused")))
    assert (down.transport, down.latency) == ("ssh ops@lb2:22", None)  # a failed read has no time
    ready = threading.Event()
    ready.set()
    plain = asyncio.run(read_balancer(SlowBalancer(ready)))  # says nothing about how it is reached
    assert plain.reachable and plain.transport is None and plain.latency is not None
