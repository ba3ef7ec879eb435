"""PURE: the header's fleet summary as styled segments (no textual; Rich Text is built by the widget)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from asrtop.fleet import MIXED, TARGET_FROM_CONFIG, FleetSnapshot
from asrtop.tui.format import DIM, model_facts, rate, short_digest

Segment = tuple[str, str]


@dataclass(frozen=True)
class Summary:
    total: int
    ready: int
    draining: int
    maint: int
    down: int
    backup: int
    mixed: int
    serving: int  # ready, not down, primary: what carries traffic now
    in_flight: int | None
    request_rate: float | None
    errors_5xx: int | None
    gpu_util: float | None
    gpu_mem: float | None
    groups_known: int
    differing: int
    unknown_model: int
    target: str | None  # the digest the fleet must run
    target_source: str | None  # "cluster.model_sha256" | "majority" | None (digests tie)
    balancers: tuple[tuple[str, str | None], ...]  # (name, error or None)
    taken_at: float
    gpu_nodes: int = 0  # nodes whose GPU readings are in gpu_util / gpu_mem
    gpu_simulated: int = 0  # of those, nodes whose readings are simulated (agent gpu_source "simulated")


def _sum(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def summarize(snap: FleetSnapshot) -> Summary:
    ready = draining = maint = down = backup = mixed = serving = 0
    utils: list[float] = []
    mems: list[float] = []
    gpu_nodes = gpu_sim = 0
    for n in snap.nodes:
        admin, health = n.admin_state, n.health
        ready += admin == "ready"
        draining += admin == "drain"
        maint += admin == "maint"
        mixed += admin == MIXED
        down += health == "down"
        backup += bool(n.backup)
        serving += admin == "ready" and health != "down" and not n.backup
        st = n.status
        if st is not None and not n.stale:
            if st.gpus:
                gpu_nodes += 1
                gpu_sim += st.gpu_source == "simulated"
            for g in st.gpus:
                if g.utilization_ratio is not None:
                    utils.append(g.utilization_ratio)
                if g.memory_ratio is not None:
                    mems.append(g.memory_ratio)
    facts = model_facts(snap)
    groups = facts.groups
    known = [g for g in groups if g.digest is not None]
    unknown = sum(len(g.nodes) for g in groups if g.digest is None)
    return Summary(
        total=len(snap.nodes), ready=ready, draining=draining, maint=maint, down=down, backup=backup,
        mixed=mixed, serving=serving,
        in_flight=_sum(n.in_flight for n in snap.nodes),
        request_rate=_sum(n.request_rate for n in snap.nodes),
        errors_5xx=_sum(n.errors_5xx for n in snap.nodes),
        gpu_util=sum(utils) / len(utils) if utils else None,
        gpu_mem=sum(mems) / len(mems) if mems else None,
        groups_known=len(known), differing=len(facts.differing), unknown_model=unknown,
        target=facts.target, target_source=snap.target_source,
        balancers=tuple((b.name, b.error) for b in snap.balancers),
        taken_at=snap.taken_at, gpu_nodes=gpu_nodes, gpu_simulated=gpu_sim,
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


def model_badge(s: Summary) -> Segment:
    pinned = " (pinned)" if s.target_source == TARGET_FROM_CONFIG else ""
    unknown = f", {s.unknown_model} unknown" if s.unknown_model else ""
    if s.groups_known == 0:
        return (f"model{pinned} {short_digest(s.target)}: no node's model known" if s.target
                else "model unknown"), DIM
    if s.target is None:
        return f"models differ: {s.groups_known} digests, no majority", "bold red reverse"
    if s.differing == 0:
        return f"model{pinned} {short_digest(s.target)}: all nodes same model{unknown}", \
            "bold yellow" if s.unknown_model else "bold green"
    verb = "node differs" if s.differing == 1 else "nodes differ"
    return f"{s.differing} {verb} from model{pinned} {short_digest(s.target)}!{unknown}", "bold red reverse"


def header_lines(s: Summary, cluster: str, read_only: bool, error: str | None = None,
                 draining: dict[str, int | None] | None = None, trend: str = "") -> list[list[Segment]]:
    """Three lines of (text, style) segments; the first two fit 80 columns.

    `draining`: drains this console started and still follows (node -> in-flight last seen).
    `trend`: a short sparkline of the fleet's in-flight total."""
    line1: list[Segment] = [(f"{cluster} ", "bold"), (f"{s.total} nodes: ", "")]
    line1 += [(f"{s.ready} ready", "green"), (" · ", DIM), (f"{s.draining} drain", "yellow" if s.draining else ""),
              (" · ", DIM), (f"{s.maint} maint", "red" if s.maint else ""), (" · ", DIM),
              (f"{s.down} down", "bold red" if s.down else ""), (" · ", DIM), (f"{s.backup} backup", "cyan")]
    if s.mixed:
        line1 += [(" · ", DIM), (f"{s.mixed} MIXED", "bold magenta")]
    line2: list[Segment] = [
        ("in-flight ", DIM), ("—" if s.in_flight is None else str(s.in_flight), "bold"),
        (f" {trend}" if trend else "", "cyan"), (f" on {s.serving} serving", ""), ("  req/s ", DIM), (rate(s.request_rate), "bold"),
        ("  5xx ", DIM), ("—" if s.errors_5xx is None else str(s.errors_5xx), "bold red" if s.errors_5xx else "bold"),
        ("  gpu ", DIM), (_pct(s.gpu_util), "bold"), ("  gmem ", DIM), (_pct(s.gpu_mem), "bold"),
    ]
    sim = gpu_sim_label(s)
    if sim:  # simulated GPU readings are never shown as if they were real
        line2.append((sim, "bold magenta"))
    line3: list[Segment] = [model_badge(s), ("  ", "")]
    for name, err in s.balancers:
        line3.append((f"{name} ✓ ", "green") if err is None else (f"{name} ✗ UNREACHABLE ", "bold red reverse"))
    line3.append((time.strftime("%H:%M:%S", time.localtime(s.taken_at)), DIM))
    if read_only:
        line3.append(("  READ-ONLY", "bold yellow"))
    for node, left in sorted((draining or {}).items()):
        line2.append((f"  ↓ {node} draining: {'?' if left is None else left} left", "bold yellow"))
    if error:
        line3.append((f"  refresh failed: {error}", "bold red"))
    return [line1, line2, line3]
