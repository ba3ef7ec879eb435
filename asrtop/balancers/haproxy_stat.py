"""PURE parsers for HAProxy Runtime API output: `show stat` (CSV), `show servers state` (space separated)
and the start time in `show info` ("Name: value" lines).

Both are parsed by header name, never by column position: the column sets differ between 2.6 and 2.8
and grow with every release. Unknown or empty fields read as None ("the balancer does not know").
"""

from __future__ import annotations

import csv
import io
from operator import itemgetter

from asrtop.balancers.base import AdminState, Health, ServerState

# srv_admin_state bits (HAProxy include/haproxy/server-t.h, enum srv_admin)
ADMF_FMAINT = 0x01  # forced into maintenance (set server ... state maint)
ADMF_IMAINT = 0x02  # inherited maintenance from a tracked server
ADMF_CMAINT = 0x04  # `disabled` in the configuration
ADMF_FDRAIN = 0x08  # forced drain
ADMF_IDRAIN = 0x10  # inherited drain
ADMF_RMAINT = 0x20  # maintenance because the address did not resolve
ADMF_HMAINT = 0x40  # FQDN set from the socket (not a maintenance in itself)
ADMF_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_CMAINT | ADMF_RMAINT
ADMF_DRAIN = ADMF_FDRAIN | ADMF_IDRAIN

# srv_check_state / srv_agent_state bits (enum chk_st): a check line exists / checks are running
CHK_ST_CONFIGURED = 0x02
CHK_ST_ENABLED = 0x04
CHK_ST_PAUSED = 0x08  # checks paused because the server is in maintenance

# srv_op_state (enum srv_state)
OP_STOPPED, OP_STARTING, OP_RUNNING, OP_STOPPING = 0, 1, 2, 3

STATIC_ALGORITHMS = ("static-rr", "first")  # algorithms HAProxy never accepts dynamic servers on


class ParseError(ValueError):
    """The text is not what the command prints (wrong command, truncated, or an error message)."""


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """`show stat` -> one dict per row, keyed by the names of the "# pxname,svname,..." header."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if start is None:
        raise ParseError(f"no CSV header in `show stat` output: {first_line(text)!r}")
    header = [h.strip() for h in lines[start][2:].split(",")]
    rows = []
    for rec in csv.reader(io.StringIO("\n".join(line for line in lines[start + 1:] if line.strip()))):
        rows.append({h: v for h, v in zip(header, rec) if h and h != "-"})
    return rows


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """`show servers state [backend]` -> one dict per server, keyed by the "# be_id be_name ..." header.

    The output starts with a format version line ("1"); fields never contain spaces ("-" = empty).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if start is None:
        raise ParseError(f"no header in `show servers state` output: {first_line(text)!r}")
    header = lines[start][2:].split()
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            continue
        fields = line.split()
        rows.append({h: v for h, v in zip(header, fields)})
    return rows


def start_time(info: str, now: float) -> float | None:
    """Unix time the process answering `show info` started: Start_time_sec, else (an older HAProxy without
    it) now - Uptime_sec; None when the answer has neither."""
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    try:
        return float(fields["Start_time_sec"])
    except (KeyError, ValueError):
        try:
            return now - float(fields["Uptime_sec"])
        except (KeyError, ValueError):
            return None


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def to_int(v: str | None) -> int | None:
    if v is None or v in ("", "-"):
        return None
    try:
        return int(v)
    except ValueError:
        return None


def backend_rows(stat: list[dict[str, str]], backend: str) -> list[dict[str, str]]:
    """This backend's server rows (FRONTEND/BACKEND aggregate rows skipped)."""
    return [r for r in stat if r.get("pxname") == backend and r.get("svname") not in ("FRONTEND", "BACKEND")]


def backend_row(stat: list[dict[str, str]], backend: str) -> dict[str, str] | None:
    return next((r for r in stat if r.get("pxname") == backend and r.get("svname") == "BACKEND"), None)


def admin_state(admin_bits: int | None, status: str | None) -> AdminState:
    """From srv_admin_state bits when known, else from the `show stat` status word."""
    if admin_bits is not None:
        if admin_bits & ADMF_MAINT:
            return AdminState.MAINT
        if admin_bits & ADMF_DRAIN:
            return AdminState.DRAIN
        return AdminState.READY
    word = (status or "").upper()
    if word.startswith("MAINT"):
        return AdminState.MAINT
    if word.startswith("DRAIN"):
        return AdminState.DRAIN
    return AdminState.READY


def health(checked: bool, op_state: int | None, status: str | None, check_bits: int | None = None) -> Health:
    """up|down from the health check; no-check when none is configured; paused when one is configured but not
    running. HAProxy pauses checks in maint and reports the server stopped (op state 0, status "MAINT"): that
    is the admin state, not a failed check, so a server in maint is never "down" on its own."""
    if not checked:
        return Health.NO_CHECK
    if check_bits is not None and check_bits & CHK_ST_CONFIGURED and (
            check_bits & CHK_ST_PAUSED or not check_bits & CHK_ST_ENABLED):
        return Health.PAUSED
    if check_bits is None and (status or "").upper().startswith("MAINT"):
        return Health.PAUSED  # no state row: `show stat` says MAINT and runs no check then
    if op_state is not None:
        return Health.DOWN if op_state == OP_STOPPED else Health.UP  # starting = slowstart ramp, stopping = NOLB
    word = (status or "").upper()
    # "UP", "UP 1/3" (going down), "NOLB", "DRAIN" are serving; "DOWN", "DOWN 1/2" (going up) are not
    return Health.UP if word.startswith(("UP", "NOLB", "DRAIN")) else Health.DOWN


def split_addr(addr: str | None) -> tuple[str | None, int | None]:
    if not addr:
        return None, None
    host, sep, port = addr.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):  # "²".isdigit() but int() refuses it
        return addr, None
    return host.strip("[]"), int(port)


def server_state(stat: dict[str, str], state: dict[str, str] | None) -> ServerState:
    """One ServerState from a `show stat` row and (when present) its `show servers state` row (dicts by column
    name; a column absent reads as empty)."""
    return _server_state(tuple(map(stat.get, SERVER_COLUMNS)), tuple(map(state.get, STATE_COLUMNS)) if state else None)


def _server_state(stat: tuple, state: tuple | None) -> ServerState:
    """server_state from the two rows' values in SERVER_COLUMNS and STATE_COLUMNS order (None: no such column).
    `status` reads every server of every balancer with it (2,000 calls at 1,000 nodes): each value read once."""
    (_, name, status, check_status, chkfail, addr, agent_status, stat_weight, rtime, rate, bck, tracked, scur, qcur,
     stot, hrsp_5xx) = stat
    if state is not None:
        _, srv_addr, srv_port, op_state, admin_bits, weight, check_bits, agent_bits = state
        admin_bits, check_bits, srv_port = to_int(admin_bits), to_int(check_bits), to_int(srv_port)
        agent_bits, weight, op_state = to_int(agent_bits), to_int(weight), to_int(op_state)
    else:
        admin_bits = check_bits = srv_addr = srv_port = agent_bits = weight = op_state = None
    if check_bits is not None:
        checked = bool(check_bits & CHK_ST_CONFIGURED)
    else:  # no state row: a checked server has a check_status (none while paused in maint) and a chkfail count
        checked = bool(check_status) or bool(chkfail)
    if srv_addr and srv_port is not None:  # the state row has both (every HAProxy since 1.8): `addr` not read
        address, port = srv_addr, srv_port
    else:
        address, port = split_addr(addr)
        if srv_addr:
            address = srv_addr
        if srv_port is not None:
            port = srv_port
    agent_check, agent_enabled = agent(agent_bits, agent_status)
    if weight is None:
        weight = to_int(stat_weight) or 0
    rtime = to_int(rtime)
    rate = to_int(rate)
    if name is None:
        raise KeyError("svname")  # as stat["svname"] of a row without the column
    return ServerState(  # by keyword (16 fields); its own __init__ keeps the instance without a __dict__ object
        name=name, address=address or "", port=port, weight=weight, backup=to_int(bck) == 1,
        admin=admin_state(admin_bits, status),
        # a `track`ing server has no check of its own but the tracked one's up/down: report that
        health=health(checked or bool(tracked), op_state, status, check_bits if checked else None),
        active_sessions=to_int(scur), queued=to_int(qcur),
        request_rate=float(rate) if rate is not None else None, requests_total=to_int(stot),
        errors_5xx_total=to_int(hrsp_5xx), avg_response_seconds=rtime / 1000.0 if rtime is not None else None,
        checked=checked, agent_check=agent_check, agent_enabled=agent_enabled)


def agent(agent_bits: int | None, agent_status: str | None) -> tuple[bool, bool | None]:
    """(an agent check is configured, it runs now or None without one): from srv_agent_state bits when
    known, else from `show stat`, which shows an agent_status only while the agent runs (a paused one then
    reads as none)."""
    if agent_bits is not None:
        if not agent_bits & CHK_ST_CONFIGURED:
            return False, None
        return True, bool(agent_bits & CHK_ST_ENABLED)
    if agent_status:
        return True, True
    return False, None


# The `show stat` columns server_state reads: a row dict of ~100 columns for each of 1,000 servers cost more than
# the ServerStates made of them (`asrtop status` reads every server of every balancer once).
SERVER_COLUMNS = ("pxname", "svname", "status", "check_status", "chkfail", "addr", "agent_status", "weight", "rtime",
                  "rate", "bck", "tracked", "scur", "qcur", "stot", "hrsp_5xx")


def server_stat_rows(text: str, backend: str) -> list[dict[str, str]]:
    """backend_rows(parse_show_stat(text), backend), each row with only SERVER_COLUMNS (those the header has)."""
    return [{k: v for k, v in zip(SERVER_COLUMNS, row) if v is not None} for row in _stat_values(text, backend)]


def _stat_values(text: str, backend: str) -> list[tuple]:
    """The backend's server rows of `show stat`, each as its SERVER_COLUMNS values (None: no such column); other
    proxies' lines skipped before they are split where the proxy's name is the first column."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if start is None:
        raise ParseError(f"no CSV header in `show stat` output: {first_line(text)!r}")
    header = [h.strip() for h in lines[start][2:].split(",")]
    at = {h: i for i, h in enumerate(header) if h and h != "-"}  # a name twice: its last column, as parse_show_stat
    if at.get("pxname") == 0:  # as HAProxy writes it: skip other proxies' lines unsplit
        prefix = backend + ","
        mine = [line for line in lines[start + 1:] if line.startswith(prefix) or line.startswith('"')]
    else:
        mine = [line for line in lines[start + 1:] if line.strip()]
    # Without a quote anywhere, CSV is the text between commas: each line split up to the last column read (of
    # ~100), not into every field (csv.reader joins a quoted field over lines: it reads any text with a quote).
    where = [at.get(h) for h in SERVER_COLUMNS]
    last = max((i for i in where if i is not None), default=0)
    records = csv.reader(mine) if any('"' in line for line in mine) else (line.split(",", last + 1) for line in mine)
    pick = itemgetter(*where) if None not in where else None  # every column there (HAProxy 2.x): picked in C
    px, sv = SERVER_COLUMNS.index("pxname"), SERVER_COLUMNS.index("svname")
    rows = []
    for rec in records:
        row = pick(rec) if pick is not None and len(rec) > last else \
            tuple(rec[i] if i is not None and i < len(rec) else None for i in where)
        if row[px] == backend and row[sv] not in ("FRONTEND", "BACKEND"):
            rows.append(row)
    return rows


# The `show servers state` columns server_state reads (and the two that place a row).
STATE_COLUMNS = ("srv_name", "srv_addr", "srv_port", "srv_op_state", "srv_admin_state", "srv_uweight",
                 "srv_check_state", "srv_agent_state")


def server_state_rows(text: str, backend: str) -> dict[str, dict[str, str]]:
    """{srv_name: row} of the backend's servers in `show servers state`, each row with only STATE_COLUMNS (those the
    header has): parse_servers_state's rows of that backend, the last of a name winning."""
    return {name: {k: v for k, v in zip(STATE_COLUMNS, row) if v is not None}
            for name, row in _state_values(text, backend).items()}


def _state_values(text: str, backend: str) -> dict[str, tuple]:
    """{srv_name: its STATE_COLUMNS values (None: no such column)} of the backend's servers in `show servers
    state`, without a dict of every column for every server."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if start is None:
        raise ParseError(f"no header in `show servers state` output: {first_line(text)!r}")
    at = {h: i for i, h in enumerate(lines[start][2:].split())}  # a name twice: its last column, as zip() into a dict
    be, name = at.get("be_name"), at.get("srv_name")
    if be is None or name is None:
        return {}
    where = [at.get(h) for h in STATE_COLUMNS]
    last = max(i for i in where if i is not None)
    pick = itemgetter(*where) if None not in where else None
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("#"):
            continue
        fields = line.split()
        n = len(fields)
        if n > be and n > name and fields[be] == backend:
            rows[fields[name]] = pick(fields) if pick is not None and n > last else \
                tuple(fields[i] if i is not None and i < n else None for i in where)
    return rows


def build_server_states(stat_text: str, state_text: str, backend: str) -> list[ServerState]:
    """The backend's servers in `show stat` order; raises ParseError on text that is not the expected output."""
    by_name = _state_values(state_text, backend)
    sv = SERVER_COLUMNS.index("svname")
    return [_server_state(row, by_name.get(row[sv])) for row in _stat_values(stat_text, backend)]
