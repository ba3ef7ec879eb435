"""PrometheusSource against a REAL Prometheus scraping aiohttp stand-in agents (the agreed asr_* names).

Each stand-in serves /metrics and /v1/status from the same SynthNode, so the Prometheus-backed readings
can be compared with AgentPoller's direct ones. tests/integration/test_sources_prometheus_agents.py does
the same against real asrtop-agent processes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp import web

from asrtop.config import NodeConfig
from asrtop.fleet import merge
from support.netutil import free_port
from asrtop.sources.agents import AgentPoller
from asrtop.sources.prometheus import PrometheusSource, instance_of_url
from support.sources_prom import instant, prometheus, wait_scraped, wait_until
from support.sources_synth import SynthNode

pytestmark = pytest.mark.timeout(120)


class StandIn:
    def __init__(self, node: SynthNode):
        self.node = node
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "StandIn":
        app = web.Application()
        async def metrics(request):
            return web.Response(text=self.node.metrics_text(), content_type="text/plain")

        async def status(request):
            return web.json_response(self.node.status_body())

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/v1/status", status)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def wait_for(cond, timeout: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = await cond()
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {last!r}")
        await asyncio.sleep(0.2)


def advancing(node: SynthNode) -> SynthNode:
    """Every scrape of the node's /metrics sees 3 more 2xx, 1 more 5xx, 6 s more latency, 40 s more audio."""
    served = node.metrics_text

    def metrics_text() -> str:
        node.requests = {"2xx": node.requests["2xx"] + 3, "5xx": node.requests["5xx"] + 1}
        node.latency_sum += 6.0
        node.audio_seconds += 40.0
        return served()
    node.metrics_text = metrics_text  # type: ignore[method-assign]
    return node


async def slow_facts_come_a_slice_per_round_and_stay(src: PrometheusSource, cfgs: list[NodeConfig]) -> None:
    """Issue 17: what changes rarely (the node's identity and versions, a model state of "ok", a probe that is
    up) is not asked for in every round: each instance's comes once in static_slices rounds, with its static
    facts, its slow gauges (here the load) once in detail_slices rounds, and every round's readings carry both."""
    seen: set[tuple[int, str, str]] = set()  # (round, instance, fact) for each slow fact an answer carried
    rounds: list[dict] = []
    decode = src._decode  # every instant answer is decoded there (on the source's worker thread)

    def spy(promql: str, status: int, body: bytes) -> list[dict]:
        result = decode(promql, status, body)
        for r in result:
            m = r["metric"]
            if "agent_version" in m:
                seen.add((len(rounds), m["instance"], "identity"))
            if m.get("__name__") in ("asr_service_up", "asr_host_load1") or m.get("state") == "ok":  # (asr-3's
                # "hashing" is asked for)
                seen.add((len(rounds), m["instance"], m["__name__"]))
        return result
    src._decode = spy  # type: ignore[method-assign]
    try:
        for _ in range(src.static_slices):
            rounds.append(await src.poll(cfgs))
    finally:
        del src._decode
    for fact, instances in (("identity", 5), ("asr_model_state", 4), ("asr_service_up", 5)):  # 4 "ok" models
        sent = Counter(inst for _, inst, f in seen if f == fact)
        assert len(sent) == instances and max(sent.values()) <= 2, (fact, sent)  # was: in each of the rounds
    gauges = Counter(inst for _, inst, f in seen if f == "asr_host_load1")
    times = src.static_slices // src.detail_slices
    assert len(gauges) == 5 and times <= min(gauges.values()) <= max(gauges.values()) <= times + 1, gauges
    for readings in rounds:
        for r in readings.values():
            s = r.status
            assert r.error is None and s.agent_version == "0.1.0" and s.gpu_source == "simulated"
            assert s.asr.up is True and s.gpus[0].name == "NVIDIA A10" and s.model.sha256 and s.host.load1 is not None
        assert readings["asr-3"].status.model.state == "hashing" and readings["asr-0"].status.model.state == "ok"
        assert readings["asr-2"].status.node == "asr-2"  # no agent URL: joined by the node label, kept


async def probe_changes_are_seen_in_the_next_round(src: PrometheusSource, cfgs: list[NodeConfig],
                                                   node: SynthNode) -> None:
    """A probe that goes down, and back up, shows in the next round after the scrape (asked as an exception)."""
    served = node.metrics_text
    node.metrics_text = lambda: served().replace("asr_service_up 1", "asr_service_up 0")  # type: ignore

    async def up_is(want: bool):
        r = (await src.poll(cfgs))[node.name]
        return r if r.status.asr.up is want else None
    try:
        await wait_for(lambda: up_is(False), timeout=10)
    finally:
        node.metrics_text = served  # type: ignore[method-assign]
    await wait_for(lambda: up_is(True), timeout=10)


async def a_changed_digest_shows_in_the_next_round(base: str, cfgs: list[NodeConfig], nodes_: list[SynthNode]) -> None:
    """Issue 17: a model digest that changes while the model stays "ok" shows in the first round after Prometheus
    scraped it, whatever the cadence of the details (here never): leaving the fleet's majority digest, moving
    between two others, and back to the majority's. The model's details (its directories) come with it."""
    src = PrometheusSource(base, refresh=2.0, detail_slices=10**6)  # slow gauges and static facts: never again
    majority, other = nodes_[0].sha256, nodes_[1].sha256
    try:
        await src.poll(cfgs)  # the first round asks for everybody's
        for i, digest in ((0, "d" * 64), (1, "c" * 64), (0, majority), (1, other)):
            node, selector = nodes_[i], f'instance="{instance_of_url(cfgs[i].agent)}",sha256="{digest}"'
            node.sha256 = digest
            await asyncio.to_thread(wait_until, lambda: instant(base, f"asr_model_info{{{selector}}}"), 10,
                                    f"{node.name}'s digest {digest[:4]} scraped")
            model = (await src.poll(cfgs))[node.name].status.model
            assert (model.state, model.sha256, model.dirs[0].sha256) == ("ok", digest, digest), node.name
    finally:
        await src.close()


class NoFederation:
    """A front for a Prometheus that answers /federate 404, as Thanos Query's and Mimir's do, and passes the query
    API on (502 when the Prometheus behind it is gone)."""

    def __init__(self) -> None:
        self.backend = ""
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.federate_asked = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "NoFederation":
        self.session = aiohttp.ClientSession()

        async def forward(request: web.Request) -> web.Response:
            if request.path == "/federate":
                self.federate_asked += 1
                return web.Response(status=404, text="404 page not found")
            try:
                async with self.session.request(request.method, self.backend + request.path_qs,
                                                data=await request.read(),
                                                headers={"Content-Type": request.content_type}) as r:
                    return web.Response(status=r.status, body=await r.read(),
                                        headers={"Content-Type": r.headers.get("Content-Type", "text/plain")})
            except aiohttp.ClientError as e:
                return web.Response(status=502, text=f"bad gateway: {e}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        if self.session:
            await self.session.close()


async def lagging_nodes_are_read_as_any_other(base: str, cfgs: list[NodeConfig], direct: dict,
                                              federation: bool) -> None:
    """Issue 17: a round reads the per-round series scraped within about one scrape; a node whose last scrape is
    older than that (late, failed; a refresh shorter than the scrape interval) is read as any other: from
    /federate's answer, which has every series' last sample with its time, or (a server without /federate) asked
    again at an instant."""
    src = PrometheusSource(base, refresh=2.0)
    src.window = 0.001  # no scrape is that recent: every node lags
    try:
        got = await src.poll(cfgs)
        assert src.federates is federation
    finally:
        await src.close()
    now = time.time()
    for name, r in got.items():
        assert r.error is None, r.error
        assert now - 3 * 2.0 <= r.fetched_at <= now  # its scrape time, within the staleness range
        assert r.status.asr.in_flight == direct[name].status.asr.in_flight
        assert r.status.asr.requests.total == direct[name].status.asr.requests.total


@pytest.mark.parametrize("federation", [True, False], ids=["federate", "no-federate"])
async def test_prometheus_source_agrees_with_direct_polling(prometheus_bin, tmp_path, federation):
    """The readings through a real Prometheus are the agents' own, round after round (slow facts, probes, digests,
    request rates, an agent dying, a node Prometheus never heard of, Prometheus itself gone). `no-federate`: the
    same through a front whose /federate answers 404 (NoFederation: Thanos Query, Mimir), where the per-round
    series come as range queries."""
    other = "f" * 64
    nodes_ = [SynthNode("asr-0", 0, in_flight=2, load1=0.5), SynthNode("asr-1", 1, sha256=other, in_flight=7),
              SynthNode("asr-2", 2, load1=3.0), SynthNode("asr-3", 3, model_state="hashing")]
    agents = [await StandIn(n).start() for n in nodes_]
    busy = await StandIn(advancing(SynthNode("busy", 4))).start()  # request figures: see the end
    # asr-2 is configured without an agent URL: Prometheus finds it by asr_node_info{node}
    cfgs = [NodeConfig("asr-0", agent=agents[0].url), NodeConfig("asr-1", agent=agents[1].url + "/"),
            NodeConfig("asr-2"), NodeConfig("asr-3", agent=agents[3].url)]
    src = PrometheusSource("", refresh=2.0, detail_slices=3)  # static facts every 18 rounds
    direct = AgentPoller(refresh=2.0)
    front = None if federation else await NoFederation().start()
    try:
        with prometheus(prometheus_bin, [f"127.0.0.1:{a.port}" for a in (*agents, busy)], tmp_path) as base:
            await asyncio.to_thread(wait_scraped, base, 5)
            if front is not None:
                front.backend, base = base, front.url
            src.url = base
            via_prom = await src.poll(cfgs)
            assert src.federates is federation
            if front is not None:  # asked by the parts of the first round that were in flight together, only
                assert 1 <= front.federate_asked <= 3, front.federate_asked
            via_agents = await direct.poll([NodeConfig(n.name, agent=a.url) for n, a in zip(nodes_, agents)])
            assert set(via_prom) == {"asr-0", "asr-1", "asr-2", "asr-3"}
            for name in via_prom:
                p, d = via_prom[name], via_agents[name]
                assert p.error is None, p.error
                assert p.status.node == d.status.node
                assert p.status.model.sha256 == d.status.model.sha256
                assert p.status.model.state == d.status.model.state
                assert p.status.asr.in_flight == d.status.asr.in_flight
                assert p.status.host.load1 == pytest.approx(d.status.host.load1)
                assert p.status.gpus[0].uuid == d.status.gpus[0].uuid
                assert p.status.asr.requests.total == d.status.asr.requests.total
                assert dict(p.status.asr.requests.by_class) == dict(d.status.asr.requests.by_class)
            assert via_prom["asr-2"].url.startswith("prometheus:127.0.0.1:")
            await lagging_nodes_are_read_as_any_other(base, cfgs, via_agents, federation)
            asked = front.federate_asked if front is not None else 0
            await slow_facts_come_a_slice_per_round_and_stay(src, cfgs)
            assert front is None or front.federate_asked == asked  # not asked again
            await probe_changes_are_seen_in_the_next_round(src, cfgs, nodes_[1])
            await a_changed_digest_shows_in_the_next_round(base, cfgs, nodes_)
            snap = merge(cfgs, via_prom, (), max(r.fetched_at for r in via_prom.values()), 2.0)
            assert snap.majority_digest == nodes_[0].sha256
            assert snap.nodes_differing_from_target() == ("asr-1",)
            assert snap.node("asr-3").model_digest is None  # hashing: digest not trusted yet
            assert not any(n.stale for n in snap.nodes)

            # hashing finishes with a new digest: the round that sees "ok" carries the new digest too
            nodes_[3].model_state, nodes_[3].sha256 = "ok", "e" * 64

            async def hashed():
                r = (await src.poll(cfgs))["asr-3"]
                return r if r.status.model.state == "ok" else None
            r3 = await wait_for(hashed)
            assert r3.status.model.sha256 == "e" * 64

            # and back: a round asks for the "ok" series only (plus every state series of the nodes known not
            # to be ok), so a node that leaves "ok" has its state looked up in the same round, and then kept
            nodes_[3].model_state = "error"

            async def failed():
                r = (await src.poll(cfgs))["asr-3"]
                return r if r.status.model.state != "ok" else None
            r3 = await wait_for(failed)
            assert r3.error is None and r3.status.model.state == "error"
            assert [(await src.poll(cfgs))["asr-3"].status.model.state for _ in range(3)] == ["error"] * 3

            # slow gauges (here the GPU temperature) are refreshed a slice per round: within detail_slices rounds
            nodes_[1].temperature, nodes_[1].in_flight = 77.0, 9

            async def fast_seen():
                r = (await src.poll(cfgs))["asr-1"]
                return r if r.status.asr.in_flight == 9 else None
            await wait_for(fast_seen)
            temps = [(await src.poll(cfgs))["asr-1"].status.gpus[0].temperature_celsius
                     for _ in range(src.detail_slices)]
            assert temps[-1] == 77.0, temps

            # request figures (what nginx does not count): each scrape's counters over asrtop.traffic's window,
            # from the round's queries; the busy node's counters advance with every scrape, the others' stand still
            busy_cfg = NodeConfig("busy", agent=busy.url)

            async def rates():
                r = await src.poll([busy_cfg, cfgs[1]])
                return r if r["busy"].traffic is not None and r["busy"].traffic.request_rate else None
            counted = await wait_for(rates)
            t, still = counted["busy"].traffic, counted["asr-1"].traffic
            assert t.request_rate > 0 and t.window_seconds > 0
            assert t.errors_5xx_rate / t.request_rate == pytest.approx(0.25)
            assert t.response_seconds == pytest.approx(6.0 / 4)
            assert t.audio_rate / t.request_rate == pytest.approx(10.0)
            assert (still.request_rate, still.errors_5xx_rate, still.audio_rate) == (0.0, 0.0, 0.0)
            assert still.response_seconds is None  # nothing finished: no latency, not 0 s
            view = merge([busy_cfg], counted, (), counted["busy"].fetched_at, 2.0).node("busy")
            assert (view.requests_source, view.request_rate) == ("agent", t.request_rate)

            # an agent dies: Prometheus says up == 0; the last good status stays, with the error
            good = (await src.poll(cfgs))["asr-0"]
            await agents[0].stop()

            async def down():
                nonlocal good
                r = (await src.poll(cfgs))["asr-0"]
                if r.error is None:
                    good = r
                return r if r.error else None
            r = await wait_for(down)
            assert "up == 0" in r.error
            assert r.status == good.status  # the last good one, kept
            assert r.fetched_at == good.fetched_at
            later = merge(cfgs, {"asr-0": r}, (), r.fetched_at + 3.5 * 2.0, 2.0)
            assert later.node("asr-0").stale
            # the others are unaffected
            rest = await src.poll(cfgs)
            assert rest["asr-1"].error is None and rest["asr-2"].error is None

            # a node Prometheus has never heard of
            ghost_cfg = NodeConfig("ghost", agent=f"http://127.0.0.1:{free_port()}")
            ghost = (await src.poll([*cfgs, ghost_cfg]))["ghost"]
            assert ghost.status is None and "no asr_* series" in ghost.error

            async def first_round():  # a new source (a one-shot `asrtop status`): rates in its first round,
                fresh = PrometheusSource(base, refresh=2.0)  # from the counters Prometheus had a window ago
                try:
                    r = (await fresh.poll([busy_cfg]))["busy"]
                finally:
                    await fresh.close()
                return r if r.traffic is not None else None
            seeded = (await wait_for(first_round)).traffic
            # the seed is the last scrape at or before now - 10 s, the current sample the last one before now:
            # the two scrapes are 10 s apart give or take one scrape interval (1 s here), as rates over a window are
            assert 9.0 <= seeded.window_seconds <= 11.0
            assert seeded.errors_5xx_rate / seeded.request_rate == pytest.approx(0.25)
            assert seeded.response_seconds == pytest.approx(6.0 / 4)
        # Prometheus gone: every node keeps its last status and says why, in one line
        gone = await src.poll(cfgs)
        assert all(r.error and "Prometheus at" in r.error and "\n" not in r.error for r in gone.values())
        assert gone["asr-1"].status is not None
    finally:
        await src.close()
        await direct.close()
        if front is not None:
            await front.stop()
        for a in (*agents, busy):
            await a.stop()


async def test_not_a_prometheus_url_is_one_clear_line(tmp_path):
    standin = await StandIn(SynthNode("x")).start()
    src = PrometheusSource(standin.url, refresh=1.0)
    try:
        r = await src.poll([NodeConfig("x", agent=standin.url)])
        assert r["x"].status is None
        assert "not a JSON answer" in r["x"].error or "HTTP" in r["x"].error
    finally:
        await src.close()
        await standin.stop()

