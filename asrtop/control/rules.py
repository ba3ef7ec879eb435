"""PURE rules of asrtop.control: validation, guardrails (one node, a batch, the model guard), read-back
checks and every wording a plan or a result shows. No I/O, no textual: the Controller does the I/O, the
CLI and the console only render what these return.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Sequence

from asrtop.balancers.base import (
    HAPROXY_MAX_WEIGHT,
    NGINX_MAX_WEIGHT,
    AdminState,
    Balancer,
    ServerState,
    shown,
)
from asrtop.config import NodeConfig, endpoint_key
from asrtop.control.model import (
    ACTION_KINDS,
    ActionResult,
    GUARD_MIN_READY,
    GUARD_MODEL,
    STATE_ACTIONS,
    Action,
    BalancerOutcome,
    Outcome,
    Refusal,
    exit_code_for,
)
from asrtop.fleet import TARGET_FROM_CONFIG, FleetSnapshot, primaries_staying_ready
from asrtop.fleet_wording import plural
from asrtop.modelfiles import FileDiff

DEFAULT_MAX_WEIGHT = {"haproxy": HAPROXY_MAX_WEIGHT, "nginx": NGINX_MAX_WEIGHT}
MAX_FILES_NAMED = 5  # files that differ, named in a model-guard refusal
MAX_NAMED = 10  # node names or servers named in an error line


def one_line(e: BaseException | str, balancer: str | None = None) -> str:
    """Error text on one line, without a leading "<balancer>: " (adapters name themselves; we do too)."""
    text = " ".join((str(e) or type(e).__name__).split())
    if balancer and text.startswith(balancer + ": "):
        text = text[len(balancer) + 2:]
    return text


def weight_range(b: Balancer) -> tuple[int, int]:
    """HAProxy accepts 0 (no new requests); nginx has no weight 0 (its `down` is the drain)."""
    lo = 0 if b.kind == "haproxy" else 1
    hi = int(b.max_weight or DEFAULT_MAX_WEIGHT.get(b.kind, 256))
    return lo, hi


def weight_bounds(balancers: Sequence[Balancer]) -> tuple[int, int]:
    """The weights every configured balancer accepts (the console's weight dialog checks against it)."""
    ranges = [weight_range(b) for b in balancers] or [(0, DEFAULT_MAX_WEIGHT["haproxy"])]
    return max(lo for lo, _ in ranges), min(hi for _, hi in ranges)


def validate(action: Action, balancers: Sequence[Balancer]) -> str | None:
    """One line saying why the action is malformed, or None. No I/O."""
    if action.kind not in ACTION_KINDS:
        return f"unknown action {shown(action.kind)} (known: {', '.join(ACTION_KINDS)})"
    if not isinstance(action.node, str) or not action.node.strip():
        given = "" if action.node == "" else f" ({shown(action.node)})"
        return (f"{action.kind}: the node name is empty{given}; name a node of the cluster file "
                f"(`asrtop status` lists them)")
    if not balancers:
        return "no balancers configured: add a [[balancers]] entry to the cluster file"
    if action.kind == "weight":
        v = action.value
        if isinstance(v, bool) or not isinstance(v, int):
            return f"weight must be a whole number, got {shown(v)}"
        for b in balancers:
            lo, hi = weight_range(b)
            if not lo <= v <= hi:
                hint = " (nginx has no weight 0: use `drain`)" if b.kind == "nginx" and v == 0 else ""
                return f"weight {v} is out of range for {b.name} ({b.kind} accepts {lo}-{hi}){hint}"
    if action.kind == "backup" and not isinstance(action.value, bool):
        return f"backup must be on or off, got {shown(action.value)}"
    return None


def unknown_node(node: str, known: Sequence[str], limit: int = MAX_NAMED) -> str:
    """ "unknown node 'n9' (known: n1, n2, n3)"; of a big fleet the closest names first, then how many more."""
    if len(known) > limit:
        close = difflib.get_close_matches(node, known, n=limit, cutoff=0.0)
        named = f"{', '.join(close)} and {len(known) - len(close)} more (`asrtop status` lists them)"
    else:
        named = ", ".join(known) or "none"
    return f"unknown node {shown(node)} (known: {named})"


def _looked_for(node: NodeConfig) -> str:
    return f"server {node.server_name}" + (f" or address {node.address}" if node.address else "")


def _closest(node: NodeConfig, servers: Sequence[ServerState], limit: int) -> str:
    """The balancer's servers, closest to what the node names first: the same host or port, then by spelling."""
    if not servers:
        return "no servers"
    want = endpoint_key(*node.address.rpartition(":")[::2]) if node.address else None

    def distance(s: ServerState) -> tuple:
        key = endpoint_key(s.address, s.port)
        near = want is not None and (key[0] == want[0] or key[1] == want[1])
        spelled = difflib.SequenceMatcher(None, node.address or node.server_name,
                                          s.endpoint if node.address else s.name).ratio()
        return (not near, -spelled)

    ranked = sorted(servers, key=distance)
    named = ", ".join(s.endpoint if s.name == s.endpoint else f"{s.endpoint} ({s.name})" for s in ranked[:limit])
    return named + (f" and {len(ranked) - limit} more" if len(ranked) > limit else "")


def no_server(node: NodeConfig, servers: Sequence[ServerState], limit: int = 3) -> str:
    """One balancer's line when none of its servers is the node: what was looked for, what it has instead."""
    return f"has no server for {node.name} ({_looked_for(node)}; it has {_closest(node, servers, limit)})"


def on_no_balancer(node: NodeConfig, seen: Sequence[tuple[str, Sequence[ServerState]]],
                   limit: int = MAX_NAMED) -> str:
    """The node is a server on no balancer: what was looked for, and each balancer's servers, closest first."""
    have = "; ".join(f"{name} has {_closest(node, servers, limit)}" for name, servers in seen)
    return f"{node.name} is not a server on any balancer: looked for {_looked_for(node)}; {have}"


def read_only_line(what: str) -> str:
    """Why nothing is sent in read-only mode (the CLI's refusal and the console's refused key)."""
    return f"read-only mode, {what} not sent (started with --read-only or cluster.read_only = true)"


def describe(action: Action) -> str:
    if action.kind == "weight":
        return f"weight {action.node} {action.value}"
    if action.kind == "backup":
        return f"backup {action.node} {_onoff(action.value)}"
    return f"{action.kind} {action.node}"


def takes_out(action: Action) -> bool:
    """Does the action take the node out of primary rotation (so the min_ready guardrail applies)?"""
    return (action.kind in ("drain", "maint") or (action.kind == "backup" and action.value is True)
            or (action.kind == "weight" and action.value == 0))


def took(action: Action, s: ServerState, balancer_kind: str) -> bool:
    """Does this server (read back) show the action's effect?"""
    if action.kind in STATE_ACTIONS:
        want = STATE_ACTIONS[action.kind]
        if balancer_kind == "nginx" and want is not AdminState.READY:
            return s.admin in (AdminState.DRAIN, AdminState.MAINT)  # both are `down` in open-source nginx
        return s.admin is want
    if action.kind == "weight":
        return s.weight == action.value
    return s.backup == action.value


def field_of(action: Action, s: ServerState) -> str:
    if action.kind in STATE_ACTIONS:
        return f"state {s.admin.value}"
    if action.kind == "weight":
        return f"weight {s.weight}"
    return f"backup {_onoff(s.backup)}"


def wanted(action: Action) -> str:
    if action.kind in STATE_ACTIONS:
        return f"state {action.kind}"
    if action.kind == "weight":
        return f"weight {action.value}"
    return f"backup {_onoff(action.value)}"


def change_line(action: Action, name: str, kind: str, before: ServerState | None, problem: str | None,
                noop: bool, agent: bool | None = None) -> str:
    """Plan line for one balancer: "haproxy-a: weight 3 -> 5"; `agent`: what the change does to the server's
    agent check (False pauses it, True resumes it, None leaves it), said after the state."""
    if problem is not None:
        return f"{name}: cannot change ({problem})"
    assert before is not None
    if noop:
        return f"{name}: {field_of(action, before)} already, no change"
    also = "" if agent is None else (", agent check resumed (`enable agent`)" if agent
                                     else ", agent check paused (`disable agent`)")
    if took(action, before, kind):  # only the agent check changes
        return f"{name}: {field_of(action, before)} already{also}"
    new = wanted(action).split(" ", 1)[1]
    note = " (nginx: `down` + reload)" if kind == "nginx" and action.kind in ("drain", "maint") else ""
    return f"{name}: {field_of(action, before)} -> {new}{note}{also}"


def agent_word(enabled: bool | None) -> str:
    """A server's agent check in a line: running | paused | absent."""
    return "absent" if enabled is None else ("running" if enabled else "paused")


# The backup re-create keeps a HAProxy server in maint while its in-flight requests finish (wait_empty in
# balancers/haproxy_backup.py), then deletes and re-adds it. Measured with `asrtop backup node-1 on` on the demo
# (4 nodes, 16 streams): 2.2-6.0 s in maint, 0.3-0.5 s with nothing in flight.
RECREATE_SECONDS = "about 3 s under load"


def carries(snap: FleetSnapshot, node: str, streams_said: bool = False) -> str:
    """ "node-3 carries 7 in-flight requests" ("... and 4 live streams" when its agent counts streams). The
    balancers' in-flight figure includes the streams' sessions: they are told apart, and left out here when
    the caller says them in their own words (a drain: asrtop.control.drain_words.streams_clause)."""
    view = snap.node(node)
    n, streams = view.in_flight, view.streams_open
    if n is None:
        return f"{node}: in-flight requests unknown"
    if not streams:
        return f"{node} carries {plural(n, 'in-flight request')}"
    requests = plural(max(0, n - streams), "in-flight request")
    return f"{node} carries {requests}" + ("" if streams_said else f" and {plural(streams, 'live stream')}")


def recreate_line(snap: FleetSnapshot, action: Action) -> str | None:
    """A HAProxy backup toggle re-creates the server: say so, and the maint it shows meanwhile."""
    if action.kind != "backup":
        return None
    haproxy = [b.name for b in snap.balancers if b.kind == "haproxy"]
    if not haproxy:
        return None
    role = "a backup" if action.value else "a primary"
    return (f"{', '.join(haproxy)}: re-created to change backup, it shows maint until its in-flight requests "
            f"finish ({RECREATE_SECONDS}), then returns as {role}")


def together(snap: FleetSnapshot, actions: Sequence[Action]) -> str:
    """The min_ready figure for these actions at once: "1 of 3 primaries stay ready"."""
    primaries = sum(1 for v in snap.nodes if v.servers and not any(s.backup for s in v.servers.values()))
    leaving = [a.node for a in actions if takes_out(a)]
    if leaving:
        return f"{primaries_staying_ready(snap, leaving)} of {primaries} primaries stay ready"
    if actions and all(a.kind == "weight" for a in actions):
        return "new requests are shared by weight"
    return f"{primaries_staying_ready(snap, ())} of {primaries} primaries ready now"


def node_line(snap: FleetSnapshot, action: Action) -> str:
    """What the action means for its node alone (a batch confirmation shows it under the node's name)."""
    again = recreate_line(snap, action)
    return carries(snap, action.node, action.kind == "drain") + (f"; {again}" if again else "")


def consequence(snap: FleetSnapshot, action: Action) -> str:
    """ "node-3 carries 7 in-flight requests; 2 of 3 primaries stay ready" """
    line = f"{carries(snap, action.node, action.kind == 'drain')}; {together(snap, (action,))}"
    again = recreate_line(snap, action)
    return line + (f"; {again}" if again else "")


def preview(snap: FleetSnapshot, actions: Sequence[Action]) -> list[str]:
    """What the last snapshot says, in the plan's words, before the controller's plan (fresh reads) arrives."""
    known = [a for a in actions if a.node in {n.name for n in snap.nodes}]
    if len(actions) == 1:
        return [consequence(snap, a) for a in known]
    return [node_line(snap, a) for a in known] + [f"together: {together(snap, actions)}"]


def summarize(action: Action, results: Sequence[BalancerOutcome], kinds: dict[str, str]) -> tuple[Outcome, str]:
    """(outcome, one line) from per-balancer results (BalancerOutcome) and their kinds."""
    desc = describe(action)
    good = [r.balancer for r in results if r.ok]
    bad = [r for r in results if not r.ok]
    already = [n for n in good if kinds.get(n) == "already"]
    note = f" ({', '.join(already)}: already so)" if already else ""
    warned = "; ".join(f"{r.balancer}: {r.warning}" for r in results if r.warning)
    note += f" (WARNING: {warned})" if warned else ""
    if not bad:
        return "done", f"{desc}: done on {', '.join(good)}{note}"
    why = "; ".join(f"{r.balancer}: {r.error}" for r in bad)
    if good:
        return "partial", (f"partial: {desc} took on {', '.join(good)}{note}; "
                           f"NOT on {', '.join(r.balancer for r in bad)} ({why})")
    if all(kinds.get(r.balancer) == "unreachable" for r in bad):
        return "unreachable", f"unreachable: {desc} changed nothing ({why})"
    return "rejected", f"rejected: {desc} changed nothing ({why})"


def signalled(res: ActionResult, signum: int, name: str) -> ActionResult:
    """A signal (Ctrl+C, SIGTERM, SIGHUP) held while the action was sent: a finished change says so; one the
    adapter stopped between two steps (undoing what it had started) is "interrupted" (exit 130)."""
    if res.outcome == "done":
        return replace(res, signal=signum, message=f"{res.message} ({name} arrived during the change: finished first)")
    return replace(res, signal=signum, outcome="interrupted", exit_code=exit_code_for("interrupted"),
                   message=f"interrupted by {name}: {res.message}")


def unreadable(problems: Sequence[tuple[str, str, str]]) -> tuple[Outcome, str]:
    """(outcome, line) when no balancer can be acted on; problems: (balancer, kind, message)."""
    why = "; ".join(f"{n}: {m}" for n, _, m in problems)
    if all(k == "unreachable" for _, k, _ in problems):
        return "unreachable", f"unreachable: no balancer can be reached, nothing changed ({why})"
    return "rejected", f"rejected: no balancer can be changed, nothing changed ({why})"


def _onoff(v: object) -> str:
    return "on" if v else "off"


# ---- guardrails ------------------------------------------------------------------------------------

def min_ready_refusal(snap: FleetSnapshot, leaving: Sequence[str], min_ready: int) -> Refusal | None:
    """Refuses taking `leaving` out together when fewer than min_ready ready primaries would stay. Only nodes
    that count now can bring the count down (re-draining a drained node is fine)."""
    staying = primaries_staying_ready(snap, leaving)
    if staying >= min_ready or staying >= primaries_staying_ready(snap, ()):
        return None
    names = ", ".join(leaving)
    return Refusal("refused", f"refused: taking {names} out would leave {staying} ready primary node(s), "
                              f"min_ready is {min_ready}", GUARD_MIN_READY, "to override")


def batch_refusal(snap: FleetSnapshot, actions: Sequence[Action], min_ready: int) -> Refusal | None:
    """The min_ready guardrail over several actions at once (each node alone may pass, all together not)."""
    leaving = [a.node for a in actions if takes_out(a)]
    if len(leaving) < 2:
        return None
    return min_ready_refusal(snap, leaving, min_ready)


def puts_in_rotation(action: Action) -> bool:
    """Does the action let the node take requests (so the model guard applies)?"""
    return (action.kind == "ready" or (action.kind == "backup" and action.value is False)
            or (action.kind == "weight" and isinstance(action.value, int) and not isinstance(action.value, bool)
                and action.value > 0))


def target_words(snap: FleetSnapshot) -> str:
    return "cluster.model_sha256" if snap.target_source == TARGET_FROM_CONFIG else "the fleet majority"


def model_refusal(snap: FleetSnapshot, action: Action, differing_files: Sequence[FileDiff] | str | None = None
                  ) -> Refusal | None:
    """Refuses putting a node whose KNOWN model digest differs from the fleet's target into rotation.

    `differing_files`: the files that differ from a target node's (named in the line), or why that list is
    unavailable, or None when nobody asked (no agent to ask)."""
    if not puts_in_rotation(action):
        return None
    target, digest = snap.target_digest, snap.node(action.node).model_digest
    if target is None or digest is None or digest == target:
        return None
    files = ""
    if isinstance(differing_files, str):
        files = f"; files that differ: unknown ({differing_files})"
    elif differing_files:
        named = ", ".join(f"{d.path} ({d.what})" for d in differing_files[:MAX_FILES_NAMED])
        more = f" and {len(differing_files) - MAX_FILES_NAMED} more" if len(differing_files) > MAX_FILES_NAMED else ""
        files = f"; files that differ: {named}{more}"
    return Refusal("refused", f"refused: {action.node} runs model {digest[:12]}, {target_words(snap)} is "
                              f"{target[:12]}{files}", GUARD_MODEL, "to put it in rotation anyway")


def second_look_line(nodes: Sequence[str], timeout: float, limit: int = MAX_NAMED) -> str:
    """What a guarded action says while it asks the agents that missed the fleet read once more."""
    named = ", ".join(nodes[:limit]) + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")
    agents = "agent" if len(nodes) == 1 else "agents"
    return (f"no answer from the {agents} of {named} in the fleet read: asking again before the model check "
            f"(up to {timeout:g} s)")


def model_warning(snap: FleetSnapshot, action: Action) -> str | None:
    """A node put into rotation whose model cannot be checked: said, never taken as matching."""
    target = snap.target_digest
    if not puts_in_rotation(action) or target is None:  # no fleet model to check against: nothing to say
        return None
    node = snap.node(action.node)
    if node.model_digest is not None:
        return None
    st = node.status
    if st is None:
        why = "no agent answer" + (f": {node.agent.error}" if node.agent is not None and node.agent.error else "")
    else:
        why = st.model.state + (f": {st.model.error}" if st.model.error else "")
    return f"{action.node}'s model is unknown ({why}): not checked against {target_words(snap)} {target[:12]}"
