"""PURE: what the console and `asrtop status` both say about the fleet, worded once (DESIGN rule 2).

A node's state word, the fleet's count of nodes per state word, and the model-consistency line. Each comes
with a tone (what it means, not a colour): the console maps tones to styles, `status` prints the words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from asrtop.fleet import MIXED, TARGET_FROM_CONFIG, BalancerReading, FleetSnapshot, NodeView
from asrtop.timewords import age_words, short_span

# Tones: what a word means to the operator; asrtop.tui.format maps them to styles.
OK, BUSY, OUT, ALARM, SPLIT, QUIET, CHANGING, WARN = ("ok", "busy", "out", "alarm", "split", "quiet", "changing",
                                                      "warn")
RECREATE = "re-create"  # the state word of a node whose server a running change deletes and re-adds
SHORT_DIGEST = 7  # digest prefix in the model line (the console's model column shows the same)
NAMED = 5  # nodes named in a status detail before "and N more"


@dataclass(frozen=True)
class StateWord:
    """A node's state in one word, and its tone."""

    text: str  # ready | drain | maint | DOWN | MIXED | unknown | re-create
    tone: str
    short: str  # the same word for a narrow cell ("?" for unknown); equal to text otherwise


# Every word there is, made once: a refresh words 1,000 nodes twice (table and counts) without allocating.
_WORDS = {w.text: w for w in (StateWord("ready", OK, "ready"), StateWord("drain", BUSY, "drain"),
                              StateWord("maint", OUT, "maint"), StateWord("DOWN", ALARM, "DOWN"),
                              StateWord(MIXED, SPLIT, MIXED), StateWord(RECREATE, CHANGING, "renew"),
                              StateWord("unknown", QUIET, "?"))}


def state_word(node: NodeView) -> StateWord:
    """The node's state as one word. Admin state from the balancers; DOWN only when a ready node's health checks
    fail (a maint node's checks are paused: it is maint, never down); a change in progress that deletes and
    re-adds its server (HAProxy backup toggle) says so instead of the few seconds of maint it causes."""
    if node.changing:
        return _WORDS[RECREATE]
    admin = node.admin_state  # ready | drain | maint | MIXED | unknown (no balancer has this node)
    if admin == "ready" and node.health == "down":
        return _WORDS["DOWN"]
    return _WORDS.get(admin) or _WORDS["unknown"]


# Header and `status` order; every node is counted under exactly one state word.
STATE_ORDER = ("ready", "drain", "maint", "DOWN", MIXED, RECREATE, "unknown")


@dataclass(frozen=True)
class StateCounts:
    """Nodes per state word."""

    by_word: dict[str, int]  # state word -> nodes, every word of STATE_ORDER present
    backup: int  # nodes that are backup servers (any state)
    serving: int  # ready (not DOWN, not being re-created) primaries: what carries traffic now

    def __getitem__(self, word: str) -> int:
        return self.by_word.get(word, 0)

    def text(self) -> str:
        """"3 ready, 1 maint": the words with a node, in STATE_ORDER."""
        return ", ".join(f"{self.by_word[w]} {w}" for w in STATE_ORDER if self.by_word[w])


def state_counts(nodes: Iterable[NodeView], words: Iterable[StateWord] | None = None) -> StateCounts:
    """`words`: state_word of each node, in order, when the caller has them already (`status` words each
    node once for its table and its counts)."""
    by_word = dict.fromkeys(STATE_ORDER, 0)
    backup = serving = 0
    nodes = list(nodes)
    for n, w in zip(nodes, words if words is not None else map(state_word, nodes)):
        word = w.text
        by_word[word] += 1
        backup += bool(n.backup)
        serving += word == "ready" and not n.backup
    return StateCounts(by_word, backup, serving)


@dataclass(frozen=True)
class ModelLine:
    """The fleet's model in one line."""

    text: str  # "3 of 4 nodes on model 366146d, 1 unknown"
    tone: str  # ok | warn (some unknown) | alarm (some differ, or no majority) | quiet (nothing to compare)
    detail: str  # who: "differs: node-2; unknown: node-4 (hashing)" ("" when nobody)


def model_line(snap: FleetSnapshot) -> ModelLine:
    """The fleet's model consistency. A node whose model is unknown is never counted as on the target."""
    total = len(snap.nodes)
    target = snap.target_digest
    differing = snap.nodes_differing_from_target()
    unknown = snap.nodes_model_unknown()
    known = total - len(unknown)
    pinned = " (pinned)" if snap.target_source == TARGET_FROM_CONFIG else ""
    detail = _detail(snap, differing, unknown)
    if known == 0:
        text = f"model {target[:SHORT_DIGEST]}{pinned}: no node's model known" if target else "model unknown"
        return ModelLine(text, QUIET, detail)
    if target is None:
        digests = len({n.model_digest for n in snap.nodes if n.model_digest is not None})
        return ModelLine(f"models differ: {digests} digests, no majority", ALARM, detail)
    on = known - len(differing)
    text = (f"all {total} nodes on model {target[:SHORT_DIGEST]}{pinned}" if on == total
            else f"{on} of {total} nodes on model {target[:SHORT_DIGEST]}{pinned}")
    if differing:
        text += f", {len(differing)} differ{'s' if len(differing) == 1 else ''}!"
    if unknown:
        text += f", {len(unknown)} unknown"
    return ModelLine(text, ALARM if differing else WARN if unknown else OK, detail)


def _detail(snap: FleetSnapshot, differing: tuple[str, ...], unknown: tuple[str, ...]) -> str:
    parts = []
    if differing:
        parts.append("differs: " + _names(differing))
    if unknown:
        why = {}
        for n in snap.nodes:
            st = n.status
            if n.model_digest is None:
                why[n.name] = st.model.state if st is not None else "no agent" if n.config.agent is None else \
                    "no answer"
        parts.append("unknown: " + _names(f"{name} ({why[name]})" for name in unknown))
    return "; ".join(parts)


def _names(names: Iterable[str]) -> str:
    names = list(names)
    more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
    return ", ".join(names[:NAMED]) + more


def rate_text(v: float | None, unknown: str = "—") -> str:
    """A per-second rate as the console and `status` both write it: '12', '3', '2.5'; one decimal only below
    10 and only when it is not '.0' ('0.0' stays for a rate that rounds to nothing: some traffic, not none)."""
    if v is None:
        return unknown
    if v >= 10 or v == 0:
        return f"{v:.0f}"
    one = f"{v:.1f}"
    return one[:-2] if one.endswith(".0") and one != "0.0" else one


def response_text(seconds: float | None, unknown: str = "—") -> str:
    """A node's response time as the console's RT column and `status`'s RESP write it: '240ms', '1.5s', '130s'."""
    if seconds is None:
        return unknown
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.1f}s" if seconds < 100 else f"{seconds:.0f}s"


@dataclass(frozen=True)
class AgentAge:
    """How old the node's agent answer is, in words, and its tone (the console's AGE cell, `status`'s AGENT)."""

    text: str  # none | down | ? | stale 3m | 0s | 12s | 3m | 1h05m
    tone: str
    short: str  # the same for a 5-wide cell: 'stale' without its age; equal to text otherwise


def agent_age(node: NodeView, now: float) -> AgentAge:
    """'none' without an agent configured; 'down' (it failed) or '?' (not answered yet) with no answer at all;
    'stale 3m' when it has not answered for STALE_AFTER_MISSED refreshes (the row greys out); else its age."""
    if node.config.agent is None:
        return AgentAge("none", QUIET, "none")
    age = node.agent_age(now)
    if age is None:
        error = node.agent.error if node.agent is not None else None
        return AgentAge("down", ALARM, "down") if error else AgentAge("?", QUIET, "?")
    text = short_span(age)  # whole seconds: a live console's cells do not change with every poll's jitter
    return AgentAge(f"stale {text}", ALARM, "stale") if node.stale else AgentAge(text, OK, text)


def latency_text(seconds: float) -> str:
    """A round trip as the console and `status` write it: '0.4 ms', '12 ms', '1.2 s'."""
    ms = seconds * 1000
    if ms >= 1000:
        return f"{seconds:.1f} s"
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def balancer_link(b: BalancerReading, brief: bool = False) -> str:
    """How asrtop reaches a balancer and how long its last read took: "ssh ops@lb1:22, 3.1 ms",
    "local socket, 0.4 ms"; "" when neither is known (a read that failed has no time). `brief` (the console's
    header, where every balancer shares one line): the transport's kind unless local, "ssh 3.1 ms", "0.4 ms"."""
    how = b.transport
    if brief and how:
        how = None if how.startswith("local") else how.split()[0]
    latency = None if b.latency is None else latency_text(b.latency)
    return (" " if brief else ", ").join(x for x in (how, latency) if x)


# -- streams (a FunASR WebSocket session per call): the table's cell, the header's total, the detail's line ---

def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def streams_cell(node: NodeView) -> str:
    """ "4 12m" (live streams and the oldest one's age), "0", or "—" when the agent reports no streams."""
    n = node.streams_open
    if n is None:
        return "—"
    oldest = node.oldest_stream_seconds
    return f"{n} {short_span(oldest)}" if n and oldest is not None else str(n)


@dataclass(frozen=True)
class StreamsTotal:
    """Live streams over the fleet."""

    open: int  # live streams on the nodes that report them
    reporting: int  # nodes whose agent reports streams
    oldest: float | None  # the oldest live stream's age, fleet-wide

    def text(self) -> str:
        """ "7 live streams (oldest 12 min)" """
        oldest = f" (oldest {age_words(self.oldest)})" if self.open and self.oldest is not None else ""
        return f"{plural(self.open, 'live stream')}{oldest}"

    def short(self) -> str:
        """The console header's figure: "7 (12m)"."""
        oldest = f" ({short_span(self.oldest)})" if self.open and self.oldest is not None else ""
        return f"{self.open}{oldest}"


@dataclass(frozen=True)
class InFlightTotal:
    """Requests in flight fleet-wide: the header's figure, `status`'s summary line and its JSON."""

    total: int  # summed over the nodes that know theirs
    known: int  # nodes that know their in-flight count
    unknown: int  # nodes that do not (no agent, no balancer count)

    @property
    def figure(self) -> int | None:
        """The total; None when no node knows it (the header shows a dash, not 0)."""
        return self.total if self.known else None

    def text(self) -> str:
        """ "in flight 12", "in flight 12 (some unknown)" """
        return f"in flight {self.total}" + (" (some unknown)" if self.unknown else "")


def in_flight_total(nodes: Iterable[NodeView]) -> InFlightTotal:
    total = known = unknown = 0
    for n in nodes:
        v = n.in_flight
        if v is None:
            unknown += 1
        else:
            total += v
            known += 1
    return InFlightTotal(total, known, unknown)


_streams_memo: list = [None, None]  # (the nodes, their total): the header, the table and `status` all ask


def streams_total(nodes: Iterable[NodeView]) -> StreamsTotal | None:
    """Live streams fleet-wide; None when no node's agent reports streams (an HTTP-only fleet says nothing).
    Worked out once per snapshot's nodes (a tuple, compared by identity)."""
    if isinstance(nodes, tuple) and _streams_memo[0] is nodes:
        return _streams_memo[1]
    result = _streams_total(nodes)
    if isinstance(nodes, tuple):
        _streams_memo[:] = [nodes, result]
    return result


def _streams_total(nodes: Iterable[NodeView]) -> StreamsTotal | None:
    total = reporting = 0
    oldest: float | None = None
    for n in nodes:
        open_ = n.streams_open
        if open_ is None:
            continue
        reporting += 1
        total += open_
        age = n.oldest_stream_seconds
        if age is not None and (oldest is None or age > oldest):
            oldest = age
    return StreamsTotal(total, reporting, oldest) if reporting else None


def streams_detail(node: NodeView) -> str | None:
    """The node detail's line: "4 live (connections), oldest 12 min; by age ≤1m 1 · ≤5m 2 · ≤30m 4; opened 120,
    closed 116"; None when the agent reports no streams."""
    s = node.streams
    if s is None:
        return None
    parts = [f"{'?' if s.open is None else s.open} live ({s.source or 'unknown source'})"
             + (f", oldest {age_words(s.oldest_seconds)}" if s.open and s.oldest_seconds is not None else "")]
    ages, before, prev_le = [], 0, None
    for le, count in s.ages:  # cumulative buckets: each one's own streams, where it has some
        own = count - before
        if own > 0:
            ages.append(f"≤{short_span(le)} {own}" if le is not None
                        else f">{short_span(prev_le)} {own}" if prev_le is not None else str(own))
        before, prev_le = max(before, count), le if le is not None else prev_le
    if ages:
        parts.append("by age " + " · ".join(ages))
    if s.opened_total is not None:
        parts.append(f"opened {s.opened_total}, closed {'?' if s.closed_total is None else s.closed_total}")
    if s.audio_seconds_total is not None:
        parts.append(f"audio {s.audio_seconds_total:.0f} s")
    return "; ".join(parts)
