"""Poll every agent's `GET /v1/status` concurrently: one aiohttp session, kept-alive connections.

Measured (DESIGN.md, tests/benchmarks/bench_sources_agents.py): aiohttp with one session is the cheapest
full HTTP client here for a thousand origins. A slow or black-holed agent costs one semaphore slot for at
most `timeout` seconds (shorter than the refresh interval), so it delays nobody else; its last good
status is kept with the error next to it, and `fleet.merge` marks it stale after 3 missed intervals.
Each agent's request counters are kept over a short window (asrtop.traffic) for its req/s, 5xx and latency.
A one-shot command (`status`, `check`: AgentPoller(one_shot=True)) asks http:// agents through
asrtop.sources.plainhttp instead and never imports aiohttp (its import builds SSL contexts); https:// agents
and the console's every-second rounds use aiohttp. describe_error words both clients' failures alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from asrtop.agentstatus import AgentStatus, StatusError, parse_status
from asrtop.config import NodeConfig
from asrtop.fleet import AgentReading
from asrtop.sources import plainhttp
from asrtop.sources.http import LoopSession
from asrtop.traffic import CounterSample, counter_sample, slide, traffic

if TYPE_CHECKING:
    import aiohttp

STATUS_PATH = "/v1/status"
# A one-shot command asks for the brief view: only what `status` and `check` read (agents/README.md), 40 % of
# the bytes, half the JSON to decode per agent. An agent from before `view=` ignores the query and answers
# in full, which parses the same (the brief body is a subset of the full one).
BRIEF_QUERY = "?view=brief"
_TIMED_OUT = "no answer within"
MODEL_PATH = "/v1/model"
HEADERS = {"Accept": "application/json", "User-Agent": "asrtop"}


def _base(url: str) -> str:
    return url.rstrip("/")


def describe_error(exc: BaseException, timeout: float) -> str:
    """One line an operator can act on, without a traceback: the same words for aiohttp's failures and
    asrtop.sources.plainhttp's."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"{_TIMED_OUT} {timeout:.2g}s"
    if isinstance(exc, plainhttp.PlainHTTPError):
        return _describe_plain(exc)
    aiohttp = sys.modules.get("aiohttp")  # an aiohttp failure means aiohttp is loaded: never imported to word one
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        return _describe_aiohttp(aiohttp, exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


def _cannot_connect(host: str, port: int | None, err: BaseException | None) -> str:
    if isinstance(err, socket.gaierror):  # DNS: errno is a negative EAI_* code, strerror says it
        return f"cannot resolve {host}: {(err.strerror or str(err)).lower()}"
    no = getattr(err, "errno", None)
    if no and no > 0:
        what = os.strerror(no)
    else:
        what = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return f"cannot connect to {host}:{port}: {what.lower()}"


def _connection_failed(errno: int | None, strerror: str | None, text: str) -> str:
    return f"connection failed: {os.strerror(errno).lower() if errno else (strerror or text)}"


def _describe_plain(exc: plainhttp.PlainHTTPError) -> str:
    if isinstance(exc, plainhttp.ConnectFailed):
        return _cannot_connect(exc.host, exc.port, exc.os_error)
    if isinstance(exc, plainhttp.Disconnected):
        return "closed the connection without answering"
    if isinstance(exc, plainhttp.ReadFailed):
        return _connection_failed(exc.errno, exc.strerror, str(exc))
    if isinstance(exc, plainhttp.Truncated):
        return f"truncated answer: {exc}"
    if isinstance(exc, plainhttp.BadURL):
        return f"bad agent URL: {exc}"
    return f"bad HTTP answer: {exc}"


def _describe_aiohttp(aiohttp: Any, exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _cannot_connect(exc.host, exc.port, exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection without answering"
    if isinstance(exc, aiohttp.ClientOSError):
        return _connection_failed(exc.errno, exc.strerror, str(exc))
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"truncated answer: {exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"bad agent URL: {exc}"
    text = " ".join(str(exc).split())  # aiohttp's parser errors span lines: one line here
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _lost_kept_alive(exc: BaseException) -> bool:
    """A kept-alive aiohttp connection the agent closed (it restarted): worth one fresh try. Never a failure
    to connect, never the plain client's (it opens a fresh connection per request)."""
    aiohttp = sys.modules.get("aiohttp")
    return (aiohttp is not None and isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError))
            and not isinstance(exc, aiohttp.ClientConnectorError))


def _plain(url: str) -> bool:
    return url[:7].lower() == "http://"


class AgentPoller:
    """NodeFactsSource over the agents' JSON status (asrtop.sources.live.NodeFactsSource).

    `timeout` is a round's budget, default 0.8 x refresh: every request (connect + answer) ends within it;
    `concurrency` bounds requests in flight (and so sockets and memory) whatever the fleet size.
    `one_shot` (a command that reads the fleet once: `status`, `check`): every agent is asked, each request
    with `timeout` from when it gets its slot (a shared round budget would leave most of 5,000 agents "not
    polled"), for the brief view (BRIEF_QUERY), and http:// agents through asrtop.sources.plainhttp (one request
    per connection, no aiohttp import); the console's rounds keep the shared budget, the full view (its node
    detail shows every reading) and aiohttp's kept-alive connections.
    """

    error: str | None = None  # NodeFactsSource.error: agents fail one by one (each reading says why), never all

    def __init__(self, timeout: float | None = None, concurrency: int = 256, refresh: float = 1.0,
                 limit_per_host: int = 2, one_shot: bool = False):
        if refresh <= 0:
            raise ValueError("refresh must be > 0")
        self.refresh = float(refresh)
        self.timeout = float(timeout) if timeout is not None else 0.8 * self.refresh
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.concurrency = max(1, int(concurrency))
        self.limit_per_host = max(1, int(limit_per_host))
        self.one_shot = one_shot
        self._http = LoopSession(self._new_session)
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None  # the loop _sem was made under
        self._readings: dict[str, AgentReading] = {}
        self._urls: dict[str, str] = {}  # agent base URL -> status URL (built once)
        self._slow: set[str] = set()  # nodes that timed out last round: polled last
        # node -> its agent's recent request counters (asrtop.traffic.slide): the rates span this window
        self._windows: dict[str, tuple[CounterSample, ...]] = {}

    # -- session ----------------------------------------------------------------------------------
    def _new_session(self) -> "aiohttp.ClientSession":
        """A session for the running loop; LoopSession calls it when the loop changes."""
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self.concurrency,  # never more sockets than requests in flight
            limit_per_host=self.limit_per_host,  # one agent needs one kept-alive connection
            ttl_dns_cache=300,
            use_dns_cache=True,
            # keep idle connections across several refresh intervals so rounds reuse them
            keepalive_timeout=max(15.0, 3 * self.refresh),
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers=HEADERS,
            auto_decompress=False,  # agents answer plain JSON; skip the decoder machinery
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> "AgentPoller":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- polling ----------------------------------------------------------------------------------
    @property
    def readings(self) -> Mapping[str, AgentReading]:
        """The readings of the last round (node name -> reading)."""
        return dict(self._readings)

    async def poll(self, nodes: Sequence[NodeConfig]) -> Mapping[str, AgentReading]:
        """One round: every node with an agent URL, concurrently. Never raises for a node's failure.

        The round ends `timeout` seconds after it starts at the latest: each request gets what is left of
        that budget when it gets a slot. Agents that timed out last round go last, so hung agents never
        hold slots the answering ones need (they still get whatever budget is left). One-shot: each request
        gets the whole `timeout` when it gets its slot, and every agent is asked."""
        targets = [n for n in nodes if n.agent]
        slow = self._slow
        if slow:
            targets.sort(key=lambda n: n.name in slow)  # stable: config order otherwise
        deadline = asyncio.get_running_loop().time() + self.timeout
        sem = self._semaphore()
        batch: list[NodeConfig] = []
        one_by_one = targets
        if self.one_shot:  # http:// agents all at once in one thread (plainbatch), the others as the console does
            one_by_one = []
            for n in targets:
                (batch if _plain(self._status_url(n.agent or "")) else one_by_one).append(n)
        results = await asyncio.gather(self._poll_batch(batch),
                                       *(self._poll_one(sem, n, deadline) for n in one_by_one))
        fresh = dict(zip((n.name for n in one_by_one), results[1:]))
        fresh.update(results[0])
        fresh = {n.name: fresh[n.name] for n in targets}  # in the nodes' order
        self._readings = fresh  # nodes no longer configured drop out with the round
        self._windows = {name: w for name, w in self._windows.items() if name in fresh}
        self._slow = {name for name, r in fresh.items() if r.error is not None and r.error.startswith(_TIMED_OUT)}
        return dict(fresh)

    def _semaphore(self) -> asyncio.Semaphore:
        """The bound on requests in flight, for the running loop (a semaphore belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:
            self._sem, self._sem_loop = asyncio.Semaphore(self.concurrency), loop
        return self._sem

    def _status_url(self, agent: str) -> str:
        url = self._urls.get(agent)
        if url is None:
            url = self._urls[agent] = _base(agent) + STATUS_PATH + (BRIEF_QUERY if self.one_shot else "")
        return url

    async def _poll_one(self, sem: asyncio.Semaphore, node: NodeConfig, deadline: float) -> AgentReading:
        agent = node.agent or ""
        prev = self._readings.get(node.name)
        if prev is not None and prev.url != agent:
            prev = None  # the node moved to another agent: its old status is not this one's
            self._windows.pop(node.name, None)  # nor its counters
        loop = asyncio.get_running_loop()
        async with sem:
            if self.one_shot:  # its own budget from now: a one-shot command asks every agent
                deadline = loop.time() + self.timeout
            if deadline - loop.time() < 0.001:
                return self._failed(agent, prev, f"not polled: the round's {self.timeout:.2g}s went to slower "
                                    f"agents ({self.concurrency} requests in flight at most)", 0.0)
            t0 = time.perf_counter()
            try:
                try:
                    body, code = await self._get(agent, deadline - loop.time())
                except Exception as e:
                    if not _lost_kept_alive(e) or deadline - loop.time() < 0.001:
                        raise
                    # a kept-alive connection the agent closed (it restarted): one fresh try
                    body, code = await self._get(agent, deadline - loop.time())
                latency = time.perf_counter() - t0
                status = _read_status(body, code)
            except (_BadAnswer, StatusError) as e:
                return self._failed(agent, prev, str(e), time.perf_counter() - t0)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # every transport failure is this node's error, never the round's
                return self._failed(agent, prev, describe_error(e, self.timeout), time.perf_counter() - t0)
        window = self._windows[node.name] = slide(self._windows.get(node.name, ()), counter_sample(status))
        return AgentReading(agent, status, time.time(), None, latency, traffic(window))

    async def _poll_batch(self, nodes: Sequence[NodeConfig]) -> dict[str, AgentReading]:
        """A one-shot round's http:// agents, all through asrtop.sources.plainbatch (one thread, one epoll): each
        request with the whole timeout from its start; the answers read and validated in that thread."""
        if not nodes:
            return {}
        from asrtop.sources.plainbatch import get_all

        outcomes = await get_all([self._status_url(n.agent or "") for n in nodes], self.timeout, HEADERS,
                                 self.concurrency, _read_status)
        got = {}
        for node, (result, latency, at) in zip(nodes, outcomes):
            agent = node.agent or ""
            prev = self._readings.get(node.name)
            if prev is not None and prev.url != agent:
                prev = None
                self._windows.pop(node.name, None)
            if isinstance(result, AgentStatus):
                window = self._windows[node.name] = slide(self._windows.get(node.name, ()), counter_sample(result))
                got[node.name] = AgentReading(agent, result, at, None, latency, traffic(window))
            elif isinstance(result, (_BadAnswer, StatusError)):
                got[node.name] = self._failed(agent, prev, str(result), latency)
            else:
                got[node.name] = self._failed(agent, prev, describe_error(result, self.timeout), latency)
        return got

    async def _get(self, agent: str, budget: float) -> tuple[bytes, int]:
        url = self._status_url(agent)
        if self.one_shot and _plain(url):
            return await plainhttp.get(url, budget, HEADERS)
        import aiohttp  # a dict lookup once the first session loaded it

        async with self._http.get().get(url, timeout=aiohttp.ClientTimeout(total=budget)) as resp:
            return await resp.read(), resp.status

    @staticmethod
    def _failed(agent: str, prev: AgentReading | None, error: str, latency: float) -> AgentReading:
        if prev is None:
            return AgentReading(agent, None, None, error, None)
        # keep the last good status and when it was fetched; merge() decides when that is stale
        return AgentReading(agent, prev.status, prev.fetched_at, error, prev.latency_seconds, prev.traffic)

    # -- model files (TUI model view) -----------------------------------------------------------
    async def fetch_model_files(self, agent_url: str) -> list[dict] | str:
        """GET /v1/model: the agent's per-file list (dicts as the agent serves them), or a one-line error."""
        return await fetch_model_files(self._http.get(), agent_url, max(self.timeout, 5.0))

    async def fetch_status(self, agent_url: str, timeout: float) -> AgentStatus | str:
        """One agent's status asked now with its own budget, apart from the rounds (the model guard re-asks a
        node whose agent missed the round), or a one-line error."""
        return await fetch_status(self._http.get(), agent_url, timeout)


async def fetch_model_files(session: "aiohttp.ClientSession", agent_url: str, timeout: float) -> list[dict] | str:
    """GET /v1/model on one agent (the TUI's model view; also used by the Prometheus source)."""
    import aiohttp

    url = _base(agent_url) + MODEL_PATH
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.read()
            if resp.status != 200:
                return f"{agent_url}: HTTP {resp.status} from {MODEL_PATH}"
        data = json.loads(body)
    except ValueError as e:
        return f"{agent_url}: bad JSON from {MODEL_PATH}: {e}"
    except asyncio.CancelledError:
        raise
    except Exception as e:
        return f"{agent_url}: {describe_error(e, timeout)}"
    files = _model_files(data)
    if files is None:
        return f"{agent_url}: {MODEL_PATH} has no file list"
    return files


async def fetch_status(session: "aiohttp.ClientSession", agent_url: str, timeout: float) -> AgentStatus | str:
    """GET /v1/status on one agent within `timeout`: its status, or a one-line error."""
    return await get_status(session, _base(agent_url) + STATUS_PATH, timeout)


async def get_status(session: "aiohttp.ClientSession", url: str, timeout: float) -> AgentStatus | str:
    """One GET of an agent's status URL within `timeout`: its status, or a one-line error (on an error answer,
    the agent's own `{"error": "..."}` line)."""
    import aiohttp

    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body, code = await resp.read(), resp.status
    except asyncio.CancelledError:
        raise
    except Exception as e:
        return describe_error(e, timeout)
    try:
        data = json.loads(body)
    except ValueError as e:
        return f"HTTP {code} from {STATUS_PATH}" if code != 200 else f"bad JSON from {STATUS_PATH}: {e}"
    if code != 200:  # the agent says why in one line: {"error": "..."}
        why = data.get("error") if isinstance(data, dict) else None
        return f"HTTP {code} from {STATUS_PATH}" + (f": {why}" if isinstance(why, str) else "")
    try:
        return parse_status(data)
    except StatusError as e:
        return str(e)


class FreshStatus:
    """One agent asked, again and again over one kept-alive connection, for a status collected afresh:
    `GET /v1/status?after=now`, a snapshot whose collection round began after the agent got the request.
    An older agent ignores the query: its answer has no `round_started_at` (AgentStatus.round_started_at None).

        async with FreshStatus(agent_url) as agent:
            got = await agent.get(timeout)      # AgentStatus, or a one-line error
    """

    QUERY = "?after=now"

    def __init__(self, agent_url: str):
        self.url = _base(agent_url) + STATUS_PATH + self.QUERY
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "FreshStatus":
        import aiohttp

        self._session = aiohttp.ClientSession(headers=HEADERS)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, timeout: float) -> AgentStatus | str:
        assert self._session is not None, "use FreshStatus as `async with`"
        return await get_status(self._session, self.url, timeout)


class _BadAnswer(Exception):
    """The agent answered, but not with a usable status."""


def _read_status(body: bytes, code: int) -> AgentStatus:
    """An agent's answer as a status (plainbatch's `then`, in its thread); _BadAnswer or StatusError if not one."""
    if code != 200:
        raise _BadAnswer(f"HTTP {code} from {STATUS_PATH}")
    try:
        data = json.loads(body)  # bytes straight in: no separate decode pass
    except ValueError as e:
        raise _BadAnswer(f"bad JSON from {STATUS_PATH}: {e}") from None
    return parse_status(data)


def _model_files(data: Any) -> list[dict] | None:
    """Accept `[...]`, `{"files": [...]}` or `{"dirs": [{"path", "files": [...]}, ...]}` (dir added)."""
    if isinstance(data, list):
        return [f for f in data if isinstance(f, dict)]
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("files"), list):
        return [f for f in data["files"] if isinstance(f, dict)]
    if isinstance(data.get("dirs"), list):
        out: list[dict] = []
        for d in data["dirs"]:
            if isinstance(d, dict) and isinstance(d.get("files"), list):
                out.extend({"dir": d.get("path"), **f} for f in d["files"] if isinstance(f, dict))
        return out
    return None
