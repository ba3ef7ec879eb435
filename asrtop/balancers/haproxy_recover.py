"""Finish or undo a HAProxy backup toggle (haproxy_backup.py) that asrtop was stopped in the middle of.

Input: the toggle's journaled "planned" facts (haproxy_backup.intent: backend, server, the exact `add server`
lines for the new and the old flag, the admin state to restore, the checks to re-enable, the probe's name,
the address). What to do is decided from what HAProxy shows NOW, never from the last journaled step alone
(a step HAProxy acknowledged may not have been written before the kill), so it is idempotent and can itself
be stopped and rerun:

    leftover probe servers (the journaled one, any `asrtop-probe-*`)  -> del server
    the server is missing (deleted, not re-added)                      -> add server with the NEW line
        (completes the toggle); refused -> the ORIGINAL line (undoes it); both refused -> failed, with the line
    present but its port moved (idle-connection purge cut short)       -> set server ... addr ... port
    health / agent check configured but not running                    -> enable health / enable agent
    admin state differs from the one before the toggle                 -> set server ... state ...

Then the server is read back and checked. Result: "completed" (the server carries the new backup flag),
"undone" (the old one), "failed" (error says why; nothing is hidden, rerun after fixing).
"""

from __future__ import annotations

from typing import Mapping

from asrtop.balancers.base import AdminState, BalancerError, RecoveryReport, ServerState
from asrtop.balancers.haproxy_api import BackendAPI
from asrtop.balancers.haproxy_stat import (
    CHK_ST_CONFIGURED,
    CHK_ST_ENABLED,
    admin_state,
    backend_rows,
    build_server_states,
    first_line,
    parse_servers_state,
    parse_show_stat,
    to_int,
)

PROBE_PREFIX = "asrtop-probe-"
REGISTERED = "New server registered"


class _Failed(Exception):
    pass


def _needs_enable(state: Mapping[str, str], column: str) -> bool:
    bits = to_int(state.get(column)) or 0
    return bool(bits & CHK_ST_CONFIGURED) and not bits & CHK_ST_ENABLED


def _plan(b: BackendAPI, facts: Mapping[str, object]) -> tuple[list[str], bool, str]:
    """(commands in order, whether the first `add server` may fall back to the original line, result)."""
    backend, server = b.backend, str(facts["server"])
    where = f"{backend}/{server}"
    stat_text, state_text = b.read()
    rows = {r["svname"]: r for r in backend_rows(parse_show_stat(stat_text), backend)}
    states = {r.get("srv_name"): r for r in parse_servers_state(state_text)}
    cmds = [f"del server {backend}/{name}" for name in rows
            if name == facts.get("probe") or name.startswith(PROBE_PREFIX)]
    want_backup = bool(facts.get("backup"))
    present = server in rows
    if not present:
        cmds.append(str(facts["add_line"]))
        result = "completed"
        checks = [str(c) for c in facts.get("checks") or ()]  # type: ignore[union-attr]
        current = AdminState.MAINT  # a new dynamic server starts in maint
    else:
        row, st = rows[server], states.get(server, {})
        result = "completed" if (to_int(row.get("bck")) == 1) == want_backup else "undone"
        port, addr = facts.get("port"), facts.get("addr")
        if isinstance(port, int) and port and addr and to_int(st.get("srv_port")) != port:
            cmds.append(f"set server {where} addr {addr} port {port}")
        checks = [c for c, col in (("health", "srv_check_state"), ("agent", "srv_agent_state"))
                  if c in (facts.get("checks") or ()) and _needs_enable(st, col)]  # type: ignore[operator]
        current = admin_state(to_int(st.get("srv_admin_state")), row.get("status"))
    cmds += [f"enable {c} {where}" for c in checks]
    want_admin = AdminState(str(facts.get("admin") or "ready"))
    if current != want_admin:
        cmds.append(f"set server {where} state {want_admin.value}")
    return cmds, not present, result


def _send(b: BackendAPI, cmd: str, fallback: str | None) -> tuple[str, str | None]:
    """Send one command; returns (the command that took, "undone" when the fallback line was used)."""
    answer = b.api.command(cmd)
    line = first_line(answer)
    if cmd.startswith("add server "):
        if line.startswith(REGISTERED):
            return cmd, None
        if fallback is not None:
            back = b.api.command(fallback)
            if first_line(back).startswith(REGISTERED):
                return fallback, "undone"
            raise _Failed(f"`add server` was refused ({line}) and so was the original line "
                          f"({first_line(back)}); re-add it by hand: {fallback}")
        raise _Failed(f"`{cmd}` was refused: {line}")
    if cmd.startswith("del server "):
        ok = line.startswith("Server deleted")
    elif " addr " in cmd:
        ok = "port changed" in answer or "no need to change" in answer
    else:
        ok = not line
    if not ok:
        raise _Failed(f"`{cmd}` was refused: {line or '(no answer)'}")
    return cmd, None


def recover(b: BackendAPI, facts: Mapping[str, object], dry_run: bool = False) -> RecoveryReport:
    """Finish or undo one journaled backup toggle on this backend (see the module doc). Unreachable or
    unreadable HAProxy: BalancerError (nothing sent)."""
    server = str(facts.get("server") or "")
    b.check_name(server)
    if facts.get("backend") != b.backend:
        return RecoveryReport("failed", error=f"{b.name}: the journal names backend {facts.get('backend')!r}, "
                                              f"this balancer manages {b.backend!r}; nothing sent")
    cmds, missing, result = _plan(b, facts)
    if dry_run:
        return RecoveryReport(result, tuple(cmds))
    restore = str(facts.get("restore_line") or "") or None
    sent: list[str] = []
    try:
        for cmd in cmds:
            took, undone = _send(b, cmd, restore if missing and cmd.startswith("add server ") else None)
            sent.append(took)
            result = undone or result
    except _Failed as e:
        done = f"; done: {', '.join(sent)}" if sent else "; nothing changed"
        return RecoveryReport("failed", tuple(sent), f"{b.name}: {b.backend}/{server}: {e}{done}")
    except BalancerError as e:
        done = f"; done: {', '.join(sent)}" if sent else "; nothing changed"
        return RecoveryReport("failed", tuple(sent), f"{e}{done}")
    after = _read_back(b, server)
    problem = _check(after, facts, result)
    if problem:
        return RecoveryReport("failed", tuple(sent), f"{b.name}: {b.backend}/{server}: {problem}", after)
    return RecoveryReport(result, tuple(sent), None, after)


def _read_back(b: BackendAPI, server: str) -> ServerState | None:
    stat, state = b.read()
    return next((s for s in build_server_states(stat, state, b.backend) if s.name == server), None)


def _check(after: ServerState | None, facts: Mapping[str, object], result: str) -> str | None:
    if after is None:
        return "still missing after recovery"
    want_backup = bool(facts.get("backup")) if result == "completed" else bool(facts.get("was_backup"))
    if after.backup != want_backup:
        return f"read back as backup={'on' if after.backup else 'off'}, not {'on' if want_backup else 'off'}"
    want_admin = str(facts.get("admin") or "ready")
    if after.admin.value != want_admin:
        return f"read back in state {after.admin.value}, not {want_admin}"
    if "health" in (facts.get("checks") or ()) and not after.checked:  # type: ignore[operator]
        return "read back without its health check"
    return None
