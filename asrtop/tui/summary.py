"""PURE: the header's fleet summary as styled segments (no textual; Rich Text is built by the widget).

The counts and the model line are asrtop.fleet_wording's (what `asrtop status` prints); here they only get
styles and are fitted into three lines of the header's width.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from asrtop.fleet import AGENT_COUNTED_MARK, MIXED, FleetSnapshot
from asrtop.control.drain_words import DrainProgress
from asrtop.fleet_wording import (ALARM, OK, QUIET, RECREATE, WARN, ModelLine, StateCounts, StreamsTotal,
                                  balancer_link, in_flight_total, model_line, state_counts, streams_total)
from asrtop.problems.model import Problem, Severity
from asrtop.problems.words import count_badge, worst
from asrtop.tui.format import DIM, rate

Segment = tuple[str, str]

# A signal that must survive NO_COLOR carries a non-colour attribute: under Textual's monochrome filter a
# colour on a colour (red reverse) turns into dark grey on dark grey, plain reverse stays light on dark.
ALERT = "bold reverse"
MODEL_STYLES = {OK: "bold green", WARN: "bold yellow", ALARM: ALERT, QUIET: DIM}
HEADER_WIDTH = 78  # 80 columns less the header's padding: the width lines are fitted to when none is given


@dataclass(frozen=True)
class Summary:
    total: int
    counts: StateCounts
    in_flight: int | None
    request_rate: float | None
    errors_5xx: int | None
    gpu_util: float | None
    gpu_mem: float | None
    model: ModelLine
    balancers: tuple[tuple[str, str | None, str], ...]  # (name, error or None, fleet_wording.balancer_link)
    taken_at: float
    gpu_nodes: int = 0  # nodes whose GPU readings are in gpu_util / gpu_mem
    gpu_simulated: int = 0  # of those, nodes whose readings are simulated (agent gpu_source "simulated")
    agent_counted: bool = False  # some request figure (req/s, 5xx) was counted by an agent, not a balancer
    streams: StreamsTotal | None = None  # live streams fleet-wide; None: no agent reports streams

    @property
    def ready(self) -> int:
        return self.counts["ready"]

    @property
    def draining(self) -> int:
        return self.counts["drain"]

    @property
    def maint(self) -> int:
        return self.counts["maint"]

    @property
    def down(self) -> int:
        return self.counts["DOWN"]

    @property
    def backup(self) -> int:
        return self.counts.backup

    @property
    def serving(self) -> int:
        return self.counts.serving


def summarize(snap: FleetSnapshot) -> Summary:
    """The header's figures: one pass over the nodes (1,000 a second), each node's figures as NodeView
    worked them out (the table and `status` read the same ones); totals are None when no node knows them."""
    utils: list[float] = []
    mems: list[float] = []
    gpu_nodes = gpu_sim = 0
    rate = errors = None
    for n in snap.nodes:
        r = n.request_rate
        if r is not None:
            rate = r if rate is None else rate + r
        e = n.errors_5xx
        if e is not None:
            errors = e if errors is None else errors + e
        st = n.status
        if st is not None and not n.stale and st.gpus:
            gpu_nodes += 1
            gpu_sim += st.gpu_source == "simulated"
            for g in st.gpus:
                if g.utilization_ratio is not None:
                    utils.append(g.utilization_ratio)
                m = g.memory_ratio
                if m is not None:
                    mems.append(m)
    return Summary(
        total=len(snap.nodes), counts=state_counts(snap.nodes), in_flight=in_flight_total(snap.nodes).figure,
        request_rate=rate, errors_5xx=errors,
        gpu_util=sum(utils) / len(utils) if utils else None,
        gpu_mem=sum(mems) / len(mems) if mems else None,
        model=model_line(snap),
        balancers=tuple((b.name, b.error, balancer_link(b, brief=True)) for b in snap.balancers),
        taken_at=snap.taken_at, gpu_nodes=gpu_nodes, gpu_simulated=gpu_sim,
        agent_counted=bool(snap.nodes_agent_counted), streams=streams_total(snap.nodes),
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def gpu_sim_label(s: Summary) -> str:
    """' (sim)' when every GPU reading in the header is simulated, ' (2 of 5 sim)' when some are, else ''."""
    if not s.gpu_simulated:
        return ""
    if s.gpu_simulated == s.gpu_nodes:
        return " (sim)"
    return f" ({s.gpu_simulated} of {s.gpu_nodes} sim)"


def problem_style(problems: Sequence[Problem]) -> str:
    """A critical problem takes reverse video (it survives NO_COLOR); warnings are bold. The words say which."""
    return ALERT if worst(problems) is Severity.CRITICAL else "bold yellow"


def model_badge(s: Summary) -> Segment:
    """The model line (asrtop.fleet_wording.model_line, as `status` prints it) and its style."""
    return s.model.text, MODEL_STYLES.get(s.model.tone, "")


def _counts(s: Summary) -> list[Segment]:
    c = s.counts
    out: list[Segment] = [(f"{c['ready']} ready", "green"), (" · ", DIM),
                          (f"{c['drain']} drain", "yellow" if c["drain"] else ""), (" · ", DIM),
                          (f"{c['maint']} maint", "bright_blue" if c["maint"] else ""), (" · ", DIM),
                          (f"{c['DOWN']} down", "bold red" if c["DOWN"] else ""), (" · ", DIM),
                          (f"{c.backup} backup", "cyan")]
    for word, style in ((MIXED, "bold magenta"), (RECREATE, "bold yellow"), ("unknown", DIM)):
        if c[word]:
            out += [(" · ", DIM), (f"{c[word]} {word}", style)]
    return out


def header_lines(s: Summary, cluster: str, read_only: bool, error: str | None = None,
                 draining: dict[str, DrainProgress | None] | None = None, trend: str = "",
                 width: int = HEADER_WIDTH, problems: Sequence[Problem] = ()) -> list[list[Segment]]:
    """Three lines of (text, style) segments, each fitted to `width` columns (the header never wraps).

    `draining`: drains this console started and still follows (node -> what was seen last, in the words of
    asrtop.control.drain_words: `drain --wait`'s figures).
    `trend`: a short sparkline of the fleet's in-flight total.
    `problems`: the tracker's; their count opens the third line (cut last), in asrtop.problems.words' words."""
    line1: list[Segment] = [(f"{cluster} ", "bold"), (f"{s.total} nodes: ", ""), *_counts(s)]
    mark = AGENT_COUNTED_MARK if s.agent_counted else ""  # counted by the nodes' agents (nginx counts nothing)
    errors = "—" if s.errors_5xx is None else f"{s.errors_5xx}{mark}"
    line2: list[Segment] = [
        ("in-flight ", DIM), ("—" if s.in_flight is None else str(s.in_flight), "bold"),
        (f" on {s.serving} serving", ""),
        *_streams(s),
        # a drain that waits for live streams (minutes) comes before the rates: it is what the operator watches
        *(_drain(node, seen) for node, seen in sorted((draining or {}).items()) if seen and seen.streams),
        ("  req/s ", DIM), (rate(s.request_rate) + (mark if s.request_rate is not None else ""), "bold"),
        ("  5xx ", DIM), (errors, "bold red" if s.errors_5xx else "bold"),
        ("  gpu ", DIM), (_pct(s.gpu_util), "bold"), ("  gmem ", DIM), (_pct(s.gpu_mem), "bold"),
    ]
    sim = gpu_sim_label(s)
    if sim:  # simulated GPU readings are never shown as if they were real
        line2.append((sim, "bold magenta"))
    line2 += [_drain(node, seen) for node, seen in sorted((draining or {}).items()) if not (seen and seen.streams)]
    if trend and _width(line2) + 1 + len(trend) <= width:  # the sparkline only where it fits
        line2.insert(2, (f" {trend}", "cyan"))
    # a failed refresh first: everything else on screen is from the last good one
    line3: list[Segment] = [(f"refresh failed: {error}  ", "bold red")] if error else []
    if problems:
        line3.append((count_badge(problems), problem_style(problems)))
        line3.append(("  ", ""))
    line3 += [model_badge(s), ("  ", "")]
    if read_only:
        line3.append(("READ-ONLY  ", "bold yellow"))
    for name, err, link in s.balancers:  # "lb2 ✓ ssh 3.1 ms": how it is reached, its last read
        line3.append((f"{name} ✓ ", "green") if err is None else (f"{name} ✗ UNREACHABLE ", ALERT))
        if link:
            line3.append((f"{link}  ", DIM))
    line3.append((time.strftime("%H:%M:%S", time.localtime(s.taken_at)), DIM))  # last: the first thing cut
    return [fit(line, width) for line in (line1, line2, line3)]


def _drain(node: str, seen: DrainProgress | None) -> Segment:
    """ "↓ node-3 draining: 4 streams, oldest 12m, ~3m left" (drain --wait's figures, DrainProgress.short)."""
    return f"  ↓ {node} draining: {'?' if seen is None else seen.short()}", "bold yellow"


def _streams(s: Summary) -> list[Segment]:
    """ "  streams 7 (12m)": live streams fleet-wide and the oldest one's age (fleet_wording.streams_total)."""
    if s.streams is None:
        return []
    return [("  streams ", DIM), (s.streams.short(), "bold")]


def _width(line: list[Segment]) -> int:
    return sum(len(text) for text, _ in line)


def fit(line: list[Segment], width: int) -> list[Segment]:
    """The line cut to `width` columns, the last visible segment ending in '…' when something was cut."""
    if width <= 0 or _width(line) <= width:
        return line
    out: list[Segment] = []
    used = 0
    for text, style in line:
        if used + len(text) >= width:
            out.append((text[:max(0, width - used - 1)] + "…", style))
            break
        out.append((text, style))
        used += len(text)
    return out
