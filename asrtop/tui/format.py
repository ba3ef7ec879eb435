"""PURE formatting for the console: numbers, bars, sparklines and the fleet table's cells.

No textual here: a cell is a (text, style) pair, so the table can compare cheaply and build Rich
Text only for cells that changed (the 1,000-node refresh budget depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from asrtop.fleet import FleetSnapshot, ModelGroup, NodeView
from asrtop.fleet_wording import state_word
from asrtop.modelfiles import human_bytes  # noqa: F401  (the console's byte wording, shared with the model guard)

Cell = tuple[str, str]  # (text, rich style)

BAR_WIDTH = 5
_BLOCKS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"
# Hash group colours: the target first; the rest cycle. Text markers carry the meaning under NO_COLOR.
GROUP_STYLES = ("green", "yellow", "magenta", "cyan", "red", "bright_blue")
DIM = "grey50"
SIM_MARK = "~"  # before a GPU percentage read from a simulated GPU (agent gpu_source "simulated")
SIM_LABELS = {"gpu": "gpu ~=sim", "mem": "gmem ~=sim"}  # column labels while any node's GPU is simulated


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int


# Most important first so that 80 columns show name, state, load, GPU and model without scrolling.
COLUMNS: tuple[Column, ...] = (
    Column("sel", " ", 1),
    Column("name", "node", 12),
    Column("state", "state", 5),
    Column("inflight", "infl", 5),
    Column("rps", "req/s", 5),
    Column("gpu", "gpu", 10),
    Column("mem", "gmem", 10),
    Column("model", "model", 8),
    Column("weight", "wt", 3),
    Column("backup", "bk", 2),
    Column("5xx", "5xx", 4),
    Column("rt", "resp", 5),
    Column("temp", "temp", 4),
    Column("power", "power", 5),
    Column("cpu", "cpu", 4),
    Column("age", "agent", 5),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)


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
    return "red" if ratio >= 0.9 else "yellow" if ratio >= 0.7 else "green"


def sparkline(values: Sequence[float | None], width: int, top: float | None = None) -> str:
    """Last `width` values as block characters scaled to `top` (default: their max); gaps for None.
    A history shorter than `width` starts at the left edge and grows to the right."""
    vals = list(values)[-width:]
    known = [v for v in vals if v is not None]
    hi = top if top is not None else (max(known) if known else 0.0)
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif hi <= 0:
            out.append(_SPARKS[0])
        else:
            out.append(_SPARKS[min(len(_SPARKS) - 1, max(0, int(v / hi * (len(_SPARKS) - 1) + 0.5)))])
    return "".join(out).ljust(width)


def seconds(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 1:
        return f"{v * 1000:.0f}ms"
    if v < 100:
        return f"{v:.1f}s"
    return f"{v:.0f}s"


def age(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 60:
        return f"{v:.0f}s"
    if v < 3600:
        return f"{v / 60:.0f}m"
    return f"{v / 3600:.0f}h"


def rate(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.1f}"


def short_digest(d: str | None) -> str:
    return d[:7] if d else "—"


@dataclass(frozen=True)
class TableContext:
    """Fleet-wide facts a row needs: hash group colours, the target model, drains in progress, selection."""

    now: float
    group_style: Mapping[str, str]
    target: str | None
    minority: frozenset[str]
    draining: Mapping[str, int | None]  # node -> in-flight last reported by its drain watcher
    selected: frozenset[str]
    gpu_simulated: bool = False  # some node's GPU readings are simulated: the GPU columns say so


@dataclass(frozen=True)
class ModelFacts:
    groups: tuple[ModelGroup, ...]
    target: str | None  # the digest the fleet must run (cluster.model_sha256, else the majority)
    differing: frozenset[str]  # nodes whose known digest is not the target's (FleetSnapshot's rule)


_models_memo: list = [None, None]  # (snapshot, ModelFacts): header and table share one computation


def model_facts(snap: FleetSnapshot) -> ModelFacts:
    """snap.model_groups() and what follows from it, computed once per snapshot."""
    if _models_memo[0] is snap:
        return _models_memo[1]
    facts = ModelFacts(snap.model_groups(), snap.target_digest, frozenset(snap.nodes_differing_from_target()))
    _models_memo[:] = [snap, facts]
    return facts


def table_context(snap: FleetSnapshot, draining: Mapping[str, int | None] = {},
                  selected: Iterable[str] = ()) -> TableContext:
    facts = model_facts(snap)
    groups = [g for g in facts.groups if g.digest is not None]
    styles = {g.digest: GROUP_STYLES[i % len(GROUP_STYLES)] for i, g in enumerate(groups)}
    return TableContext(snap.taken_at, styles, facts.target, facts.differing, dict(draining), frozenset(selected),
                        any(gpu_simulated(n) for n in snap.nodes))


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
        model = (short_digest(digest) + "!", "bold " + ctx.group_style.get(digest, "red"))
    else:
        model = (short_digest(digest), ctx.group_style.get(digest, ""))
    inflight = node.in_flight
    if node.name in ctx.draining:  # what the drain watcher counts (the controller's rule), else ours
        left = ctx.draining[node.name]
        left = inflight if left is None else left
        infl: Cell = (f"↓{left if left is not None else '?'}", "bold yellow")
    else:
        infl = (str(inflight) if inflight is not None else "—", "")
    resp = node.response_seconds
    if node.config.agent is None:
        agent_cell: Cell = ("none", DIM)
    elif grey:
        agent_cell = ("stale", "bold red")
    else:
        agent_cell = (age(node.agent_age(ctx.now)), "")
    backup = node.backup
    weight = node.weight
    errors = node.errors_5xx
    cpu = st.host.cpu_ratio if st is not None else None
    cells = (
        ("●", "bold cyan") if node.name in ctx.selected else ("!", "bold red") if grey else (" ", ""),
        (node.name, "bold"),
        state_cell(node),
        infl,
        (rate(node.request_rate), ""),
        (bar(util, simulated=sim), bar_style(util)),
        (bar(mem, simulated=sim), bar_style(mem)),
        model,
        (str(weight) if weight is not None else ("MIX" if node.servers else "—"), ""),
        ("bk" if backup else ("?" if backup is None and node.servers else ""), "cyan"),
        (str(errors) if errors is not None else "—", "red" if errors else ""),
        (seconds(resp) if resp is not None else "—", ""),
        (f"{temp:.0f}°" if temp is not None else "—", "red" if temp is not None and temp >= 85 else ""),
        (f"{power:.0f}W" if power is not None else "—", ""),
        (f"{cpu * 100:.0f}%" if cpu is not None else "—", ""),
        agent_cell,
    )
    if grey:  # keep the text (and the markers), lose the colour: the row reads as "not live"
        cells = tuple((t, s if k in ("sel", "age") else DIM) for (t, s), k in zip(cells, COLUMN_KEYS))
    return cells


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
        "inflight": node.in_flight, "rps": node.request_rate, "gpu": util, "mem": mem,
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
