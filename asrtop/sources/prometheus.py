"""Node facts from Prometheus (for fleets too big to poll, or where Prometheus scrapes the agents anyway).

A handful of requests per refresh, whatever the fleet size (never one per node), run concurrently over one
aiohttp session (asrtop.sources.prometheus_queries says which and why: what changes with every scrape each
round, from /federate (range queries of about one scrape where the server has none); what changes rarely as
PromQL exceptions, with each node's
slow gauges a tenth of the fleet per round and with its static facts a sixtieth, kept between). Series are
grouped by their `instance` label and joined to nodes:
a node's agent URL host:port is the `instance` (Prometheus' default), else `asr_node_info{node}` names it.
Each node's metrics become an `AgentStatus` (the same dataclasses the agent's /v1/status parses into),
so the TUI and CLI cannot tell the sources apart except by what metrics cannot carry (URLs, pids, p50).

The queries' I/O runs on the caller's event loop; decoding the answers and building the readings runs on the
source's own worker thread, one step at a time in the order they come. The console polls on its UI loop, and
at 1,000 nodes a round's decoding and building is 50-120 ms of CPU in a few long steps (a 4,000-series answer
is one), each of which would hold every key and frame for as long.

Staleness, as in the agent source: `up == 0`, a node missing from Prometheus, or a last sample older than
3 refresh intervals give an `AgentReading` with an error and the fetched_at of the last good sample; the
last good status is kept, and `fleet.merge` marks the node stale. Set `cluster.refresh` no shorter than
the Prometheus scrape interval, or every node looks stale between scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence, TypeVar

import aiohttp

from asrtop.agentstatus import AgentStatus, ModelReading
from asrtop.config import NodeConfig
from asrtop.fleet import STALE_AFTER_MISSED, AgentReading
from asrtop.sources.agents import describe_error, fetch_model_files, fetch_status
from asrtop.sources.http import LoopSession
from asrtop.sources.prometheus_build import (  # the pure half
    REQUESTS_SUM,
    SCRAPED_AT,
    UNKNOWN,
    DetailPart,
    Reused,
    Series,
    build_status_reusing,
    counters_of,
    detail_part,
    group_by_instance,
    model_reading,
    one_value,
)
from asrtop.sources.prometheus_kept import Kept, KeptFacts
from asrtop.sources.prometheus_queries import (
    DETAIL_SLICES,
    FAST_PARTS,
    FAST_SELECTORS,
    QUERIES,
    STATIC_SLICES,
    LabelsCache,
    NO_FEDERATION,
    SEED_QUERY,
    PrometheusError,
    answer_result,
    detail_query,
    fast_queries,
    fold_requests,
    group_federated,
    group_latest,
    down_query,
    lagging_query,
    lagging_times_query,
    instance_of_url,
    instances_selector,
    static_query,
)
from asrtop.traffic import CounterSample, slide, traffic

ASK_ALL_OVER = 100  # more instances than this whose details must come at once: ask for everybody's
T = TypeVar("T")
_NO_LABELS: dict[str, str] = {}
_NO_SERIES: dict[str, Series] = {}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC during a round (its queries' wait included: a round lasts a fraction of a second, the
    collections are only put off): the ~10^5 short-lived objects it decodes otherwise trigger young
    collections of live answers and, every few rounds, full collections of the heap (measured: a fifth to a
    third of the round's CPU). The round frees them before it ends (refcounting), so one young collection of
    the readings it keeps follows, after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _state_series(state: str | None) -> Series:
    """The model state kept for an instance, as its one asr_model_state series at 1 (none: no state)."""
    return [({"state": state}, 1.0)] if state is not None and state is not UNKNOWN else []


def _run_once(step: list[tuple[Callable[..., T], tuple]]) -> T:
    """The one call in `step`, taken out of it first: the executor's work item holds `step` until its thread gets
    round to dropping it, at times after the loop has gone on, and it must not hold the round's answers then
    (they would outlive the round, to be walked by the collections after it)."""
    fn, args = step.pop()
    return fn(*args)


def _add_lagging(failed: list[dict], found: list[dict], times: list[dict], by_instance: dict[str, dict[str, Series]],
                 stamps: dict[str, float | None]) -> set[str]:
    """The lagging instances' series and scrape times added to the round's; the instances Prometheus cannot
    scrape (down_query's answer: `failed`) dropped from it and returned."""
    group_by_instance(found, into=by_instance)
    for r in times:
        with contextlib.suppress(LookupError, TypeError, ValueError):
            stamps[r["metric"]["instance"]] = float(r["value"][1])
    down = set(group_by_instance(failed))
    for inst in down:  # its last samples, if the instant query still found some, are not this round's
        by_instance.pop(inst, None)
        stamps.pop(inst, None)
    return down


class RoundCost(NamedTuple):
    """Where a round's time went (wall seconds; benchmarks print it)."""

    series: int  # series Prometheus returned
    queries: float  # until the last answer was parsed (each is decoded and grouped as it comes)
    decode: float  # of which decoding the answers (the per-round ones grouped by instance as they are read)
    group: float  # and grouping the other answers' series by instance
    join: float  # after the answers: nodes matched to instances, the kept slow facts added
    build: float  # each node's status and reading built


class BuiltStatus:
    """An instance's status as built last round, reused while neither its scrape nor its details change.
    Updated in place each round: a new record per node per round would be one more object for the young
    collection after the round to walk."""

    __slots__ = ("stamp", "details", "status", "model", "state", "part", "reused")

    def __init__(self, stamp: float | None, details: Kept | None, status: AgentStatus,
                 model: ModelReading, state: str | None, part: DetailPart, reused: Reused):
        self.stamp = stamp  # Prometheus' scrape time it was built at
        self.details = details  # the kept detail series it was built from (compared by identity)
        self.status = status
        self.model = model  # status.model; reused while the details and the model state stay
        self.state = state  # the model state from the per-round series when it was built
        self.part = part  # detail_part(details), reused while the details stay
        self.reused = reused  # its sub-readings and their inputs: reused while these stay


class PrometheusSource:
    """NodeFactsSource (asrtop.sources.live) reading the agents' metrics from a Prometheus server."""

    def __init__(self, url: str, refresh: float = 1.0, timeout: float | None = None,
                 detail_slices: int = DETAIL_SLICES, static_slices: int | None = None, one_shot: bool = False):
        """`one_shot`: a command that reads the fleet once or twice (`status`, `check`): the details are kept as
        they came, not packed (asrtop.sources.prometheus_kept)."""
        self.url = url.rstrip("/")
        self.refresh = float(refresh)
        self.timeout = float(timeout) if timeout is not None else max(0.8 * self.refresh, 0.5)
        self._http = LoopSession(self._new_session)
        self._readings: dict[str, AgentReading] = {}
        self._instance: dict[str, str] = {}  # node name -> instance, remembered while its series vanish
        self.last_query_seconds: float | None = None  # queries (answers parsed) in the last round
        self.last_build_seconds: float | None = None  # joining and building the readings after them
        self._round = 0
        self._kept = KeptFacts(detail_slices, static_slices or detail_slices * (STATIC_SLICES // DETAIL_SLICES),
                               packed=not one_shot)
        self.last_cost: RoundCost | None = None  # where the last round's time went
        self._decoding = 0.0  # seconds spent decoding answers in this round so far
        self._building = 0.0  # and building readings
        self._built: dict[str, BuiltStatus] = {}  # instance -> its last status: reused until scrape or details change
        self.error: str | None = None  # NodeFactsSource.error: why the last poll's queries failed
        self._windows: dict[str, tuple[CounterSample, ...]] = {}  # instance -> its request counters per scrape
        self.window = 1.25 * self.refresh  # the range of the per-round series: the last scrape and some
        self._labels: LabelsCache = {}  # the fast answer's series labels, decoded once
        self._grouping = 0.0  # seconds spent grouping the other answers' series in this round so far
        # The per-round series come from /federate (see prometheus_queries) once it answered; False: the server
        # has none (Thanos Query, Mimir: 404), they come as range queries; None: not asked yet.
        self.federates: bool | None = None
        # one thread, so the steps that fill a round's dictionaries never run at once (their answers come
        # concurrently); made at the first step, ended by close() (a poll after it makes another)
        self._worker: ThreadPoolExecutor | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        """A session for the running loop; LoopSession calls it when the loop changes."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=len(QUERIES) * 2, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Accept": "application/json", "User-Agent": "asrtop"},
            auto_decompress=False,  # loopback/LAN: gzip of megabytes costs Prometheus more than it saves
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        await self._http.close()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=False)

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on the source's worker thread (see the module's docstring), awaited."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="asrtop-prometheus")
        return await asyncio.get_running_loop().run_in_executor(self._worker, _run_once, [(fn, args)])

    async def fetch_model_files(self, agent_url: str) -> list[dict] | str:
        """The file list comes from the agent itself (metrics carry only the digest), when reachable."""
        if not agent_url.startswith(("http://", "https://")):
            return f"{agent_url}: no agent URL configured for this node (Prometheus carries only the digest)"
        return await fetch_model_files(self._http.get(), agent_url, 5.0)

    async def fetch_status(self, agent_url: str, timeout: float) -> AgentStatus | str:
        """The node's agent asked directly (the model guard's second look at a node Prometheus has no digest for)."""
        if not agent_url.startswith(("http://", "https://")):
            return f"{agent_url}: no agent URL configured for this node"
        return await fetch_status(self._http.get(), agent_url, timeout)

    async def query(self, promql: str, at: float | None = None) -> list[dict]:
        """One instant query (evaluated at `at`, Prometheus' clock, when given); the vector's result list.
        Raises PrometheusError with one line."""
        return await self._answer(promql, at, self._decode)

    async def _answer(self, promql: str, at: float | None, decode: Callable[..., T], *args: Any) -> T:
        """Prometheus' answer to `promql` (evaluated at `at`), read on the loop, then
        `decode(promql, status, body, *args)` on the worker."""
        status, body = await self._post(promql, at)
        return await self._off_loop(decode, promql, status, body, *args)

    def _decode(self, promql: str, status: int, body: bytes) -> list[dict]:
        t0 = time.perf_counter()
        try:
            with _gc_paused():
                return answer_result(self.url, status, body, "vector", f"query {promql!r}")
        finally:
            self._decoding += time.perf_counter() - t0

    def _decode_grouped(self, promql: str, status: int, body: bytes, into: dict[str, dict[str, Series]]) -> int:
        """An instant query's series grouped by instance into `into` (group_by_instance); the count of series."""
        result = self._decode(promql, status, body)
        t0 = time.perf_counter()
        group_by_instance(result, into=into)
        self._grouping += time.perf_counter() - t0
        return len(result)

    async def _fast_part(self, name: str, at: float, into: dict[str, dict[str, Series]],
                         stamps: dict[str, float | None], late: dict[str, dict[str, Series]],
                         late_stamps: dict[str, float], federated: set[str]) -> int:
        """One of the per-round parts (FAST_PARTS) grouped into the round's: from /federate, each series' last sample
        with its scrape time (those scraped before the round's range into `late`), else as a range query at `at`.
        Measured at 1,000 nodes on a 2-core box against the same rounds without /federate, Prometheus' own work per
        round 0.66-0.77x the CPU and 0.64x the allocations (which set how often it collects), round wall median
        0.85-0.89x (tests/benchmarks/bench_sources_prometheus.py, its --ranges baseline)."""
        if self.federates is not False:
            selector = FAST_SELECTORS[name]
            status, body = await self._federate(selector)
            if status not in NO_FEDERATION or self.federates:  # once it answered, a 404 is an error
                count = await self._off_loop(self._decode_federated, selector, status, body, at - self.window,
                                             into, stamps, late, late_stamps)
                self.federates = True
                federated.add(name)
                return count
            self.federates = False  # no /federate on this server (Thanos Query, Mimir): range queries from now on
        return await self._answer(fast_queries(self.window)[name], at, self._decode_latest, into, stamps)

    def _decode_federated(self, selector: str, status: int, body: bytes, since: float,
                          into: dict[str, dict[str, Series]], stamps: dict[str, float | None],
                          late: dict[str, dict[str, Series]], late_stamps: dict[str, float]) -> int:
        t0 = time.perf_counter()
        try:
            return group_federated(self.url, status, body, f"/federate of {selector!r}", since, into, stamps,
                                   late, late_stamps, self._labels)
        finally:
            self._decoding += time.perf_counter() - t0

    def _decode_latest(self, promql: str, status: int, body: bytes, into: dict[str, dict[str, Series]],
                       stamps: dict[str, float | None]) -> int:
        """A range query's last samples grouped into `into` and `stamps` (group_latest); the count of series."""
        t0 = time.perf_counter()
        try:
            return group_latest(self.url, status, body, f"query {promql!r}", into, stamps, self._labels)
        finally:
            self._decoding += time.perf_counter() - t0

    async def _post(self, promql: str, at: float | None) -> tuple[int, bytes]:
        data = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        return await self._request("POST", "/api/v1/query", data=data)

    async def _federate(self, selector: str) -> tuple[int, bytes]:
        """The last sample of each series `selector` matches, with its time, as Prometheus' /federate writes them
        (its text exposition: not the protocol buffers or OpenMetrics it offers to scrapers that ask)."""
        return await self._request("GET", "/federate", params={"match[]": selector},
                                   headers={"Accept": "text/plain;version=0.0.4"})

    async def _request(self, method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        session = self._http.get()
        for attempt in (1, 2):
            try:
                async with session.request(method, f"{self.url}{path}", **kw) as resp:
                    body = await resp.read()
                    status = resp.status
                break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as e:
                if attempt == 1:
                    continue  # a kept-alive connection Prometheus closed: one fresh try says what is wrong
                raise PrometheusError(f"Prometheus at {self.url}: {describe_error(e, self.timeout)}") from None
            except Exception as e:
                raise PrometheusError(f"Prometheus at {self.url}: {describe_error(e, self.timeout)}") from None
        return status, body

    @property
    def detail_slices(self) -> int:
        """Rounds over which every node's slow gauges come once (1: every round)."""
        return self._kept.detail_slices

    @property
    def static_slices(self) -> int:
        """Rounds over which every node's static facts come once (by default as many times more rounds than
        detail_slices as STATIC_SLICES is of DETAIL_SLICES)."""
        return self._kept.static_slices

    def round_queries(self) -> dict[str, str]:
        """The queries of the next round by name (see asrtop.sources.prometheus_queries): the per-round parts
        (FAST_PARTS) as /federate selectors unless the server has none (`federates` False), as range queries then."""
        fast = fast_queries(self.window) if self.federates is False else FAST_SELECTORS
        return {**fast, **self._kept.queries(self._round, self.window)}

    async def poll(self, nodes: Sequence[NodeConfig]) -> Mapping[str, AgentReading]:
        with _gc_paused():
            return await self._poll(nodes)  # its answers are freed when it returns, before collections resume

    async def _poll(self, nodes: Sequence[NodeConfig]) -> dict[str, AgentReading]:
        t0 = time.perf_counter()
        queries = self.round_queries()
        # Every query of the round is evaluated at one instant, now: the per-round parts are three queries, and a
        # scrape landing between their evaluations would give a node's request count from one scrape and its
        # latency sum from the one before (a response time 10 % off at one scrape of ten in the window). With
        # Prometheus' clock behind this host's, a node whose last scrape is then not yet in the range is asked
        # again at an instant (lagging_query), as one whose scrape is late.
        at = time.time()
        by_instance: dict[str, dict[str, Series]] = {}  # the per-round series (FAST_PARTS)
        rare: dict[str, dict[str, Series]] = {}
        gauges: dict[str, dict[str, Series]] = {}  # slow gauges that came this round
        static: dict[str, dict[str, Series]] = {}  # static facts that came this round
        stamps: dict[str, float | None] = {}
        late: dict[str, dict[str, Series]] = {}  # /federate's series scraped before the round's range
        late_stamps: dict[str, float] = {}
        federated: set[str] = set()  # the fast parts that came from /federate
        series = 0
        self._decoding = self._grouping = 0.0

        async def ask(name: str, promql: str) -> None:
            # grouped as it arrives, and the decoded answer dropped at once (asyncio would keep a gathered
            # result alive past the round, and a young collection would walk it)
            nonlocal series
            if name in FAST_PARTS:
                count = await self._fast_part(name, at, by_instance, stamps, late, late_stamps, federated)
            else:
                into = {"rare": rare, "detail": gauges, "static": static}[name]
                count = await self._answer(promql, at, self._decode_grouped, into)
            series += count  # (not `series += await ...`: that reads `series` before the wait)

        try:
            await asyncio.gather(*(ask(name, q) for name, q in queries.items()))
            unseen = {inst for inst in map(self._expected_instance, nodes) if inst is not None and inst not in stamps}
            down: set[str] = set()
            if unseen:  # a scrape late or failed (or a refresh shorter than the scrape interval): at an instant
                for inst in unseen & late.keys():  # /federate gave their last samples, scraped before the range
                    by_instance[inst], stamps[inst] = late[inst], late_stamps[inst]
                # at an instant, those Prometheus has at all; none when /federate gave every series' last sample
                lagging = set() if len(federated) == len(FAST_PARTS) else {
                    inst for inst in unseen if inst not in late and (inst in self._kept.info or inst in static)}
                asks = [self.query(down_query(instances_selector(unseen)), at)]
                if lagging:
                    selector = instances_selector(lagging)
                    asks += [self.query(lagging_query(selector), at), self.query(lagging_times_query(selector), at)]
                failed, *lagged = await asyncio.gather(*asks)
                found, times = lagged or ([], [])
                series += len(failed) + len(found) + len(times)
                down = await self._off_loop(_add_lagging, failed, found, times, by_instance, stamps)
                del failed, lagged, found, times
            states, missing = await self._off_loop(self._settle, by_instance, stamps, rare, static)
            if missing:
                selector = ".+" if len(missing) > ASK_ALL_OVER else instances_selector(missing)
                counts = await asyncio.gather(self._answer(detail_query(selector), at, self._decode_grouped, gauges),
                                              self._answer(static_query(selector), at, self._decode_grouped, static))
                series += sum(counts)
                for inst in missing:
                    gauges.setdefault(inst, {})  # an agent without detail series is not asked again
                    static.setdefault(inst, {})
            await self._off_loop(self._kept.take, gauges, static, states, rare)
            await self._seed_windows(by_instance, at)
        except PrometheusError as e:
            self.error = str(e)
            return self._all_failed(nodes, str(e))
        self.error = None
        self._round += 1
        if len(self._labels) > 2 * series + 10_000:
            self._labels.clear()  # series gone since (instances, pids, digests): decoded again when they come
        self.last_query_seconds = time.perf_counter() - t0
        self._building = 0.0
        fresh = await self._off_loop(self._finish, nodes, stamps, by_instance, down,
                                     (rare, gauges, static, late, late_stamps))
        self.last_build_seconds = time.perf_counter() - t0 - self.last_query_seconds
        self.last_cost = RoundCost(series, self.last_query_seconds, self._decoding, self._grouping,
                                   self.last_build_seconds - self._building, self._building)
        return dict(fresh)

    def _finish(self, nodes: Sequence[NodeConfig], stamps: dict[str, float | None],
                by_instance: dict[str, dict[str, Series]], down: set[str], others: tuple[dict, ...]
                ) -> dict[str, AgentReading]:
        """The round's readings (_join), kept as the last ones. The round's answers and the last readings are let
        go of here, on the worker: freeing them is ~10,000 objects at 1,000 nodes, which on the loop (the round's
        locals dropped as it returns) held it for as long."""
        fresh = self._join(nodes, stamps, by_instance, down)
        last, self._readings = self._readings, fresh
        for gone in (last, by_instance, stamps, self._kept.fresh, *others):
            gone.clear()
        return fresh

    def _settle(self, by_instance: dict[str, dict[str, Series]], stamps: Mapping[str, float | None],
                rare: Mapping[str, Mapping[str, Series]], static: Mapping[str, Mapping[str, Series]]
                ) -> tuple[dict[str, str | None], set[str]]:
        """The round's answers in: the request counters folded, each instance's model state, and the instances
        whose details must come at once."""
        fold_requests(by_instance)
        states = self._kept.round_states(stamps, rare, static)
        return states, self._kept.missing(states, static, rare)

    def _expected_instance(self, cfg: NodeConfig) -> str | None:
        """The instance a node's series come from, as far as known before this round's answers (the one it was
        joined to last: its `node` label may name another than its URL's)."""
        return self._instance.get(cfg.name) or instance_of_url(cfg.agent)

    async def _seed_windows(self, by_instance: Mapping[str, Mapping[str, Series]], at: float | None) -> None:
        """The first sample of the windows of instances that count requests and have none yet (see SEED_QUERY)."""
        new = [inst for inst, metrics in by_instance.items() if REQUESTS_SUM in metrics and inst not in self._windows]
        if not new:
            return
        await self._off_loop(self._seed, new, await self.query(SEED_QUERY, at))

    def _seed(self, new: list[str], result: list[dict]) -> None:
        seeded = group_by_instance(result)
        for inst in new:
            metrics = seeded.get(inst, {})
            self._windows[inst] = slide((), counters_of(metrics, one_value(metrics.get(SCRAPED_AT))))

    def _join(self, nodes: Sequence[NodeConfig], stamps: Mapping[str, float | None],
              by_instance: dict[str, dict[str, Series]], down: set[str]) -> dict[str, AgentReading]:
        """Each configured node's reading: its agent URL's host:port is its instance, else the instance whose
        asr_node_info names it (dictionaries, built once per round: O(nodes + instances))."""
        for inst in stamps:  # scraped this round: its identity and probe, kept from its details and exceptions
            info = self._kept.info.get(inst)
            if info is None:
                continue
            metrics = by_instance.get(inst)
            if metrics is None:
                metrics = by_instance[inst] = {}
            metrics["asr_node_info"] = [(info, 1.0)]
            up = self._kept.up.get(inst)
            if up is not None:
                metrics["asr_service_up"] = [(_NO_LABELS, up)]
        by_node_label: dict[str, str] | None = None
        now = time.time()
        fresh: dict[str, AgentReading] = {}
        for cfg in nodes:
            inst = instance_of_url(cfg.agent)
            if inst not in by_instance:
                if by_node_label is None:
                    by_node_label = self._instances_by_node_label(stamps)
                inst = by_node_label.get(cfg.name) or self._instance.get(cfg.name) or inst
            if inst is None:
                continue  # no agent URL and no series naming it: nothing to say about this node
            self._instance[cfg.name] = inst
            metrics = by_instance.get(inst)  # the per-round series; _reading adds the details
            t = time.perf_counter()
            fresh[cfg.name] = self._reading(cfg, inst, metrics, stamps.get(inst), inst in down, now,
                                            self.last_query_seconds)
            self._building += time.perf_counter() - t
        if len(self._windows) > len(fresh):  # instances of nodes no longer configured
            kept = set(self._instance.values())
            self._windows = {inst: w for inst, w in self._windows.items() if inst in kept}
        return fresh

    def _instances_by_node_label(self, stamps: Mapping[str, float | None]) -> dict[str, str]:
        """asr_node_info's `node` label -> the instance, of the instances scraped this round (the first one)."""
        out: dict[str, str] = {}
        for inst in stamps:
            node = self._kept.info.get(inst, _NO_LABELS).get("node")
            if node:
                out.setdefault(node, inst)
        return out

    def _reading(self, cfg: NodeConfig, inst: str, metrics: dict[str, Series] | None, stamp: float | None,
                 down: bool, now: float, latency: float) -> AgentReading:
        url = cfg.agent or f"prometheus:{inst}"
        prev = self._readings.get(cfg.name)
        if down:
            return self._failed(url, prev, f"Prometheus cannot scrape {inst} (up == 0)")
        if not metrics or "asr_node_info" not in metrics:
            return self._failed(url, prev, f"Prometheus has no asr_* series for {inst} (node {cfg.name})")
        built = self._built.get(inst)
        details = self._kept.details.get(inst)
        if built is not None and stamp is not None and built.stamp == stamp and built.details is details:
            status = built.status  # no scrape since the last round (refresh < scrape interval): nothing new
        else:
            # the model reading only changes with the details (digest, files) or the state: reuse it
            state = self._kept.states.get(inst)
            same = built is not None and built.details is details
            model = built.model if same and built.state == state else None
            # read only when its details (a slice of the nodes a round: as they came) or its model state changed
            series = self._kept.series_of(inst) if model is None else _NO_SERIES
            part = built.part if same else detail_part(series)
            if model is None:
                model = model_reading({**series, "asr_model_state": _state_series(state)})
            status, reused = build_status_reusing(cfg.name, metrics, stamp, model, part,
                                                  built.reused if built is not None else None)
            if built is None:
                self._built[inst] = BuiltStatus(stamp, details, status, status.model, state, part, reused)
            else:
                built.stamp, built.details, built.status, built.model = stamp, details, status, status.model
                built.state, built.part, built.reused = state, part, reused
        # the counters as of this scrape, over the instance's window (a round without a new scrape adds nothing)
        window = self._windows[inst] = slide(self._windows.get(inst, ()), counters_of(metrics, stamp))
        rates = traffic(window)
        if stamp is not None and now - stamp > STALE_AFTER_MISSED * self.refresh:
            return AgentReading(url, status, stamp, f"Prometheus' last sample of {inst} is {now - stamp:.0f}s old",
                                latency, rates)
        return AgentReading(url, status, stamp if stamp is not None else now, None, latency, rates)

    @staticmethod
    def _failed(url: str, prev: AgentReading | None, error: str) -> AgentReading:
        if prev is None:
            return AgentReading(url, None, None, error, None)
        return AgentReading(url, prev.status, prev.fetched_at, error, prev.latency_seconds, prev.traffic)

    def _all_failed(self, nodes: Sequence[NodeConfig], error: str) -> dict[str, AgentReading]:
        out = {}
        for cfg in nodes:
            prev = self._readings.get(cfg.name)
            if cfg.agent is None and prev is None:
                continue
            out[cfg.name] = self._failed(prev.url if prev else cfg.agent or "", prev, error)
        self._readings = out
        return dict(out)
