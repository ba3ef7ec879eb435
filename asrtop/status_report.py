"""`asrtop status`: one FleetSnapshot as a compact table + summary line, or as JSON (schema in README).

PURE (snapshot in, text out) and light: imported on the fast `asrtop status` path, so nothing heavy here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from asrtop.fleet import (AGENT_COUNTED_MARK, MIXED, REQUESTS_FROM_AGENT, TARGET_FROM_CONFIG, FleetSnapshot,
                          NodeView)
from asrtop.fleet_wording import (OK, QUIET, RECREATE, StateWord, agent_age, balancer_link, in_flight_total,
                                  model_line, rate_text, response_text, state_counts, state_word, streams_cell,
                                  streams_total)
from asrtop.traffic import REQUESTS_SOURCE_WORDS

JSON_SCHEMA = 1
SIM_MARK = "~"  # before GPU% and GPU MEM of a node whose GPU readings are simulated
COLUMNS = ("NODE", "STATE", "WEIGHT", "BACKUP", "HEALTH", "INFL", "REQ/S", "5XX", "RESP", "GPU%", "GPU MEM",
           "MODEL", "AGENT")


def _gpu(view: NodeView, st: Any = False) -> tuple[float | None, int | None, int | None]:
    """(mean utilization ratio, memory used bytes, memory total bytes) over the node's GPUs; None = unknown.
    `st`: the node's status when the caller has it (one read per node: `status` does this 1,000s of times)."""
    if st is False:
        st = view.status
    if st is None or not st.gpus:
        return None, None, None
    utils, used, total = [], [], []
    for g in st.gpus:
        if g.utilization_ratio is not None:
            utils.append(g.utilization_ratio)
        if g.memory_used_bytes is not None:
            used.append(g.memory_used_bytes)
        if g.memory_total_bytes is not None:
            total.append(g.memory_total_bytes)
    return (sum(utils) / len(utils) if utils else None, sum(used) if used else None,
            sum(total) if total else None)


def _simulated(view: NodeView, st: Any = False) -> bool:
    """GPU readings from the agent's simulator (gpu_source "simulated"), not from a real GPU."""
    if st is False:
        st = view.status
    return st is not None and st.gpu_source == "simulated" and bool(st.gpus)


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f}"


def _num(v: float | int | None, fmt: str = "{}") -> str:
    return "-" if v is None else fmt.format(v)


def _request_cells(view: NodeView) -> tuple[str, str, str]:
    """REQ/S, 5XX, RESP: AGENT_COUNTED_MARK before the known ones the agent counted."""
    mark = AGENT_COUNTED_MARK if view.agent_counted else ""

    def marked(cell: str) -> str:
        return cell if cell == "-" else mark + cell

    return (marked(rate_text(view.request_rate, "-")), marked(_num(view.errors_5xx)),
            marked(response_text(view.response_seconds, "-")))


def _model_cell(view: NodeView, target: str | None, st: Any = False) -> str:
    if st is False:
        st = view.status
    if st is None:
        return "-"
    if st.model.state != "ok" or not st.model.sha256:
        return st.model.state
    mark = "" if target is None or st.model.sha256 == target else "!"
    return st.model.sha256[:12] + mark


STREAMS_AFTER = COLUMNS.index("INFL") + 1  # the STREAMS column, only while some node's agent reports streams


def columns(snap: FleetSnapshot) -> tuple[str, ...]:
    if streams_total(snap.nodes) is None:
        return COLUMNS
    return (*COLUMNS[:STREAMS_AFTER], "STREAMS", *COLUMNS[STREAMS_AFTER:])


def rows(snap: FleetSnapshot, words: list[StateWord] | None = None,
         simulated: list[bool] | None = None) -> list[tuple[str, ...]]:
    """The table's rows; `words`: state_word of each node when the caller has them (render_table); `simulated`,
    when given, is filled with _simulated of each node (render_table's legend)."""
    target = snap.target_digest
    streams = streams_total(snap.nodes) is not None
    out = []
    for v, word in zip(snap.nodes, words if words is not None else map(state_word, snap.nodes)):
        st = v.status
        util, used, total = _gpu(v, st)
        is_sim = _simulated(v, st)
        if simulated is not None:
            simulated.append(is_sim)
        sim = SIM_MARK if is_sim else ""  # simulated readings never pass for real ones
        mem = "-" if used is None else f"{sim}{_gib(used)}/{_gib(total)}G"
        pct = _num(None if util is None else util * 100, sim + "{:.0f}")
        backup = "-" if v.backup is None else ("yes" if v.backup else "no")
        live = (streams_cell(v).replace("—", "-"),) if streams else ()  # the console's cell, as `status` writes
        out.append((v.name, word.text, _num(v.weight), backup, v.health, _num(v.in_flight), *live,
                    *_request_cells(v), pct, mem, _model_cell(v, target, st), agent_age(v, snap.taken_at).text))
    return out


def summary(snap: FleetSnapshot, words: list[StateWord] | None = None) -> str:
    states = state_counts(snap.nodes, words).text()  # the console header's counts, worded once
    reach = [b for b in snap.balancers if b.reachable]
    parts = [f"{len(snap.nodes)} nodes" + (f" ({states})" if states else ""), in_flight_total(snap.nodes).text(),
             f"balancers {len(reach)}/{len(snap.balancers)} reachable"]
    streams = streams_total(snap.nodes)  # the console header's count, worded once
    if streams is not None:
        parts.insert(2, streams.text())
    model = model_line(snap)  # the console header's model line, worded once
    if model.tone != QUIET or snap.target_source == TARGET_FROM_CONFIG:
        parts.append(model.text + (f" ({model.detail})" if model.detail and model.tone != OK else ""))
    return "; ".join(parts)


def render_table(snap: FleetSnapshot) -> str:
    words = [state_word(v) for v in snap.nodes]  # once per node: for the rows, the notes below and the counts
    sims: list[bool] = []
    table = [columns(snap), *rows(snap, words, sims)]
    line = "  ".join(f"{{:<{max(map(len, cells))}}}" for cells in zip(*table)).format  # one format for all rows
    lines = [line(*r).rstrip() for r in table]
    for v, w in zip(snap.nodes, words):  # say who disagrees rather than just "MIXED", and what a re-create is
        word = w.text
        if word == MIXED:
            lines.append(f"  {v.name}: " + ", ".join(f"{b} {s.admin.value}" for b, s in sorted(v.servers.items())))
        elif word == RECREATE:
            lines.append(f"  {v.name}: {RECREATE}: {v.changing}")
    for b in snap.balancers:  # each balancer: why it could not be read (the error names socket or host), or
        if not b.reachable:  # how it is reached and how long its read took
            lines.append(f"  {b.name}: UNREACHABLE: {b.problem}")
        elif b.transport or b.latency is not None:
            lines.append(f"  {b.name}: {balancer_link(b)}")
    simulated = [v.name for v, sim in zip(snap.nodes, sims) if sim]
    if simulated:
        lines.append(f"  {SIM_MARK}: simulated GPU readings, not a real GPU: "
                     + ("all nodes" if len(simulated) == len(snap.nodes) else ", ".join(simulated)))
    counted = snap.nodes_agent_counted
    if counted:
        lines.append(f"  {AGENT_COUNTED_MARK}: {REQUESTS_SOURCE_WORDS[REQUESTS_FROM_AGENT]}: "
                     + ("all nodes" if len(counted) == len(snap.nodes) else ", ".join(counted)))
    for n in snap.notes:
        lines.append(f"  note: {n}")
    lines.append(summary(snap, words))
    return "\n".join(lines)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def node_json(snap: FleetSnapshot, v: NodeView) -> dict[str, Any]:
    util, used, total = _gpu(v)
    st = v.status
    agent = None
    if v.config.agent is not None:
        agent = {"url": v.config.agent, "age_seconds": v.agent_age(snap.taken_at), "stale": v.stale,
                 "error": v.agent.error if v.agent else None}
    return {
        "name": v.name,
        "state": v.admin_state,
        "states": {b: s.admin.value for b, s in sorted(v.servers.items())},
        "weight": v.weight,
        "backup": v.backup,
        "health": v.health,
        "in_flight": v.in_flight,
        "streams_open": v.streams_open,  # null: the agent reports no streams (unknown, not 0)
        "oldest_stream_seconds": v.oldest_stream_seconds,
        "request_rate": v.request_rate,
        "errors_5xx_total": v.errors_5xx,
        "errors_5xx_rate": v.errors_5xx_rate,
        "response_seconds": v.response_seconds,
        "audio_rate": v.audio_rate,
        "requests_source": v.requests_source,  # "balancer" | "agent" (the balancer counts none) | null
        "gpu_utilization_ratio": util,
        "gpu_memory_used_bytes": used,
        "gpu_memory_total_bytes": total,
        "gpu_source": st.gpu_source if st else None,
        "model_sha256": st.model.sha256 if st else None,
        "model_state": st.model.state if st else None,
        "agent": agent,
        "changing": v.changing,
    }


def status_json(snap: FleetSnapshot, cluster: str) -> dict[str, Any]:
    counts = {"ready": 0, "drain": 0, "maint": 0, "MIXED": 0, "unknown": 0}
    for v in snap.nodes:
        counts[v.admin_state] = counts.get(v.admin_state, 0) + 1
    inflight = in_flight_total(snap.nodes)
    streams = streams_total(snap.nodes)
    return {
        "schema": JSON_SCHEMA,
        "cluster": cluster,
        "taken_at": _iso(snap.taken_at),
        "summary": {"nodes": len(snap.nodes), "states": counts,
                    "in_flight": inflight.total, "in_flight_unknown": inflight.unknown,
                    "streams_open": streams.open if streams is not None else None,
                    "oldest_stream_seconds": streams.oldest if streams is not None else None,
                    "model_majority_sha256": snap.majority_digest,
                    "model_target_sha256": snap.target_digest,
                    "model_target_source": snap.target_source,
                    "model_differs": list(snap.nodes_differing_from_target()),
                    "model_unknown": list(snap.nodes_model_unknown())},
        "balancers": [{"name": b.name, "kind": b.kind, "reachable": b.reachable, "error": b.error,
                       "servers": len(b.servers), "transport": b.transport, "latency_seconds": b.latency}
                      for b in snap.balancers],
        "nodes": [node_json(snap, v) for v in snap.nodes],
        "notes": list(snap.notes),
        "facts_error": snap.facts_error,
    }


def facts_unavailable(snap: FleetSnapshot) -> str | None:
    """`status`'s one line when the node-facts source could not be read at all (exit 5), else None."""
    if not snap.facts_error:
        return None
    return f"node facts unavailable: {snap.facts_error}; the AGENT, GPU and MODEL columns are unknown"
