"""PURE fleet model: what asrtop knows about each node, merged from agents and balancers.

Frozen dataclasses only (they cross task/thread boundaries); no I/O, no textual. One memo lives between calls:
merge's lookup keys of each balancer's servers (_KEPT), used only while the servers' names and endpoints are the
ones they were made of, so it changes no result.
"""

from __future__ import annotations

import functools
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from asrtop.agentstatus import AgentStatus, StreamsReading
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig, endpoint_key, server_endpoint_keys

MIXED = "MIXED"  # balancers disagree about a node's admin state
_DIFFER = object()  # balancers give a node different weights or backup flags
_WORD = {m: m.value for m in (*AdminState, *Health)}  # a dict lookup: Enum.value is a descriptor call
STALE_AFTER_MISSED = 3  # an agent is stale after this many refresh intervals without a good answer


REQUESTS_FROM_BALANCER = "balancer"  # the balancer counts this node's requests (HAProxy show stat)
REQUESTS_FROM_AGENT = "agent"  # the balancer counts nothing (nginx OSS): the node's agent does
# Marks a request figure the agent counted (as "~" marks a simulated GPU): console cells and `status` text.
AGENT_COUNTED_MARK = "*"


@dataclass(frozen=True)
class AgentTraffic:
    """Request figures derived from an agent's cumulative counters over the poller's recent window: what the
    fleet shows for a node whose balancer counts nothing (nginx OSS has no per-server counters)."""

    request_rate: float | None = None  # requests finished per second over the window
    errors_5xx_rate: float | None = None  # 5xx answers per second over the window
    response_seconds: float | None = None  # mean latency of the requests finished in the window; None: none did
    audio_rate: float | None = None  # audio seconds transcribed per wall second (ASR throughput)
    window_seconds: float | None = None  # the span the rates cover


@dataclass(unsafe_hash=True)
class AgentReading:
    """Result of polling one agent. `status` is the last good status, kept when later polls fail. Read-only by
    convention, not frozen: one per node per refresh (see asrtop.agentstatus)."""

    url: str
    status: AgentStatus | None
    fetched_at: float | None  # wall time (time.time()) of the last good answer
    error: str | None = None  # last poll's error; None when the last poll succeeded
    latency_seconds: float | None = None
    traffic: AgentTraffic | None = None  # rates from the agent's counters; None until two answers span time


@dataclass(frozen=True)
class BalancerReading:
    """One balancer's servers as read now, or why it could not be read."""

    name: str
    kind: str
    servers: tuple[ServerState, ...] = ()
    error: str | None = None  # None = reachable and read
    read_at: float | None = None
    # How asrtop reaches it ("local socket", "tcp", "local", "ssh ops@lb1:22"; None: the adapter does not say)
    # and the seconds its last read took (None: unknown, or the read failed).
    transport: str | None = None
    latency: float | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def problem(self) -> str | None:
        """The error without the adapter's own leading "<name>: " (the console and `status` name it once)."""
        return None if self.error is None else self.error.removeprefix(self.name + ": ")


class derived:
    """A NodeView or FleetSnapshot value worked out from its fields on first read, then kept in the instance's
    __dict__ (where later reads find it as they find a field). Both are frozen: the value never goes out of
    date, and a refresh reads each several times per node (history, rules, header, table). Not a field:
    equality, repr and dataclasses.replace see only the fields. functools.cached_property does the same but
    takes a lock per read on Python 3.11 (a third of the cost at 1,000 nodes)."""

    def __init__(self, fn):
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)  # a race between threads computes the same value twice
        return value


class figure(derived):
    """A NodeView figure that NodeView._work_out works out with all the others on the first read of any of
    them: one pass over the servers and one look at the agent's answer per node and snapshot (a refresh reads
    them all for every node; one call per figure costs about twice as much). The decorated function only
    names the figure and says what it is."""

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        obj._work_out()
        return obj.__dict__[self.name]


@dataclass(frozen=True)
class NodeView:
    """One node as the balancers and its agent show it now."""

    name: str
    config: NodeConfig
    agent: AgentReading | None
    servers: Mapping[str, ServerState]  # balancer name -> this node's server there
    stale: bool = False  # agent configured but no good answer for STALE_AFTER_MISSED intervals
    balancer_unread: bool = False  # a balancer could not be read: its view of this node is missing
    # A change running now (any asrtop process on this host, from the intent journal) that deletes and re-adds
    # this node's server, as one clause: "`asrtop backup node-2 on` re-creates its server on hx-a". Its few
    # seconds of maint (or of no server at all) are that change, not a problem.
    changing: str | None = None

    @figure
    def status(self) -> AgentStatus | None:
        """The agent's last good answer (kept while later polls fail: see `stale`)."""

    @figure
    def admin_state(self) -> str:
        """ready | drain | maint | MIXED (balancers disagree) | unknown (no balancer knows it)."""

    @figure
    def health(self) -> str:
        """up | down | no-check | paused | MIXED | unknown."""

    @figure
    def weight(self) -> int | None:
        """The weight every balancer gives it; None when they differ or none has it."""

    @figure
    def backup(self) -> bool | None:
        """A backup server on every balancer (True), on none (False); None when they differ or none has it."""

    @figure
    def active_sessions(self) -> int | None:
        """Sessions on this node summed over all balancers that report them."""

    @figure
    def queued(self) -> int | None:
        """Requests queued for this node, summed over all balancers that report a queue."""

    @figure
    def in_flight(self) -> int | None:
        """THE in-flight figure (table, header, sort, history, `status`, `--json`, `drain --wait`).

        max(sessions + queue summed over the balancers, the agent's in-flight while its answer is fresh):
        a request shows in both signals, hence max, not sum. None = cannot tell: no signal at all, or a
        balancer could not be read (its sessions are missing from the sum) and no agent covers for it.
        """

    @figure
    def oldest_in_flight_seconds(self) -> float | None:
        """Age of this node's oldest request in flight, from the agent's in-path proxy at its last
        collection (a drain's wait shows it); None when unknown: no proxy, no fresh answer, none in flight."""

    @figure
    def streams(self) -> StreamsReading | None:
        """The agent's stream reading while its answer is fresh; None when it reports no streams (no stream
        port), has not answered, or is stale: unknown, never 0."""

    @figure
    def streams_open(self) -> int | None:
        """Live streams (WebSocket sessions) on this node; None when unknown (see `streams`)."""

    @figure
    def oldest_stream_seconds(self) -> float | None:
        """Age of the oldest live stream at the agent's last collection; None when none is open or unknown."""

    @figure
    def requests_source(self) -> str | None:
        """Who counted the request figures below: "balancer", "agent" (the balancer counts nothing), or None."""

    @figure
    def agent_counted(self) -> bool:
        """Its request figures are the agent's (the balancer counts none): marked, never passed off as the
        balancer's."""

    @figure
    def request_rate(self) -> float | None:
        """Requests/s: summed over the balancers that count them, else the agent's rate."""

    @figure
    def errors_5xx(self) -> int | None:
        """5xx answers so far: summed over the balancers that count requests, else the agent's count."""

    @figure
    def errors_5xx_rate(self) -> float | None:
        """5xx answers per second over the agent's window; None where a balancer counts the requests (it gives
        a 5xx total, no rate) or nobody counts them."""

    @figure
    def response_seconds(self) -> float | None:
        """Response time: the slowest balancer's average (HAProxy rtime), else the agent's mean over its
        window. None (shown blank) when nothing was answered: never 0 for a node that served nothing."""

    @figure
    def audio_rate(self) -> float | None:
        """Audio seconds transcribed per second (only agents know audio lengths)."""

    @figure
    def model_digest(self) -> str | None:
        """The model's sha256 while the agent's model check says "ok"; None otherwise (hashing, missing...)."""

    def _work_out(self) -> None:
        """Every figure above, written into __dict__ (as `derived` does): one pass over the servers, then the
        agent's answer while it is fresh."""
        d = self.__dict__
        servers = tuple(self.servers.values())
        if not servers:
            d["admin_state"] = d["health"] = "unknown"
            d["weight"] = d["backup"] = d["active_sessions"] = d["queued"] = None
            sessions = balancer_sum = errors = rate = response = None
        else:
            # what every balancer agrees on, compared with the first (one or two balancers: no sets to build)
            first = servers[0]
            admin, health, weight, backup = first.admin, first.health, first.weight, first.backup
            sessions = queued = balancer_sum = errors = rate = response = None
            for s in servers:
                if s.admin is not admin:
                    admin = MIXED
                if s.health is not health:
                    health = MIXED
                if weight is not None and s.weight != weight:
                    weight = _DIFFER
                if s.backup is not backup:
                    backup = _DIFFER
                a, q = s.active_sessions, s.queued
                if a is not None:
                    sessions = a if sessions is None else sessions + a
                    balancer_sum = a + (q or 0) + (balancer_sum or 0)
                if q is not None:
                    queued = q if queued is None else queued + q
                r = s.request_rate
                if r is not None:
                    rate = r if rate is None else rate + r
                e = s.errors_5xx_total
                if e is not None:
                    errors = e if errors is None else errors + e
                rt = s.avg_response_seconds
                if rt is not None and (s.requests_total or 0) > 0 and (response is None or rt > response):
                    response = rt
            d["admin_state"] = admin if admin is MIXED else _WORD[admin]
            d["health"] = health if health is MIXED else _WORD[health]
            d["weight"] = None if weight is _DIFFER else weight
            d["backup"] = None if backup is _DIFFER else backup
            d["active_sessions"], d["queued"] = sessions, queued

        agent = self.agent
        st = d["status"] = agent.status if agent is not None else None
        asr = st.asr if st is not None and not self.stale else None  # a stale answer says nothing about now
        said = asr.in_flight if asr is not None else None
        d["in_flight"] = ((None if self.balancer_unread else balancer_sum) if said is None
                          else said if balancer_sum is None else max(said, balancer_sum))
        reqs = asr.requests if asr is not None else None
        d["oldest_in_flight_seconds"] = reqs.oldest_in_flight_seconds if reqs is not None else None
        streams = d["streams"] = asr.streams if asr is not None else None
        d["streams_open"] = streams.open if streams is not None else None
        d["oldest_stream_seconds"] = streams.oldest_seconds if streams is not None and streams.open else None
        d["model_digest"] = st.model.sha256 if st is not None and st.model.state == "ok" else None

        traffic = agent.traffic if agent is not None and not self.stale else None
        d["audio_rate"] = traffic.audio_rate if traffic is not None else None
        if rate is not None:  # a balancer counts this node's requests
            d["requests_source"], d["agent_counted"] = REQUESTS_FROM_BALANCER, False
            d["request_rate"], d["errors_5xx"], d["errors_5xx_rate"] = rate, errors, None
            d["response_seconds"] = response
            return
        source = REQUESTS_FROM_AGENT if traffic is not None or (asr is not None and asr.requests) else None
        d["requests_source"], d["agent_counted"] = source, source == REQUESTS_FROM_AGENT
        d["request_rate"] = traffic.request_rate if traffic is not None else None
        d["errors_5xx"] = (reqs.by_class.get("5xx", 0) if reqs is not None and (reqs.total is not None or reqs.by_class)
                           else None)
        d["errors_5xx_rate"] = traffic.errors_5xx_rate if traffic is not None else None
        d["response_seconds"] = traffic.response_seconds if traffic is not None else None

    def agent_age(self, now: float) -> float | None:
        if self.agent is None or self.agent.fetched_at is None:
            return None
        return max(0.0, now - self.agent.fetched_at)


# Why a server no longer shows what asrtop set on it (asrtop.control.drift decides; Drift.cause)
DRIFT_RESTART = "restart"  # the balancer restarted or reloaded after the change and started from its config
DRIFT_AGENT = "agent check"  # the server's running agent check answered another state or weight
DRIFT_OUTSIDE = "outside"  # another tool or an operator, not asrtop


@dataclass(frozen=True)
class Drift:
    """A server that no longer shows what asrtop last set on it (its audit log), as a fact the problems rules
    read: the same finding as the drift note beside it in FleetSnapshot.notes, never parsed from it."""

    balancer: str
    server: str  # the balancer's server name
    field: str  # admin | weight | backup
    what: str  # what asrtop set, as its command words: "drain", "maint", "weight 5", "backup on"
    now: str  # what the balancer shows instead: "ready", "weight 7", "primary"
    cause: str  # DRIFT_RESTART | DRIFT_AGENT | DRIFT_OUTSIDE
    at: float  # when asrtop set it (the audit record)
    user: str = ""  # who asked (the audit record's user@host)
    restarted_at: float | None = None  # the balancer's start time, for DRIFT_RESTART


@dataclass(frozen=True)
class DrainRecord:
    """A drain or maint asrtop set on a server that still shows it: when and by whom (the audit log), so a
    one-shot `asrtop check` can tell a forgotten drain from one that just began."""

    balancer: str
    server: str
    state: str  # drain | maint
    at: float
    user: str = ""


TARGET_FROM_CONFIG = "cluster.model_sha256"
TARGET_FROM_MAJORITY = "majority"


@dataclass(frozen=True)
class ModelGroup:
    """Nodes that run one model digest."""

    digest: str | None  # None: nodes whose digest is unknown (no agent, hashing, missing, error)
    nodes: tuple[str, ...]
    target: bool = False  # these nodes run the fleet's target model


@dataclass(frozen=True)
class FleetSnapshot:
    """The whole fleet at one moment: what the console and `status` show."""

    taken_at: float
    nodes: tuple[NodeView, ...]
    balancers: tuple[BalancerReading, ...] = ()
    refresh_seconds: float = 1.0
    notes: tuple[str, ...] = field(default_factory=tuple)  # source-level warnings to show
    model_sha256: str | None = None  # cluster.model_sha256: the digest the fleet must run (else the majority)
    facts_error: str | None = None  # the node-facts source as a whole could not be read (Prometheus unreachable)
    drift: tuple[Drift, ...] = ()  # servers that no longer show what asrtop set (the notes word the same)
    drains: tuple[DrainRecord, ...] = ()  # drains and maints asrtop set that the servers still show

    def node(self, name: str) -> NodeView:
        """The node of that name (KeyError when none): a dict lookup, so callers may ask per node."""
        return self._by_name[name]

    def has(self, name: str) -> bool:
        return name in self._by_name

    @derived
    def _by_name(self) -> dict[str, NodeView]:
        by_name: dict[str, NodeView] = {}
        for n in self.nodes:
            by_name.setdefault(n.name, n)  # the first of a name, as a scan finds it
        return by_name

    @derived  # each node's digest read once per snapshot (1,000 nodes: the rules ask too)
    def model_digests(self) -> tuple[str | None, ...]:
        """NodeView.model_digest of every node, in the order of `nodes`."""
        return tuple(n.model_digest for n in self.nodes)

    @derived  # a snapshot never changes; the header, table and `status` all ask
    def majority_digest(self) -> str | None:
        """The digest most nodes run; None when no digest is known or the biggest groups tie."""
        known = Counter(d for d in self.model_digests if d is not None)
        top = known.most_common(2)
        return top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else None

    @property
    def target_digest(self) -> str | None:
        """The model the fleet must run: cluster.model_sha256 when set, else the majority (None on a tie)."""
        return self.model_sha256 or self.majority_digest

    @property
    def target_source(self) -> str | None:
        """Where the target comes from: "cluster.model_sha256", "majority", or None (no target)."""
        if self.model_sha256:
            return TARGET_FROM_CONFIG
        return TARGET_FROM_MAJORITY if self.majority_digest else None

    def model_groups(self) -> tuple[ModelGroup, ...]:
        """Nodes grouped by model digest: the target's group first, then the biggest; unknown last."""
        return self._model_groups

    @derived  # the header's model line, the table's colours and the models screen all ask, per snapshot
    def _model_groups(self) -> tuple[ModelGroup, ...]:
        by_digest: dict[str | None, list[str]] = {}
        for n, d in zip(self.nodes, self.model_digests):
            by_digest.setdefault(d, []).append(n.name)
        target = self.target_digest
        groups = [ModelGroup(d, tuple(ns), d is not None and d == target) for d, ns in by_digest.items()]
        groups.sort(key=lambda g: (g.digest is None, not g.target, -len(g.nodes), g.digest or ""))
        return tuple(groups)

    def nodes_differing_from_target(self) -> tuple[str, ...]:
        """Nodes whose KNOWN digest is not the target's. With no target (a tie), every node of a fleet running
        several digests differs; a node whose digest is unknown never counts here (see nodes_model_unknown)."""
        return self._differing

    @derived
    def _differing(self) -> tuple[str, ...]:
        target = self.target_digest
        digests = {d for d in self.model_digests if d is not None}
        if target is None and len(digests) <= 1:
            return ()
        return tuple(n.name for n, d in zip(self.nodes, self.model_digests) if d is not None and d != target)

    @derived  # the table's labels, the header and `status`'s legend all ask
    def nodes_agent_counted(self) -> tuple[str, ...]:
        """Nodes whose request figures their agents counted (NodeView.agent_counted)."""
        return tuple(n.name for n in self.nodes if n.agent_counted)

    def nodes_model_unknown(self) -> tuple[str, ...]:
        """Nodes whose digest cannot be compared: no agent answer, hashing, missing, error. Never "same"."""
        return self._unknown

    @derived
    def _unknown(self) -> tuple[str, ...]:
        return tuple(n.name for n, d in zip(self.nodes, self.model_digests) if d is None)


def merge(
    nodes: Iterable[NodeConfig],
    agents: Mapping[str, AgentReading],
    balancers: Iterable[BalancerReading],
    now: float,
    refresh_seconds: float = 1.0,
    notes: Iterable[str] = (),
    model_sha256: str | None = None,
    changing: Mapping[str, str] = {},
    facts_error: str | None = None,
    drift: Iterable[Drift] = (),
    drains: Iterable[DrainRecord] = (),
) -> FleetSnapshot:
    """Join configured nodes with agent readings (by node name) and balancer servers (by name or host:port).

    `changing`: node -> the change in progress that re-creates its server (NodeView.changing); `drift`,
    `drains`: what asrtop set on the servers, lost or still held (asrtop.control.drift). A node that
    matches no server of a reachable balancer (and is not being re-created) gets a note saying what it was
    matched by and the balancer's closest servers."""
    balancers = tuple(balancers)
    unread = any(not b.reachable for b in balancers)
    indexes = [(b.name, _ServerIndex.kept(b.name, b.servers)) for b in balancers if b.reachable]
    nodes = tuple(nodes)
    names = [name for name, _ in indexes]
    # each node's first matching server on each reachable balancer (None: none): one dict lookup per key
    rows = zip(*(index.column(nodes) for _, index in indexes)) if indexes else ((),) * len(nodes)
    stale_after = STALE_AFTER_MISSED * refresh_seconds
    views = []
    unmatched: list[tuple[NodeConfig, list[tuple[str, _ServerIndex]]]] = []
    for cfg, row in zip(nodes, rows):
        name = cfg.name
        # a balancer without its server? (a ServerState is always true; `None in row` called the dataclass'
        # __eq__, a Python function, for every server: ~4% of a merge)
        if not all(row):
            servers = {b: s for b, s in zip(names, row) if s is not None}
            if name not in changing:
                unmatched.append((cfg, [ix for ix, s in zip(indexes, row) if s is None]))
        else:
            servers = dict(zip(names, row))
        reading = agents.get(name)
        stale = False
        if cfg.agent is not None:
            fetched = reading.fetched_at if reading is not None else None
            stale = fetched is None or now - fetched > stale_after
        views.append(_node_view(name, cfg, reading, servers, stale, unread, changing.get(name) if changing else None))
    if facts_error:
        notes = (f"node facts unavailable: {facts_error}", *notes)
    notes = (*notes, *unmatched_notes(unmatched))
    return FleetSnapshot(now, tuple(views), balancers, refresh_seconds, tuple(notes), model_sha256, facts_error,
                         tuple(drift), tuple(drains))


_new = object.__new__


def _node_view(name: str, config: NodeConfig, agent: AgentReading | None, servers: Mapping[str, ServerState],
               stale: bool, balancer_unread: bool, changing: str | None) -> NodeView:
    """NodeView(...) for merge's loop: the frozen dataclass's __init__ sets each field through
    object.__setattr__, a quarter of a 5,000-node merge; this writes the same fields straight into the new
    instance's __dict__ before anyone holds it (tests/unit/test_fleet_join.py keeps it equal to NodeView(...))."""
    view = _new(NodeView)
    d = view.__dict__
    d["name"] = name
    d["config"] = config
    d["agent"] = agent
    d["servers"] = servers
    d["stale"] = stale
    d["balancer_unread"] = balancer_unread
    d["changing"] = changing
    return view


UNMATCHED_NOTES = 5  # nodes with a note of their own; the rest are counted in one more note
CLOSEST = 3  # servers named per balancer in an unmatched node's note


def looked_for(cfg: NodeConfig) -> str:
    """What a node is matched to a balancer's server by."""
    return f"server name {cfg.server_name} or address {cfg.address}" if cfg.address else \
        f"server name {cfg.server_name} (no address configured)"


def unmatched_notes(unmatched: list[tuple[NodeConfig, list[tuple[str, "_ServerIndex"]]]]) -> list[str]:
    """One note per node that matches no server on a reachable balancer (the first UNMATCHED_NOTES of them):

        node-7 matches no server on haproxy-a: looked for server name node-7 or address 10.0.0.7:10095;
        haproxy-a has 10.0.0.7:10096 (asr7), 10.0.0.17:10095 (asr17)
    """
    out = []
    for cfg, missing in unmatched[:UNMATCHED_NOTES]:
        have = "; ".join(f"{name} has {index.closest(cfg, CLOSEST)}" for name, index in missing)
        out.append(f"{cfg.name} matches no server on {', '.join(name for name, _ in missing)}: looked for "
                   f"{looked_for(cfg)}; {have}")
    if len(unmatched) > UNMATCHED_NOTES:
        rest = [cfg.name for cfg, _ in unmatched[UNMATCHED_NOTES:]]
        out.append(f"{len(rest)} more nodes match no server on a balancer: {', '.join(rest[:CLOSEST])}"
                   + (" …" if len(rest) > CLOSEST else ""))
    return out


# What a balancer's server is looked up by (its name and endpoint), in the order of its servers
_PLACE = operator.attrgetter("name", "address", "port")


class _ServerKeys:
    """One balancer's lookup keys -> the first server's position (`first`), with the servers' places
    (_PLACE) they were made of and the last nodes' positions among them (`column`: (nodes, positions)). Kept
    between refreshes (_KEPT): a balancer's servers change their figures every refresh, their names and
    endpoints rarely, so the keys and each node's match are worked out again only when those change."""

    __slots__ = ("places", "first", "column")

    def __init__(self, places: list[tuple], first: dict[str | tuple[str, str], int]):
        self.places = places
        self.first = first
        self.column: tuple[tuple[NodeConfig, ...], list[int | None]] | None = None


_KEPT: dict[str, _ServerKeys] = {}  # balancer name -> its last servers' keys
_KEPT_MAX = 64  # balancer names kept at most (more: forgotten, made again on the next merge)


def _same_nodes(a: tuple[NodeConfig, ...], b: tuple[NodeConfig, ...]) -> bool:
    """The same NodeConfig objects in the same order (a config load makes new ones: its keys may differ)."""
    return a is b or (len(a) == len(b) and all(map(operator.is_, a, b)))


class _ServerIndex:
    """One balancer's servers by name and by endpoint_key, in one dict (a name is a str, an endpoint key a tuple:
    they never collide): the first server NodeConfig.matches, in O(keys) per node instead of a scan of every
    server (1,000 nodes x 1,000 servers per refresh)."""

    def __init__(self, servers: tuple[ServerState, ...], keys: _ServerKeys):
        self.servers = servers
        self.keys = keys

    @classmethod
    def kept(cls, balancer: str, servers: tuple[ServerState, ...]) -> "_ServerIndex":
        """The index of `balancer`'s servers, on the keys kept from its last merge while its servers' places are
        the same, in the same order: the keys and matches were ~45% of a merge (5,000 nodes x 2 balancers, cProfile);
        reused, a merge takes 0.60-0.66x the CPU at 1,000 and 5,000 nodes (the same process, 30 alternations each,
        bench_fleet_merge's fleet)."""
        places = list(map(_PLACE, servers))
        keys = _KEPT.get(balancer)
        if keys is None or keys.places != places:
            keys = _ServerKeys(places, _first_positions(servers))
            if len(_KEPT) >= _KEPT_MAX and balancer not in _KEPT:
                _KEPT.clear()
            _KEPT[balancer] = keys
        return cls(servers, keys)

    def column(self, nodes: tuple[NodeConfig, ...]) -> list[ServerState | None]:
        """Each node's first matching server (NodeConfig.matches), in order; None where none matches."""
        kept = self.keys.column
        if kept is not None and _same_nodes(kept[0], nodes):
            positions = kept[1]
        else:
            positions = self._positions(nodes)
            self.keys.column = (nodes, positions)  # one assignment: another thread sees the old pair or this one
        servers = self.servers
        return [None if i is None else servers[i] for i in positions]

    def _positions(self, nodes: tuple[NodeConfig, ...]) -> list[int | None]:
        get = self.keys.first.get
        out: list[int | None] = []
        append = out.append
        for cfg in nodes:
            best = None
            for key in cfg.match_keys:
                i = get(key)
                if i is not None and (best is None or i < best):
                    best = i
            append(best)
        return out

    @functools.cached_property
    def _near(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """(host -> servers, port -> servers), built once, only when a node matched nothing."""
        by_host: dict[str, list[int]] = {}
        by_port: dict[str, list[int]] = {}
        for i, s in enumerate(self.servers):
            host, port = endpoint_key(s.address, s.port)
            by_host.setdefault(host, []).append(i)
            by_port.setdefault(port, []).append(i)
        return by_host, by_port

    def closest(self, cfg: NodeConfig, limit: int) -> str:
        """This balancer's servers nearest to what the node names: the same host (another port: e.g. the
        service port where the balancer points at the agent's proxy), then the same port, else the first
        ones. O(limit) per node: never a scan of every server."""
        if not self.servers:
            return "no servers"
        by_host, by_port = self._near
        picked: dict[int, None] = {}
        for host, port in sorted(cfg.endpoint_keys):
            for i in by_host.get(host, ())[:limit]:
                picked.setdefault(i)
        for port in sorted({port for _, port in cfg.endpoint_keys}):
            for i in by_port.get(port, ())[:limit]:
                picked.setdefault(i)
        near = list(picked)[:limit] or list(range(min(limit, len(self.servers))))
        named = ", ".join(_server_words(self.servers[i]) for i in near)
        more = len(self.servers) - len(near)
        return named + (f" and {more} more" if more else "")


def _first_positions(servers: tuple[ServerState, ...]) -> dict[str | tuple[str, str], int]:
    """Each server's name and endpoint keys -> the position of the first server with it."""
    first: dict[str | tuple[str, str], int] = {}
    add = first.setdefault
    for i, s in enumerate(servers):
        add(s.name, i)
        if s.port is None:
            for key in server_endpoint_keys(s):
                add(key, i)
        else:  # server_endpoint_keys' one key, without the call (this runs per server when the servers change)
            add(endpoint_key(s.address, s.port), i)
    return first


def _server_words(s: ServerState) -> str:
    return s.endpoint if s.name == s.endpoint else f"{s.endpoint} ({s.name})"


def primaries_staying_ready(snapshot: FleetSnapshot, leaving: Iterable[str]) -> int:
    """Primary (non-backup) nodes that are ready and not down on every balancer, excluding `leaving`."""
    leaving = set(leaving)
    count = 0
    for n in snapshot.nodes:  # from the node's figures (one pass over its servers, kept): every refresh asks
        if n.backup is not False or n.admin_state != "ready" or n.name in leaving:
            continue  # a backup somewhere (or no server: None), or not ready everywhere
        if n.health != "down" and (n.health != MIXED or not_down(n)):
            count += 1
    return count


def not_down(n: NodeView) -> bool:
    """No balancer's health check finds this node DOWN."""
    return all(s.health is not Health.DOWN for s in n.servers.values())
