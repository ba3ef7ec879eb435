"""HAProxy agent checks around drain and maint (PURE: what to send, what the plan says; haproxy.py sends it).

A server with `agent-check` asks its agent every `agent-inter`; the answer's ready/drain/maint and weight
act like the Runtime API's `set server` (HAProxy's management guide). An agent that answers `ready` thus
undoes `set server B/S state drain` (or maint) at its next answer, about a second later by default.

The balancer setting `agent_checks` (asrtop.toml, [[balancers]] haproxy entries) decides what asrtop does:

- "pause" (the default, as Ansible's haproxy module offers with `agent: true`): `disable agent B/S` before
  a drain or maint, so no answer can set the server back; `enable agent B/S` after ready. HAProxy ignores
  a weight or drain in the answer of a paused agent check.
- "leave": asrtop never touches the agent check; the plan warns, and `drain --wait` fails when the agent
  undoes the drain.
"""

from __future__ import annotations

from asrtop.balancers.base import AdminState, ServerState

PAUSE, LEAVE = "pause", "leave"
AGENT_MODES = (PAUSE, LEAVE)
# HAProxy's answer to `enable agent` on a server without an agent check (2.6, 2.8): nothing to resume
NOT_CONFIGURED = "Agent was not configured on this server, cannot enable."
TAKES_OUT = (AdminState.DRAIN, AdminState.MAINT)


def agent_change(server: ServerState, state: AdminState, mode: str) -> bool | None:
    """False: set_state pauses the agent check; True: it resumes it; None: leaves it as it is."""
    if mode != PAUSE or not server.agent_check:
        return None
    if state in TAKES_OUT and server.agent_enabled is not False:
        return False
    if state is AdminState.READY and server.agent_enabled is False:
        return True
    return None


def commands(where: str, state: AdminState, mode: str) -> tuple[list[str], list[str]]:
    """(agent commands before `set server ... state`, after it). Sent whatever the last read said (harmless
    without an agent check: HAProxy 2.6/2.8 answer nothing to `disable agent`, NOT_CONFIGURED to `enable`), so
    a stale read can never leave a running agent behind a drain."""
    if mode != PAUSE:
        return [], []
    if state in TAKES_OUT:
        return [f"disable agent {where}"], []
    return [], [f"enable agent {where}"]


def plan_notes(server: ServerState, kind: str, mode: str) -> list[str]:
    """What the plan says about the server's agent check before a change (one line each)."""
    if not server.agent_check:
        return []
    name = server.name
    running = server.agent_enabled is not False
    if kind in ("drain", "maint"):
        if mode == PAUSE:
            return [f"{name} has an agent check that can set it back to ready: asrtop pauses it during the "
                    f"{kind} (`disable agent`) and resumes it on ready"]
        if running:
            return [f"{name} has an agent check that can set it back to ready: agent_checks = \"leave\" on "
                    f"this balancer, so asrtop leaves it running and its next answer may undo the {kind} "
                    f"(`drain --wait` fails if it does)"]
        return [f"{name}'s agent check is paused (agent_checks = \"leave\": asrtop leaves it so)"]
    if kind == "ready":
        if not running and mode == PAUSE:
            return []  # the change line says it is resumed
        if not running:
            return [f"{name}'s agent check stays paused (agent_checks = \"leave\"): `enable agent` to resume it"]
        return [f"{name}'s agent check runs: its answers (drain, maint, a weight) still apply after ready"]
    if kind == "weight" and running:
        return [f"{name}'s agent check runs: a weight in its answer (e.g. `75%`) replaces this one"]
    return []
