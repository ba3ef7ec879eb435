"""PURE: model rules: a node on another model than the fleet's target, a hash that failed, model files that
changed under a running ASR process."""

from __future__ import annotations

from typing import Iterator

from asrtop.fleet import TARGET_FROM_CONFIG
from asrtop.fleet_wording import SHORT_DIGEST
from asrtop.problems.engine import Rule, RuleContext
from asrtop.problems.model import Finding, Severity
from asrtop.problems.state_facts import clear_after, down_for, live, live_troubled, sending_traffic


def short(digest: str) -> str:
    return digest[:SHORT_DIGEST]


def find_differs(ctx: RuleContext) -> Iterator[Finding]:
    """Against the target (cluster.model_sha256, else the majority). With no target (the biggest groups tie)
    no node is "the odd one": one fleet finding says so instead of blaming every node. The nodes are the
    FleetSnapshot's nodes_differing_from_target, read only when some node differs (counted in C)."""
    snap = ctx.snapshot
    digests = snap.model_digests
    target = snap.target_digest
    if target is None:
        known = set(digests)
        known.discard(None)
        if len(known) > 1:
            yield Finding("model-differs", None, Severity.CRITICAL,
                          f"the fleet runs {len(known)} models and none is the majority "
                          f"({', '.join(sorted(short(d) for d in known))}): set cluster.model_sha256")
        return
    if digests.count(target) + digests.count(None) == len(digests):
        return
    pinned = " (pinned)" if snap.target_source == TARGET_FROM_CONFIG else ""
    for n, digest in zip(snap.nodes, digests):
        if digest is None or digest == target or n.changing:
            continue
        serving = bool(sending_traffic(n))
        text = f"runs model {short(digest)}, the fleet {short(target)}{pinned}"
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
    judged = 0
    for n, st in live(ctx.snapshot):
        pid, model = st.asr.pid, st.model
        digest = model.sha256 if model.state == "ok" else None
        if pid is None or digest is None:  # no process known, or hashing: judge nothing, forget nothing
            continue
        judged += 1
        loaded = memory.get(n.name)
        if loaded is None or loaded[0] != pid:
            memory[n.name] = (pid, digest)
        elif loaded[1] != digest:
            yield Finding("model-changed-while-serving", n.name, Severity.WARNING,
                          f"had its model files changed under the running ASR process (pid {pid}): files "
                          f"{short(digest)}, loaded {short(loaded[1])}; restart it", f"asrtop rollout {n.name}")
    if len(memory) > judged:  # else it holds only the nodes just judged: none gone (no set of 1,000 names)
        for gone in memory.keys() - {n.name for n in ctx.snapshot.nodes}:
            del memory[gone]


MODEL_RULES = (
    Rule("model-differs", "model differs from the target", find_differs, down_for, clear_after),
    Rule("model-hash-failed", "model hash failed", find_hash_failed, down_for, clear_after),
    Rule("model-changed-while-serving", "model changed while serving", find_changed_while_serving, down_for,
         clear_after),
)
