"""`GET /v1/status?after=T`: a snapshot whose collection round began at or after T (`now`: when the agent got
the request), run on demand, coalesced and rate-limited; the model listed afresh in that round; asrtop reads
`round_started_at`, and the rollout's health stage asks for such a reading instead of waiting out three
agent intervals (an older agent, without `round_started_at`, still gets the three-reading rule).

A real aiohttp app on 127.0.0.1 and the real CollectionLoop, with fake collectors (no GPU, no ASR service).
The loop's interval is 60 s, so every answer that comes quicker came from a round run on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asrtop.agentstatus import parse_status
from asrtop.control.rollout_model import (
    TARGET_FROM_FIRST,
    PlannedNode,
    RolloutPlan,
    RolloutSettings,
    RolloutState,
)
from asrtop.control.rollout_stages import FRESH_ROUNDS, StageFailed, Stages
from asrtop_agent import snapshot as snapshot_mod
from asrtop_agent.collectors.model import ModelHasher
from asrtop_agent.server import make_app
from asrtop_agent.snapshot import MIN_FORCED_GAP, AsrSnap, CollectionLoop, GpuReport, HostSnap, ModelSnap
from asrtop_agent.status import status_dict

OLD, NEW = "a" * 64, "b" * 64


class Asr:
    url = "http://127.0.0.1:1"

    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        self.gate: asyncio.Event | None = None  # set: rounds hang in the ASR probe until it opens

    async def collect(self) -> AsrSnap:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return AsrSnap(url=self.url, up=self.up)


class Host:
    def collect(self) -> HostSnap:
        return HostSnap()


class Gpu:
    source = "none"

    def collect(self, in_flight) -> GpuReport:
        return GpuReport()


class Model:
    """ModelHasher's two faces: poll() the last background result (listed long ago), fresh() listed now."""

    def __init__(self) -> None:
        self.on_disk = OLD
        self.background = ModelSnap("ok", OLD, listed_at=time.time() - 30)

    def poll(self) -> ModelSnap:
        return self.background

    def fresh(self) -> ModelSnap:
        return ModelSnap("ok", self.on_disk, listed_at=time.time())


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@asynccontextmanager
async def agent(model=None):
    """A running agent (collection loop + HTTP app) and an httpx client for it."""
    asr = Asr()
    loop = CollectionLoop(node="node-1", version="0.1.0", interval=60.0, host=Host(), gpu=Gpu(), asr=asr,
                          model=model or Model())
    server = make_app(lambda: loop.latest, loop.fresh, loop.clock)
    await server.start(bound_socket())
    task = asyncio.create_task(loop.run())
    try:
        while loop.latest.round_started_at is None:  # the first (regular) round
            await asyncio.sleep(0.005)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=15) as client:
            yield loop, asr, client
    finally:
        if asr.gate is not None:
            asr.gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()


async def test_after_now_runs_a_round_at_once_while_a_plain_scrape_stays_the_rendered_snapshot():
    async with agent() as (loop, asr, client):
        first = loop.latest
        asr.up, loop.model.on_disk = True, NEW  # the service came up on a new model since that round
        plain = await client.get("/v1/status")
        assert plain.content == first.rendered("status", lambda s: b"")  # the rendered body, as before
        assert plain.json()["asr"]["up"] is False
        sent = time.time()
        t0 = time.monotonic()
        fresh = await client.get("/v1/status", params={"after": "now"})
        assert time.monotonic() - t0 < 2  # not the 60 s interval
        body = fresh.json()
        assert fresh.status_code == 200 and body["asr"]["up"] is True and body["model"]["sha256"] == NEW
        assert body["round_started_at"] >= sent and body["schema"] == 1
        assert parse_status(body).round_started_at == body["round_started_at"]
        assert (await client.get("/v1/status")).json()["round_started_at"] == body["round_started_at"]


async def test_a_snapshot_already_fresh_enough_is_served_without_a_round():
    async with agent() as (loop, asr, client):
        calls, started = asr.calls, loop.latest.round_started_at
        got = await client.get("/v1/status", params={"after": repr(started)})
        assert got.json()["round_started_at"] == started and asr.calls == calls
        # a regular round reports the background model reading: the snapshot is only as fresh as its listing
        assert started == pytest.approx(loop.model.background.listed_at)


async def test_waiting_requests_share_rounds_and_forced_rounds_are_spaced():
    async with agent() as (loop, asr, client):
        calls = asr.calls
        answers = await asyncio.gather(*(client.get("/v1/status", params={"after": "now"}) for _ in range(30)))
        assert {a.status_code for a in answers} == {200}
        assert asr.calls - calls <= 2  # one round for all of them (two when some came in during the first)
        starts = []
        for _ in range(4):
            starts.append((await client.get("/v1/status", params={"after": "now"})).json()["round_started_at"])
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert min(gaps) >= MIN_FORCED_GAP * 0.9, gaps


async def test_no_round_in_time_is_a_503_with_one_line_and_bad_after_a_400(monkeypatch):
    monkeypatch.setattr(snapshot_mod, "FRESH_TIMEOUT", 0.3)
    async with agent() as (loop, asr, client):
        bad = await client.get("/v1/status", params={"after": "yesterday"})
        assert bad.status_code == 400
        assert bad.json() == {"error": "bad after='yesterday': give a Unix time in seconds (e.g. 1763712000.25) "
                                       "or 'now'"}
        assert (await client.get("/v1/status", params={"after": "nan"})).status_code == 400
        asr.gate = asyncio.Event()  # the ASR probe hangs
        late = await client.get("/v1/status", params={"after": "now"})
        assert late.status_code == 503 and late.json()["error"].startswith("no collection round began at or after")
        assert "\n" not in late.json()["error"]
        assert (await client.get("/v1/status")).status_code == 200  # plain scrapes still answer


def write(path, data: bytes) -> None:
    path.write_bytes(data)


def test_the_hasher_lists_afresh_and_never_answers_with_the_digest_before_a_change(tmp_path):
    write(tmp_path / "model.bin", b"old weights")
    h = ModelHasher([str(tmp_path)])
    try:
        first = h.fresh()
        deadline = time.monotonic() + 10
        while first.state != "ok" and time.monotonic() < deadline:
            first = h.fresh()
        assert first.sha256 is not None
        write(tmp_path / "model.bin", b"new weights, longer")
        assert h.poll().sha256 == first.sha256  # the background result: one round late
        after = h.fresh()
        assert after.sha256 != first.sha256 and after.state in ("hashing", "ok")
        assert after.listed_at is not None and after.listed_at >= first.listed_at
    finally:
        h.stop()


def test_while_a_scan_hashes_fresh_says_hashing_at_once(tmp_path):
    write(tmp_path / "model.bin", b"weights")
    release = threading.Event()

    def slow(path: str) -> str:
        release.wait(10)
        return hashlib.sha256(open(path, "rb").read()).hexdigest()

    h = ModelHasher([str(tmp_path)], hash_file=slow)
    try:
        while h.poll().files is None:  # the listing is published before hashing
            time.sleep(0.005)
        t0 = time.monotonic()
        got = h.fresh()
        assert got.state == "hashing" and got.sha256 is None and time.monotonic() - t0 < 1
        release.set()
        deadline = time.monotonic() + 10
        while h.fresh().state != "ok" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert h.fresh().state == "ok"
    finally:
        release.set()
        h.stop()


class StuckListing(ModelHasher):
    """A listing on a hung file system, once `stuck` is set (the one way in: the listing step itself)."""

    def __init__(self, dirs):
        self.stuck, self.listing = threading.Event(), threading.Event()
        super().__init__(dirs)

    def _list(self, index, root):
        if self.stuck.is_set():
            self.listing.set()
            time.sleep(3)
        return super()._list(index, root)


def test_a_fresh_listing_waited_for_gives_up_when_the_agent_stops(tmp_path):
    write(tmp_path / "model.bin", b"weights")
    h = StuckListing([str(tmp_path)])
    while h.poll().state != "ok":
        time.sleep(0.005)
    h.stuck.set()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(h.fresh()))
    waiter.start()
    assert h.listing.wait(5)
    t0 = time.monotonic()
    h.stop()
    waiter.join(5)
    assert got and got[0].state == "hashing" and time.monotonic() - t0 < 1  # not the listing's 3 s


# -- the rollout's health stage ------------------------------------------------------------------------------

class Engine:
    """What the stages need of the engine, in memory."""

    def __init__(self, agent_url: str, health_timeout: float, target: str | None = NEW):
        node = PlannedNode("node-1", False, 1, 0, OLD, "127.0.0.1:1", agent_url)
        plan = RolloutPlan((node,), (("node-1",),), RolloutSettings(hook=("true",), health_timeout=health_timeout),
                           target, TARGET_FROM_FIRST)
        self.state = RolloutState("r1", "ops@bastion", 1, 0.0, 0.0, "running", plan, target=target)
        self.ctl, self.audit_path, self.canary, self.poll = None, None, None, 0.05
        self.stopping = False
        self.events: list[str] = []

    def stop_reason(self) -> str:
        return "SIGINT"

    async def until_stopped(self) -> None:
        await asyncio.Event().wait()

    def save(self) -> None:
        pass

    def audit(self, *a) -> None:
        pass

    def emit(self, kind, node=None, stage=None, message="", **figures) -> None:
        self.events.append(message)


async def test_health_passes_on_the_first_round_run_after_the_hook():
    async with agent() as (loop, asr, client):
        # before the hook's change: the agent's last snapshot shows the service down on the old model
        asr.up, loop.model.on_disk = True, NEW
        rounds = asr.calls
        t0 = time.monotonic()
        detail = await Stages(Engine(str(client.base_url), health_timeout=5)).health("node-1")
        assert detail == f"ASR up, model {NEW[:12]}"
        assert time.monotonic() - t0 < 2 and asr.calls - rounds == 1  # one round, not three 60 s intervals


async def test_health_waits_out_a_wrong_state_and_says_why_at_its_timeout():
    async with agent() as (loop, asr, client):
        with pytest.raises(StageFailed) as failed:
            await Stages(Engine(str(client.base_url), health_timeout=0.5)).health("node-1")
        assert failed.value.reason == ("not healthy after 0.5 s (--health-timeout): the ASR service is not up")
        assert asr.calls >= 3  # asked again every poll, a fresh round each time


async def test_an_older_agent_without_round_started_at_still_needs_three_distinct_readings():
    seen: list[str] = []
    collected = [100.0]

    async def status(request: web.Request) -> web.Response:
        seen.append(request.query_string)
        collected[0] += 1  # a new round between any two requests
        snap = snapshot_mod.Snapshot(node="node-1", agent_version="0.0.9", collected_at=collected[0],
                                     interval_seconds=1.0, host=HostSnap(), gpu=GpuReport(),
                                     asr=AsrSnap(url="u", up=True), model=ModelSnap("ok", NEW))
        body = status_dict(snap)
        del body["round_started_at"]  # what an agent before ?after= answers (it ignores the query)
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/status", status)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        detail = await Stages(Engine(str(server.make_url("")), health_timeout=5)).health("node-1")
    finally:
        await server.close()
    assert detail == f"ASR up, model {NEW[:12]}"
    assert len(seen) == FRESH_ROUNDS and set(seen) == {"after=now"}
