"""PURE formatting for the console: numbers, bars, sparklines and the fleet table's cells.

No textual here: a cell is a (text, style) pair, so the table can compare cheaply and build Rich
Text only for cells that changed (the 1,000-node refresh budget depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from asrtop.control.drain_words import DrainProgress
from asrtop.fleet import AGENT_COUNTED_MARK, FleetSnapshot, ModelGroup, NodeView
from asrtop.fleet_wording import ALARM as ALARM_TONE, OK as OK_TONE, QUIET as QUIET_TONE
from asrtop.fleet_wording import agent_age, rate_text, response_text, state_word, streams_cell, streams_total

# (text, rich style), or (text, style, accent): a bar cell whose figure after the bar (text[BAR_WIDTH:]) also
# takes `accent` (ALARM on a hot GPU: the blocks stay a bar, the percentage stands out without colour).
Cell = tuple[str, str] | tuple[str, str, str]

BAR_WIDTH = 5
_BLOCKS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"
# Hash group colours: the target first; the rest cycle. Text markers carry the meaning under NO_COLOR.
GROUP_STYLES = ("green", "yellow", "magenta", "cyan", "red", "bright_blue")
DIM = "grey50"
# Where colour carries weight, a non-colour attribute carries it too (NO_COLOR greys every colour):
HOT_RATIO = 0.9  # GPU util / memory at or above this is hot: red, and its percentage in reverse video
HOT_TEMP = 85.0  # °C
ALARM = "bold reverse"  # the figure an operator must not miss: hot percentage, hot temperature, model drift
CRITICAL_MARK = "✗"  # in the first column: the node has a critical problem (asrtop.problems), in reverse video
SIM_MARK = "~"  # before a GPU percentage read from a simulated GPU (agent gpu_source "simulated")
SIM_LABELS = {"gpu": "gpu ~=sim", "mem": "gmem ~=sim"}  # column labels while any node's GPU is simulated


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int


# Display order: who, traffic health, GPU, model, balancer settings, hardware, agent.
COLUMNS: tuple[Column, ...] = (
    Column("sel", " ", 1),
    Column("name", "node", 12),
    Column("state", "state", 5),
    Column("inflight", "infl", 5),
    Column("streams", "strm", 6),  # live streams and the oldest one's age: "4 12m" (only while agents report them)
    Column("rps", "req/s", 5),
    Column("5xx", "5xx", 5),  # a cumulative count: 5 digits before it is cut
    Column("rt", "resp", 5),
    Column("gpu", "gpu", 10),
    Column("mem", "gmem", 10),
    Column("model", "model", 8),
    Column("weight", "wt", 3),
    Column("backup", "bk", 2),
    Column("temp", "temp", 4),
    Column("power", "power", 5),
    Column("cpu", "cpu", 4),
    Column("age", "agent", 5),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
FIXED = ("sel", "name")  # frozen at the left, never dropped
# What stays as the width shrinks, most important first (the sorted column goes before all of them).
# Traffic health before GPU detail: on nginx the agent's req/s, 5xx and resp are all there is; a stale
# agent is also marked `!` in the first column, so its age column can go before gmem. A streaming fleet's
# live streams come right after in-flight: how long a drain will last is read there.
PRIORITY = ("state", "inflight", "streams", "rps", "5xx", "rt", "gpu", "model", "age", "mem", "backup", "weight",
            "temp", "power", "cpu")
assert set(FIXED + PRIORITY) == set(COLUMN_KEYS)
NAME_WIDTH_MAX = 20  # the name column is as wide as the longest node name, up to this
NAME_WIDTH_MIN = len("node") + 1  # the name column is never narrower than its label
AGENT_MARKED = ("rps", "5xx", "rt")  # request figures that carry AGENT_COUNTED_MARK when the agent counted them
# The column labels while some node's request figures are agent-counted: the legend where there is room,
# else just the mark (the hint under the table spells it out).
AGENT_LEGEND = {"rps": f"{AGENT_COUNTED_MARK}=agent req/s"}
AGENT_SHORT = {k: label + AGENT_COUNTED_MARK for k, label in (("rps", "req/s"), ("5xx", "5xx"), ("rt", "resp"))}
SORT_MARKS = {False: "▲", True: "▼"}  # ascending / descending, after the sorted column's label

_ATTRIBUTES = frozenset({"bold", "dim", "italic", "underline", "reverse", "strike"})


def without_colour(style: str) -> str:
    """`style` for a terminal without colour (NO_COLOR): its attributes only, DIM as the 'dim' attribute.

    Textual's NO_COLOR filter greys every colour by its luminance: red (hot, 5xx, drift) turns dark grey on a
    dark grey background, and reverse video of two dark greys is no better. With the colours gone the text
    takes the terminal's own foreground, and bold / reverse / dim carry what colour carried."""
    words = style.split()
    kept = [w for w in words if w in _ATTRIBUTES]
    if DIM in words and "dim" not in kept:
        kept.append("dim")
    return " ".join(kept)


@dataclass(frozen=True)
class TableLayout:
    """The fleet table's columns at one width: labels and widths in effect, and what the width left out."""

    columns: tuple[Column, ...]  # shown, in display order
    hidden: tuple[str, ...]  # base labels of the columns left out, in display order
    agent_legend: bool = False  # the req/s label spells out AGENT_COUNTED_MARK


def name_width(names: Iterable[str]) -> int:
    return min(NAME_WIDTH_MAX, max([NAME_WIDTH_MIN, *(len(n) for n in names)]))


def fit_columns(width: int, *, names_width: int = 12, sort_column: str | None = None, sort_reverse: bool = False,
                simulated: bool = False, agent_counted: bool = False, padding: int = 1,
                streams: bool = False) -> TableLayout:
    """The columns that fit in `width` cells whole, so that nothing is cut and nothing scrolls sideways.

    The first columns (FIXED) always show; then the sorted column; then PRIORITY in order, each one that
    still fits (a narrow one further down can take the room a wide one left). Each column takes its
    width + 2 * `padding` (the table's cell padding). Labels say what the cells' marks mean: '~=sim'
    while some GPU is simulated, '*' (spelled out where there is room) while an agent counted requests,
    and the sorted column ends in SORT_MARKS. The streams column only where some agent reports streams
    (`streams`): an HTTP-only fleet neither shows it nor lists it as hidden."""

    def attempt(legend: bool) -> TableLayout:
        labels = {c.key: c.label for c in COLUMNS if streams or c.key != "streams"}
        if simulated:
            labels.update(SIM_LABELS)
        if agent_counted:
            labels.update(AGENT_SHORT)
            if legend:
                labels.update(AGENT_LEGEND)
        if sort_column in labels:
            labels[sort_column] += SORT_MARKS[sort_reverse]
        widths = {}
        for c in COLUMNS:
            if c.key not in labels:
                continue
            mark = 1 if agent_counted and c.key in AGENT_MARKED else 0  # the '*' before the figure
            w = names_width if c.key == "name" else c.width + mark
            widths[c.key] = max(w, len(labels[c.key]))
        room, chosen = width, set()
        for key in (*FIXED, *((sort_column,) if sort_column in labels else ()), *PRIORITY):
            if key not in labels:
                continue
            need = widths[key] + 2 * padding
            if key not in chosen and (key in FIXED or need <= room):
                chosen.add(key)
                room -= need
        return TableLayout(tuple(Column(c.key, labels[c.key], widths[c.key]) for c in COLUMNS if c.key in chosen),
                           tuple(c.label for c in COLUMNS if c.key not in chosen and c.key in labels), legend)

    short = attempt(False)
    if agent_counted:
        spelled = attempt(True)
        if spelled.hidden == short.hidden:  # the legend only where it costs no column
            return spelled
    return short


def table_hint(layout: TableLayout, agent_counted: bool) -> str:
    """The line under the fleet table: what the width hides and where to find it; the '*' legend when the
    labels had no room for it. '' when there is nothing to say."""
    parts = []
    if agent_counted and not layout.agent_legend:
        parts.append(f"{AGENT_COUNTED_MARK} counted by the node's agent")
    if layout.hidden:
        parts.append(f"hidden at this width: {' '.join(layout.hidden)} · enter shows them for a node")
    return " · ".join(parts)


def no_match_line(text: str) -> str:
    return f"no node matches '{text}' — esc clears"




def bar(ratio: float | None, width: int = BAR_WIDTH, simulated: bool = False) -> str:
    """'███▌   72%': a bar of `width` cells with eighth-blocks, then the percentage; '—' when unknown.

    `simulated`: the reading is not from a real GPU; the percentage reads '~72%' (same width)."""
    if ratio is None:
        return "—".ljust(width + 5)
    r = min(max(ratio, 0.0), 1.0)
    eighths = round(r * width * 8)
    full, part = divmod(eighths, 8)
    s = "█" * full + (_BLOCKS[part] if part and full < width else "")
    pct = f"{round(r * 100)}%"
    return f"{s.ljust(width)}{(SIM_MARK + pct) if simulated else pct:>5}"


def bar_style(ratio: float | None) -> str:
    if ratio is None:
        return DIM
    return "bold red" if ratio >= HOT_RATIO else "yellow" if ratio >= 0.7 else "green"


def sparkline(values: Sequence[float | None], width: int, top: float | None = None, bottom: float = 0.0) -> str:
    """Last `width` values as block characters scaled from `bottom` to `top` (default: their max); gaps for
    None; a flat series (top == bottom > 0) is a mid-height line. A history shorter than `width` starts at
    the left edge and grows to the right."""
    vals = list(values)[-width:]
    known = [v for v in vals if v is not None]
    hi = top if top is not None else (max(known) if known else 0.0)
    span = hi - bottom
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(_SPARKS[len(_SPARKS) // 2] if hi > 0 else _SPARKS[0])
        else:
            out.append(_SPARKS[min(len(_SPARKS) - 1, max(0, int((v - bottom) / span * (len(_SPARKS) - 1) + 0.5)))])
    return "".join(out).ljust(width)


def seconds(v: float | None) -> str:
    """'240ms', '1.5s', '130s' (asrtop.fleet_wording.response_text: `status` writes response times the same way)."""
    return response_text(v)


def rate(v: float | None) -> str:
    """'12', '3', '2.5' (asrtop.fleet_wording.rate_text: `status` writes rates the same way)."""
    return rate_text(v)


def short_digest(d: str | None) -> str:
    return d[:7] if d else "—"


@dataclass(frozen=True)
class TableContext:
    """Fleet-wide facts a row needs: hash group colours, the target model, drains in progress, selection."""

    now: float
    group_style: Mapping[str, str]
    target: str | None
    minority: frozenset[str]
    draining: Mapping[str, DrainProgress | None]  # node -> what its drain watcher saw last (None: nothing yet)
    selected: frozenset[str]
    gpu_simulated: bool = False  # some node's GPU readings are simulated: the GPU columns say so
    agent_counted: bool = False  # some node's request figures are counted by its agent: req/s, 5xx, resp say so
    critical: frozenset[str] = frozenset()  # nodes with a critical problem (asrtop.problems.words.critical_nodes)
    streams: bool = False  # some node's agent reports streams: the streams column shows
    names_width: int = NAME_WIDTH_MIN  # the name column's width for the fleet's longest name (name_width)


@dataclass(frozen=True)
class ModelFacts:
    groups: tuple[ModelGroup, ...]
    target: str | None  # the digest the fleet must run (cluster.model_sha256, else the majority)
    differing: frozenset[str]  # nodes whose known digest is not the target's (FleetSnapshot's rule)


_models_memo: tuple = (None, None)  # (snapshot, ModelFacts): header and table share one computation


def model_facts(snap: FleetSnapshot) -> ModelFacts:
    """snap.model_groups() and what follows from it, computed once per snapshot. The memo is one tuple, read
    and replaced whole: the refresh thread and the UI thread both ask (asrtop.tui.refresh)."""
    global _models_memo
    memo = _models_memo
    if memo[0] is snap:
        return memo[1]
    facts = ModelFacts(snap.model_groups(), snap.target_digest, frozenset(snap.nodes_differing_from_target()))
    _models_memo = (snap, facts)
    return facts


def table_context(snap: FleetSnapshot, draining: Mapping[str, DrainProgress | None] = {},
                  selected: Iterable[str] = (), critical: Iterable[str] = ()) -> TableContext:
    facts = model_facts(snap)
    groups = [g for g in facts.groups if g.digest is not None]
    styles = {g.digest: GROUP_STYLES[i % len(GROUP_STYLES)] for i, g in enumerate(groups)}
    return TableContext(snap.taken_at, styles, facts.target, facts.differing, dict(draining), frozenset(selected),
                        any(gpu_simulated(n) for n in snap.nodes),
                        bool(snap.nodes_agent_counted), frozenset(critical), streams_total(snap.nodes) is not None,
                        name_width(n.name for n in snap.nodes))  # in the refresh thread: a pass over every node


def gpu_simulated(node: NodeView) -> bool:
    """The node's GPU readings come from the agent's simulator, not from a real GPU."""
    st = node.status
    return st is not None and st.gpu_source == "simulated" and bool(st.gpus)


def _gpu_facts(node: NodeView) -> tuple[float | None, float | None, float | None, float | None]:
    """(mean util, max memory ratio, max temperature, total power) over the node's GPUs."""
    st = node.status
    if st is None or not st.gpus:
        return None, None, None, None
    utils = [g.utilization_ratio for g in st.gpus if g.utilization_ratio is not None]
    mems = [m for m in (g.memory_ratio for g in st.gpus) if m is not None]
    temps = [g.temperature_celsius for g in st.gpus if g.temperature_celsius is not None]
    powers = [g.power_watts for g in st.gpus if g.power_watts is not None]
    return (sum(utils) / len(utils) if utils else None, max(mems) if mems else None,
            max(temps) if temps else None, sum(powers) if powers else None)


def agent_unreachable(node: NodeView) -> bool:
    """Greyed row: an agent is configured but has not answered for 3 refreshes (or never)."""
    return node.config.agent is not None and node.stale


def state_cell(node: NodeView) -> Cell:
    """The node's state word (asrtop.fleet_wording.state_word, as `asrtop status` says it), styled by its tone.
    DOWN and MIXED are bold as well as coloured, so they stand out under NO_COLOR too."""
    word = state_word(node)
    return word.short, {"ok": "green", "busy": "yellow", "out": "bright_blue", "alarm": "bold red",
                        "split": "bold magenta", "changing": "bold yellow"}.get(word.tone, DIM)


def row_cells(node: NodeView, ctx: TableContext) -> tuple[Cell, ...]:
    """One table row, in COLUMNS order."""
    grey = agent_unreachable(node)
    util, mem, temp, power = _gpu_facts(node)
    sim = gpu_simulated(node)
    st = node.status
    digest = node.model_digest
    if digest is None:
        model: Cell = ((st.model.state if st is not None else "—")[:8], DIM)
    elif node.name in ctx.minority:
        model = (short_digest(digest) + "!", f"{ALARM} {ctx.group_style.get(digest, 'red')}")
    else:
        model = (short_digest(digest), ctx.group_style.get(digest, ""))
    inflight = node.in_flight
    if node.name in ctx.draining:  # what the drain watcher counts (the controller's rule), else ours
        seen = ctx.draining[node.name]
        left = inflight if seen is None else seen.in_flight
        infl: Cell = (f"↓{left if left is not None else '?'}", "bold yellow")
    else:
        infl = (str(inflight) if inflight is not None else "—", "")
    resp = node.response_seconds
    agent = agent_age(node, ctx.now)  # `status`'s AGENT words, the 5-wide form
    agent_cell: Cell = (agent.short, _AGE_STYLE[agent.tone])
    backup = node.backup
    weight = node.weight
    errors = node.errors_5xx
    cpu = st.host.cpu_ratio if st is not None else None
    mark = AGENT_COUNTED_MARK if node.agent_counted else ""
    cells = (
        _mark_cell(node.name, ctx, grey),
        (node.name, "bold"),
        state_cell(node),
        infl,
        _streams_cell(node, node.name in ctx.draining) if ctx.streams else _NO_STREAMS,
        _marked(mark, rate(node.request_rate), node.request_rate, ""),
        _marked(mark, str(errors) if errors is not None else "—", errors, "bold red" if errors else ""),
        _marked(mark, response_text(resp), resp, ""),
        _bar_cell(util, sim),
        _bar_cell(mem, sim),
        model,
        (str(weight) if weight is not None else ("MIX" if node.servers else "—"), ""),
        ("bk" if backup else ("?" if backup is None and node.servers else ""), "cyan"),
        (f"{temp:.0f}°" if temp is not None else "—", f"{ALARM} red" if (temp or 0) >= HOT_TEMP else ""),
        (f"{power:.0f}W" if power is not None else "—", ""),
        (f"{cpu * 100:.0f}%" if cpu is not None else "—", ""),
        agent_cell,
    )
    if grey:  # keep the text (and the markers), lose the colour: the row reads as "not live"
        cells = tuple((c[0], c[1] if k in ("sel", "age") else DIM) for c, k in zip(cells, COLUMN_KEYS))
    return cells


_AGE_STYLE = {OK_TONE: "", QUIET_TONE: DIM, ALARM_TONE: "bold red"}  # fleet_wording.agent_age's tones
_NO_STREAMS: Cell = ("—", DIM)  # no agent reports streams: the column is not shown (nothing to work out)


def _streams_cell(node: NodeView, draining: bool) -> Cell:
    """asrtop.fleet_wording.streams_cell (as `status` writes it); a draining node's live streams stand out."""
    text = streams_cell(node)
    return text, ("bold yellow" if draining and node.streams_open else DIM if text == "—" else "")


def _mark_cell(name: str, ctx: TableContext, grey: bool) -> Cell:
    """The first column: selected (the actions' targets) before a critical problem before a stale agent."""
    if name in ctx.selected:
        return "●", "bold cyan"
    if name in ctx.critical:
        return CRITICAL_MARK, f"{ALARM} red"
    return ("!", "bold red") if grey else (" ", "")


def _marked(mark: str, text: str, value: object, style: str) -> Cell:
    """A request figure, after AGENT_COUNTED_MARK when the agent counted it (never on an unknown '—')."""
    return (mark + text if mark and value is not None else text), style


def _bar_cell(ratio: float | None, simulated: bool) -> Cell:
    style = bar_style(ratio)
    text = bar(ratio, simulated=simulated)
    return (text, style, ALARM) if ratio is not None and ratio >= HOT_RATIO else (text, style)


def sort_value(node: NodeView, column: str, now: float):
    """Comparable key for sorting by `column`; unknown values sort first (as the smallest)."""
    util, mem, temp, power = _gpu_facts(node)
    st = node.status

    def num(v):
        return (0, 0.0) if v is None else (1, float(v))

    if column in ("sel", "name"):
        return (1, node.name)
    if column == "state":
        return (1, node.admin_state)
    if column == "model":
        return (1, node.model_digest or "")
    if column == "backup":
        return num(None if node.backup is None else int(node.backup))
    value = {
        "inflight": node.in_flight, "streams": node.streams_open, "rps": node.request_rate, "gpu": util, "mem": mem,
        "weight": node.weight, "5xx": node.errors_5xx, "rt": node.response_seconds, "temp": temp,
        "power": power, "cpu": st.host.cpu_ratio if st is not None else None, "age": node.agent_age(now),
    }.get(column)
    return num(value)


def matches_filter(node: NodeView, text: str) -> bool:
    """Case-insensitive substring over name, state and model digest."""
    if not text:
        return True
    t = text.lower()
    return (t in node.name.lower() or t in node.admin_state.lower()
            or (node.model_digest or "").lower().startswith(t))
