"""Node detail (Enter): GPUs with processes, sparklines, ASR process, model, versions, balancers, audit."""

from __future__ import annotations

import textwrap
import time
from typing import Any, Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static

from asrtop.control.model import ACTION_KINDS
from asrtop.control.audit import AuditEntry
from asrtop.fleet import TARGET_FROM_CONFIG, FleetSnapshot, NodeView
from asrtop.fleet_wording import streams_detail
from asrtop.history import FleetHistory
from asrtop.modelfiles import human_bytes
from asrtop.problems.model import Problem
from asrtop.problems.words import of_node, problem_words
from asrtop.traffic import REQUESTS_SOURCE_WORDS
from asrtop.tui.format import DIM, bar, bar_style, rate, seconds, sparkline, state_cell
from asrtop.tui.widgets.keybar import KeyBar
from asrtop.tui.problem_lines import severity_style

SPARK_WIDTH = 48
KEY_WIDTH = 16  # "  " + the 14-column key of a key/value line
PROBLEM_INDENT = 20  # "  CRIT  since 12m   ": a problem's text and action wrap under the text


def _audit_line(e: AuditEntry) -> str:
    when = time.strftime("%m-%d %H:%M:%S", time.localtime(e.at)) if e.at is not None else e.time
    parts = [when, e.action, "" if e.value is None else str(e.value), e.outcome, e.message]
    return "  ".join(p for p in parts if p)


def version_rows(versions: Mapping[str, Any], agent_version: str | None) -> list[tuple[str, str]]:
    """What the agent reports, absent left out (no `cuda None`, no `packages {}`); a mapping on one line."""
    rows = [("agent", agent_version)] if agent_version else []
    for k, v in sorted(versions.items()):
        if isinstance(v, Mapping):
            v = "  ".join(f"{pk} {pv}" for pk, pv in sorted(v.items()) if pv not in (None, ""))
        if v in (None, "") or (k == "agent" and str(v) == agent_version):
            continue
        rows.append((k[:14], str(v)))
    return rows


def hanging(text: str, indent: int, cols: int) -> str:
    """`text` wrapped to `cols` columns, its continuation lines indented by `indent` (not back at column 0)."""
    room = max(20, cols - indent)
    return f"\n{' ' * indent}".join(textwrap.wrap(text, room, break_long_words=True, break_on_hyphens=False)
                                    or [""])


def render_detail(node: NodeView, snap: FleetSnapshot, history: FleetHistory, audit: Sequence[AuditEntry] | None,
                  audit_error: str | None = None, width: int = SPARK_WIDTH, cols: int = 200,
                  problems: Sequence[Problem] = (), colour: bool = True) -> Text:
    """`width`: the sparklines' length; `cols`: the screen's, long values wrap under themselves within it.
    `problems`: the node's own (asrtop.problems.words.of_node), listed first: what is wrong before the figures."""
    t = Text()

    def head(s: str) -> None:
        t.append(f"\n{s}\n", "bold underline")

    def kv(k: str, v: str, style: str = "") -> None:
        t.append(f"  {k:<14}", DIM)
        t.append(f"{hanging(v, KEY_WIDTH, cols)}\n", style or None)

    st = node.status
    state, style = state_cell(node)
    t.append(f"{node.name}", "bold")
    t.append("  ")
    t.append(state, style or None)
    t.append(f"  health {node.health}  weight {node.weight if node.weight is not None else 'MIXED/—'}"
             f"  {'backup' if node.backup else 'primary'}\n")
    if node.config.agent is None:
        t.append("no agent configured for this node: balancer facts only\n", DIM)
    elif node.agent is not None and node.agent.error:
        t.append(f"agent {node.config.agent}: {node.agent.error}", "bold red")
        t.append("  (STALE: showing last good status)\n" if node.stale else "\n", "bold red")
    elif node.stale:
        t.append(f"agent {node.config.agent}: no answer yet\n", "bold red")

    if problems:
        head("Problems")
        for p in problems:
            w = problem_words(p, snap.taken_at)
            t.append("  ")
            t.append(w.severity, severity_style(p.severity, colour))
            t.append(f"  since {w.age:<5} ", DIM)
            t.append(hanging(w.text, PROBLEM_INDENT, cols) + "\n")
            if w.action:
                t.append(" " * PROBLEM_INDENT + hanging(w.action, PROBLEM_INDENT, cols) + "\n", "bold")

    times = history.timestamps()
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    head(f"History (last {span:.0f} s)")
    sim = "~" if st is not None and st.gpu_source == "simulated" else ""  # see the GPUs section
    # Scaled to the window's own min..max (shown after the line): a busy node's in-flight or GPU figures stay
    # near their top, and on a 0..max scale that is a row of solid blocks with no shape.
    for label, name, fmt in (("in-flight", "in_flight", lambda v: f"{v:.0f}"),
                             ("req/s", "req_rate", rate),
                             ("5xx/s", "err_rate", rate),
                             ("GPU util", "gpu_util", lambda v: f"{sim}{v * 100:.0f}%"),
                             ("GPU memory", "gpu_mem", lambda v: f"{sim}{v * 100:.0f}%")):
        series = history.series(node.name, name)[-width:]
        known = [v for v in series if v is not None]
        last = known[-1] if known else None
        t.append(f"  {label:<11}", DIM)
        t.append(f"{fmt(last) if last is not None else '—':>6}  ")
        t.append(sparkline(series, width, max(known) if known else None, min(known) if known else 0.0), "cyan")
        lo, hi = (min(known), max(known)) if known else (None, None)
        t.append(("" if lo is None else f"  {fmt(lo)}" if lo == hi else f"  {fmt(lo)}–{fmt(hi)}") + "\n", DIM)
    if node.requests_source is not None:  # who counted the request figures (nginx counts none: the agent)
        t.append(f"  {'req/s, 5xx/s':<13}{REQUESTS_SOURCE_WORDS[node.requests_source]}\n", DIM)

    head("GPUs")
    if st is None:
        t.append("  no agent status\n", DIM)
    elif not st.gpus:
        t.append(f"  none ({st.gpu_source}{': ' + st.gpu_error if st.gpu_error else ''})\n", DIM)
    else:
        for g in st.gpus:
            mem = g.memory_ratio
            t.append(f"  GPU{g.index} {g.name or '?'}\n        util ")  # the whole name, on its own line
            t.append(bar(g.utilization_ratio, simulated=bool(sim)), bar_style(g.utilization_ratio))
            t.append("  mem ")
            t.append(bar(mem, simulated=bool(sim)), bar_style(mem))
            temp = f"{g.temperature_celsius:.0f}°C" if g.temperature_celsius is not None else "—"
            power = f"{g.power_watts:.0f}W" if g.power_watts is not None else "—"
            limit = f"/{g.power_limit_watts:.0f}W" if g.power_limit_watts is not None else ""
            t.append(f"\n        {human_bytes(g.memory_used_bytes)}/{human_bytes(g.memory_total_bytes)}"
                     f"  {temp}  {power}{limit}\n")
            for p in g.processes:
                t.append(f"      pid {p.pid:<8} {p.name or '?':<20} {human_bytes(p.gpu_memory_bytes)}\n", DIM)
        if st.gpu_source == "simulated":
            t.append("  (~ simulated GPU readings, not a real GPU)\n", "magenta")

    if st is not None:
        a = st.asr
        head("ASR process")
        kv("url", f"{a.url or '—'}  {'up' if a.up else 'DOWN' if a.up is False else '?'}"
           f"  probe {seconds(a.probe_latency_seconds)}", "" if a.up is not False else "bold red")
        if a.error:
            kv("error", a.error, "red")
        cpu = f"{a.process_cpu_ratio * 100:.0f}%" if a.process_cpu_ratio is not None else "—"
        kv("pid/cpu/rss", f"{a.pid or '—'} / {cpu} / {human_bytes(a.process_rss_bytes)}")
        kv("in-flight", f"{a.in_flight if a.in_flight is not None else '—'} ({a.in_flight_source or 'unknown'})")
        live = streams_detail(node)  # None: the agent reports no streams (no stream port)
        if live is not None:
            kv("streams", live, "bold yellow" if node.admin_state == "drain" and node.streams_open else "")
        if a.probe_kind:
            kv("probe", f"{a.probe_kind} {a.probe_target or ''}".rstrip())
        r = a.requests
        if r is not None:
            classes = " ".join(f"{k}:{v}" for k, v in sorted(r.by_class.items()))
            kv("requests", f"{r.total if r.total is not None else '—'}  {classes}  "
               f"p50 {seconds(r.latency_p50_seconds)} p95 {seconds(r.latency_p95_seconds)}")
        h = st.host
        hcpu = f"{h.cpu_ratio * 100:.0f}%" if h.cpu_ratio is not None else "—"
        load = f"{h.load1:.2f}" if h.load1 is not None else "—"
        kv("host", f"cpu {hcpu}  load {load}  "
           f"mem {human_bytes(h.memory_used_bytes)}/{human_bytes(h.memory_total_bytes)}")

        m = st.model
        head("Model")
        target = snap.target_digest
        which = "cluster.model_sha256" if snap.target_source == TARGET_FROM_CONFIG else "majority"
        same = m.sha256 is not None and m.sha256 == target
        kv("state", m.state, "" if m.state == "ok" else "yellow")
        kv("digest", f"{m.sha256 or '—'}" + (f"  (fleet {which})" if same else
                                            f"  DIFFERS from {which} {target[:12]}" if m.sha256 and target else ""),
           "green" if same else "bold red" if m.sha256 and target else "")
        kv("files", f"{m.files if m.files is not None else '—'} files, {human_bytes(m.bytes)}")
        for d in m.dirs:
            kv("dir", f"{d.path}  {d.state}  {(d.sha256 or '')[:12]}  {d.files or 0} files")
        if m.error:
            kv("error", m.error, "red")

        head("Versions")
        for k, v in version_rows(st.versions, st.agent_version) or [("none", "the agent reported no versions")]:
            kv(k, v)

    head("Balancers")
    if not node.servers:
        t.append("  no balancer knows this node\n", DIM)
    for bname, s in sorted(node.servers.items()):
        kv(bname[:14], f"{s.name} {s.endpoint}  {s.admin.value}/{s.health.value}  weight {s.weight}"
           f"{'  backup' if s.backup else ''}  sessions {s.active_sessions if s.active_sessions is not None else '—'}")

    head("Recent actions (audit log)")
    if audit_error:
        t.append(f"  {audit_error}\n", "red")
    elif audit is None:
        t.append("  loading…\n", DIM)
    elif not audit:
        t.append("  none recorded\n", DIM)
    else:
        for e in audit:
            t.append(f"  {_audit_line(e)}\n")
    return t


class NodeDetailScreen(Screen):
    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("d", "act('drain')", "Drain"),
        Binding("r", "act('ready')", "Ready"),
        Binding("m", "act('maint')", "Maint"),
        Binding("w", "act('weight')", "Weight"),
        Binding("b", "act('backup')", "Backup"),
        Binding("question_mark", "app.help", "Keys", key_display="?"),
    ]

    def __init__(self, node: str, read_only: bool):
        super().__init__()
        self.node = node
        self.read_only = read_only
        self.audit: list[AuditEntry] | None = None
        self.audit_error: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-scroll"):
            yield Static(f"{self.node}: waiting for data…", id="detail")
        yield KeyBar()

    def on_mount(self) -> None:
        self.app.load_audit(self)
        self.show_fleet(self.app.snapshot)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "act" and self.read_only:
            return False
        return True

    def show_fleet(self, snap: FleetSnapshot | None, error: str | None = None) -> None:
        if snap is None:
            return
        try:
            node = snap.node(self.node)
        except KeyError:
            self.query_one("#detail", Static).update(Text(f"{self.node} is no longer in the fleet", "bold red"))
            return
        cols = self.size.width - 4 if self.size.width else 200  # the scroll padding (0 1) and the scrollbar (2)
        width = max(10, min(SPARK_WIDTH, cols - 34)) if self.size.width else SPARK_WIDTH
        with self.app.history_lock:  # the refresh thread records into the history (asrtop.tui.refresh)
            shown = render_detail(node, snap, self.app.history, self.audit, self.audit_error, width, cols,
                                  of_node(self.app.problems, self.node), not self.app.no_color)
        try:
            self.query_one("#detail", Static).update(shown)
        except NoMatches:  # the app is closing: the screen's children go before the screen itself
            pass

    def set_audit(self, entries: list[AuditEntry] | None, error: str | None) -> None:
        self.audit, self.audit_error = entries, error
        self.show_fleet(self.app.snapshot)

    def action_act(self, kind: str) -> None:
        if kind in ACTION_KINDS:
            self.app.start_action(kind, [self.node])

    def action_close(self) -> None:
        self.dismiss()
