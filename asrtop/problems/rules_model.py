"""PURE: model rules: a node on another model than the fleet's target, a hash that failed, model files that
changed under a running ASR process."""

from __future__ import annotations

from typing import Iterator

from asrtop.fleet import TARGET_FROM_CONFIG, FleetSnapshot
from asrtop.fleet_wording import SHORT_DIGEST
from asrtop.problems.engine import Rule, RuleContext
from asrtop.problems.model import Finding, Severity
from asrtop.problems.state_facts import clear_after, down_for, live, live_troubled, per_snapshot, sending_traffic


def short(digest: str) -> str:
    return digest[:SHORT_DIGEST]


@per_snapshot
def _by_digest(snap: FleetSnapshot) -> dict[str, list[int]]:
    """Known digest -> the indexes in snap.nodes of the nodes running it (one pass per snapshot)."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(snap.model_digests):
        if d is not None:
            groups.setdefault(d, []).append(i)
    return groups


def find_differs(ctx: RuleContext) -> Iterator[Finding]:
    """Against the target (cluster.model_sha256, else the majority). With no target (the biggest groups tie)
    no node is "the odd one": one fleet finding says so instead of blaming every node. Reads only the nodes
    whose known digest is not the target's (FleetSnapshot.nodes_differing_from_target, by digest group)."""
    snap = ctx.snapshot
    groups = _by_digest(snap)
    target = snap.target_digest
    if target is None:
        if len(groups) > 1:
            yield Finding("model-differs", None, Severity.CRITICAL,
                          f"the fleet runs {len(groups)} models and none is the majority "
                          f"({', '.join(sorted(short(d) for d in groups))}): set cluster.model_sha256")
        return
    differing = sorted(i for d, idx in groups.items() if d != target for i in idx)
    pinned = " (pinned)" if snap.target_source == TARGET_FROM_CONFIG else ""
    for i in differing:
        n = snap.nodes[i]
        if n.changing:
            continue
        serving = bool(sending_traffic(n))
        text = f"runs model {short(n.model_digest or '')}, the fleet {short(target)}{pinned}"
        yield Finding("model-differs", n.name, Severity.CRITICAL if serving else Severity.WARNING,
                      text + ("" if serving else " (out of rotation)"),
                      f"asrtop drain {n.name}" if serving else f"asrtop rollout {n.name}")


def find_hash_failed(ctx: RuleContext) -> Iterator[Finding]:
    for n, st in live_troubled(ctx.snapshot):
        if st.model.state == "error":
            yield Finding("model-hash-failed", n.name, Severity.WARNING,
                          f"cannot hash its model: {st.model.error or 'no reason given'} (its model is unknown)")


def find_changed_while_serving(ctx: RuleContext) -> Iterator[Finding]:
    """The agent's digest changed while the ASR process (its pid) stayed the same: the process still serves
    what it loaded, the files say otherwise. Remembers per node the digest first seen for each pid
    (ctx.memory), so it holds until the process restarts or the files come back; a one-shot run has no
    memory and never fires."""
    memory = ctx.memory
    for n, st in live(ctx.snapshot):
        pid, digest = st.asr.pid, st.model.sha256 if st.model.state == "ok" else None
        if pid is None or digest is None:  # no process known, or hashing: judge nothing, forget nothing
            continue
        loaded = memory.get(n.name)
        if loaded is None or loaded[0] != pid:
            memory[n.name] = (pid, digest)
        elif loaded[1] != digest:
            yield Finding("model-changed-while-serving", n.name, Severity.WARNING,
                          f"had its model files changed under the running ASR process (pid {pid}): files "
                          f"{short(digest)}, loaded {short(loaded[1])}; restart it", f"asrtop rollout {n.name}")
    for gone in memory.keys() - {n.name for n in ctx.snapshot.nodes}:
        del memory[gone]


MODEL_RULES = (
    Rule("model-differs", "model differs from the target", find_differs, down_for, clear_after),
    Rule("model-hash-failed", "model hash failed", find_hash_failed, down_for, clear_after),
    Rule("model-changed-while-serving", "model changed while serving", find_changed_while_serving, down_for,
         clear_after),
)
