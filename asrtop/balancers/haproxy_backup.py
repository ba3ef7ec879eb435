"""Toggle a HAProxy server's backup flag: HAProxy has no runtime setter, so we re-create the server.

    probe (add + del a throw-away server with the same arguments: HAProxy itself says whether it can)
    -> set maint -> wait for zero sessions -> del server -> add server ... [backup] -> enable health/agent
    -> restore the previous admin state.

Carried to `add server`: address and port (as running), weight (as running), id, maxconn/maxqueue (as
running), check with rise/fall/port/addr, agent-check, track, pool-max-conn and pool-purge-delay (the
configured value, else a configured server's default: haproxy_pool.py; 2.6's add-server defaults keep no
idle connection), and, when the config file is readable, every
other word of the server's config line and of the `default-server` lines in force (`add server` ignores
default-server). Not carried without the config file: inter/fastinter/downinter, on-marked-down/up,
slowstart, observe/on-error, send-proxy, source, cookie (an ssl server is refused then). Always lost: the
server's counters (stot, hrsp_*) and its initial weight (srv_iweight becomes the running weight); an FQDN
server comes back with its current IP (dynamic servers do not resolve names).

Every step works through a BackendAPI (haproxy_api.py: the backend, its Runtime API, its haproxy.cfg); the
adapter (haproxy.py) passes itself. Every step is reported to a StepRecorder (balancers/base.py; the control
layer's intent journal): "planned" with everything recovery needs BEFORE the first change, "deleting" before
`del server`, the others once HAProxy acknowledged them, "done" at the end (also after a failure that left
nothing half-done). Between steps the recorder may stop the toggle (Ctrl+C): it is undone while nothing is
deleted; from the delete to the restored state (rec.critical()) it is never stopped. haproxy_recover.py
finishes or undoes a toggle asrtop did not live to finish.
"""

from __future__ import annotations

import os
import time

from asrtop.balancers.base import (
    AdminState,
    BalancerError,
    BalancerRefused,
    BalancerUnreachable,
    NullRecorder,
    StepInterrupted,
    StepRecorder,
    UnsupportedAction,
)
from asrtop.balancers.host import HostUnreachable
from asrtop.balancers.haproxy_api import BackendAPI
from asrtop.balancers.haproxy_config import ServerLine, find_server_line, read_texts, strip_managed
from asrtop.balancers.haproxy_pool import mismatch as pool_mismatch, pool_words
from asrtop.balancers.haproxy_stat import (
    CHK_ST_CONFIGURED,
    STATIC_ALGORITHMS,
    ParseError,
    admin_state,
    backend_row,
    backend_rows,
    first_line,
    parse_servers_state,
    parse_show_stat,
    to_int,
)

POLL = 0.1


def cli_word(w: str) -> str:
    """Escape what the Runtime API would split on (spaces, ';')."""
    return "".join("\\" + c if c in " \t;\\" else c for c in w)


class Plan:
    """Everything read before touching anything: the server as it runs, and the add-server arguments."""

    def __init__(self, b: BackendAPI, server: str):
        self.b, self.server = b, server
        stat_text, state_text = b.read()
        self.stat = parse_show_stat(stat_text)
        rows = {r["svname"]: r for r in backend_rows(self.stat, b.backend)}
        if server not in rows:
            raise BalancerRefused(f"{b.name}: HAProxy backend {b.backend!r} has no server {server!r}")
        self.row = rows[server]
        self.state = next((r for r in parse_servers_state(state_text) if r.get("srv_name") == server), {})
        self.be = backend_row(self.stat, b.backend) or {}
        self.backup = to_int(self.row.get("bck")) == 1
        self.admin = admin_state(to_int(self.state.get("srv_admin_state")), self.row.get("status"))
        self.checked = bool((to_int(self.state.get("srv_check_state")) or 0) & CHK_ST_CONFIGURED)
        self.agent = bool((to_int(self.state.get("srv_agent_state")) or 0) & CHK_ST_CONFIGURED)
        self.line = self._config_line()

    def _config_line(self) -> ServerLine | None:
        """The server's line in haproxy.cfg on the balancer's host: the `config` given, else the files the
        running process was started with; None when neither is known."""
        b = self.b
        try:
            if b.config:
                paths = [b.config]
            else:
                running = b.running()
                paths = list(running.paths) if running else []
            return find_server_line(read_texts(paths, b.host), b.backend, self.server) if paths else None
        except HostUnreachable as e:  # the socket answered, the host's files did not: say so, change nothing
            raise BalancerUnreachable(f"{b.name}: cannot read haproxy.cfg: {e}") from None

    def address(self) -> str:
        host = self.state.get("srv_addr") or self.row.get("addr", "").rpartition(":")[0]
        port = self.state.get("srv_port") or self.row.get("addr", "").rpartition(":")[2]
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{port}" if port and port != "0" else host

    def refuse_if_impossible(self) -> None:
        b = self.b
        algo = (self.be.get("algo") or "").strip()
        if algo in STATIC_ALGORITHMS:
            raise UnsupportedAction(
                f"{b.name}: cannot toggle backup on {b.backend}/{self.server}: the backend uses `balance "
                f"{algo}`, which allows no runtime del/add server; change it in haproxy.cfg and reload")
        trackers = [f"{r['pxname']}/{r['svname']}" for r in self.stat
                    if r.get("tracked") == f"{b.backend}/{self.server}"]
        if trackers:
            raise UnsupportedAction(
                f"{b.name}: cannot toggle backup on {b.backend}/{self.server}: tracked by {', '.join(trackers)} "
                f"(HAProxy cannot delete a referenced server); change it in haproxy.cfg and reload")
        if self.line is None and self.state.get("srv_use_ssl") == "1":
            raise UnsupportedAction(
                f"{b.name}: cannot toggle backup on {b.backend}/{self.server}: it uses ssl and its ssl options "
                f"are not readable at runtime; give the balancer its haproxy.cfg path")

    def words(self, backup: bool, with_id: bool = True) -> list[str]:
        """add-server arguments after the address."""
        out: list[str] = []
        if self.line is not None:
            out += strip_managed(self.line.defaults) + strip_managed(self.line.words)
        else:
            if self.checked:
                out.append("check")
                for key, col in (("rise", "check_rise"), ("fall", "check_fall")):
                    if to_int(self.row.get(col)):
                        out += [key, self.row[col]]
                if (to_int(self.state.get("srv_check_port")) or 0) > 0:
                    out += ["port", self.state["srv_check_port"]]
                if self.state.get("srv_check_addr", "-") not in ("-", ""):
                    out += ["addr", self.state["srv_check_addr"]]
            if self.agent and (to_int(self.state.get("srv_agent_port")) or 0) > 0:
                out += ["agent-check", "agent-port", self.state["srv_agent_port"]]
                if self.state.get("srv_agent_addr", "-") not in ("-", ""):
                    out += ["agent-addr", self.state["srv_agent_addr"]]
            if self.row.get("tracked"):
                out += ["track", self.row["tracked"]]
        out += pool_words(out)  # 2.6's add-server defaults keep no idle connection (haproxy_pool.py)
        # running values win over the config line (they may have been changed at runtime)
        if to_int(self.row.get("slim")):
            out += ["maxconn", self.row["slim"]]
        if to_int(self.row.get("qlimit")):
            out += ["maxqueue", self.row["qlimit"]]
        weight = self.state.get("srv_uweight") or self.row.get("weight") or "1"
        out += ["weight", weight]
        if with_id and to_int(self.state.get("srv_id")):
            out += ["id", self.state["srv_id"]]
        if backup:
            out.append("backup")
        return out

    def add_command(self, name: str, backup: bool, with_id: bool = True) -> str:
        words = [self.address(), *self.words(backup, with_id)]
        return f"add server {self.b.backend}/{name} " + " ".join(cli_word(w) for w in words)


class _Clean(Exception):
    """A toggle that failed and left nothing half-done: `error` (what the operator reads) and what it left."""

    def __init__(self, error: BalancerError, result: str = "unchanged"):
        super().__init__(str(error))
        self.error, self.result = error, result


def intent(b: BackendAPI, plan: Plan, backup: bool, probe_name: str) -> dict[str, object]:
    """The journal's "planned" facts: everything `asrtop recover` needs to finish or undo the toggle."""
    return {"backend": b.backend, "server": plan.server, "backup": backup, "was_backup": plan.backup,
            "add_line": plan.add_command(plan.server, backup), "restore_line": plan.add_command(plan.server, plan.backup),
            "admin": plan.admin.value, "weight": to_int(plan.state.get("srv_uweight") or plan.row.get("weight")),
            "checks": [c for c, on in (("health", plan.checked), ("agent", plan.agent)) if on],
            "probe": probe_name, "addr": plan.state.get("srv_addr"), "port": to_int(plan.state.get("srv_port"))}


def toggle_backup(b: BackendAPI, server: str, backup: bool, wait: float, rec: StepRecorder | None = None) -> None:
    """Re-create `server` with the backup flag; every step goes to `rec` (the intent journal) first/after."""
    rec = rec if rec is not None else NullRecorder()
    plan = Plan(b, server)
    if plan.backup == backup:
        return
    plan.refuse_if_impossible()
    name = probe_name()
    rec.step("planned", **intent(b, plan, backup, name))  # write-ahead: before the first change
    try:
        result = _toggle(b, plan, backup, wait, name, rec)
    except _Clean as c:  # nothing half-done: the journal closes the operation
        rec.step("done", result=c.result, error=str(c.error))
        raise c.error from None
    rec.step("done", result=result)


def _toggle(b: BackendAPI, plan: Plan, backup: bool, wait: float, probe_name: str, rec: StepRecorder) -> str:
    server, prev = plan.server, plan.admin
    where = f"{b.backend}/{server}"
    try:
        rec.checkpoint()
        probe(b, plan, backup, probe_name, rec)
    except ProbeLeft:
        raise  # the probe is still there: the journal says "probe added", recover removes it
    except (StepInterrupted, UnsupportedAction, BalancerRefused) as e:  # HAProxy said no: nothing changed
        raise _Clean(e) from None
    try:
        rec.checkpoint()
        if prev != AdminState.MAINT:
            b.command(f"set server {where} state maint", server)
            rec.step("maint set")
    except (BalancerRefused, StepInterrupted) as e:  # nothing changed (an unreachable one may have)
        raise _Clean(e) from None
    try:
        wait_empty(b, server, wait, rec)
        rec.step("deleting", command=f"del server {where}")  # write-ahead: HAProxy may act before we hear
        delete(b, plan, wait, rec)
    except BalancerError as e:
        restore_state(b, server, prev)  # if this fails too, the journal says "maint set": recover restores
        raise _Clean(type(e)(f"{e} (server left {prev.value}, unchanged)")) from None

    # From here the server does not exist: every failure must end in a re-created server or say so. Stop
    # requests (Ctrl+C, SIGTERM) wait until the server is back with its checks and state.
    with rec.critical():
        rec.step("deleted")
        try:
            answer = b.api.command(plan.add_command(server, backup))
        except BalancerUnreachable as e:
            raise BalancerError(f"{b.name}: {where} was DELETED, then HAProxy stopped answering ({e}); if it is "
                                f"still missing, run `asrtop recover` or re-add it: "
                                f"{plan.add_command(server, plan.backup)}") from None
        if first_line(answer).startswith("New server registered"):
            rec.step("added", backup=backup)
            finish(b, plan, server, prev, rec)
            return "toggled"
        why = first_line(answer)
        try:
            back = b.api.command(plan.add_command(server, plan.backup))
        except BalancerUnreachable as e:
            back = str(e)
        if not first_line(back).startswith("New server registered"):
            raise BalancerError(
                f"{b.name}: {where} is DELETED: `add server` failed ({why}) and re-adding the original failed "
                f"({first_line(back)}); re-add it by hand: {plan.add_command(server, plan.backup)}")
        rec.step("added", backup=plan.backup, original=True)
        finish(b, plan, server, prev, rec)
    raise _Clean(BalancerRefused(f"{b.name}: HAProxy refused to re-create {where} with backup="
                                 f"{'on' if backup else 'off'} ({why}); the original server was re-created, "
                                 f"{prev.value}"), "undone")


class ProbeLeft(BalancerRefused):
    """The probe server was added but could not be deleted (it is in maint: no traffic)."""


def probe_name() -> str:
    return f"asrtop-probe-{os.getpid()}-{time.monotonic_ns() % 100000}"


def probe(b: BackendAPI, plan: Plan, backup: bool, name: str | None = None, rec: StepRecorder | None = None) -> None:
    """HAProxy's own verdict on the exact add-server arguments, before anything is deleted."""
    rec = rec if rec is not None else NullRecorder()
    name = name or probe_name()
    answer = b.api.command(plan.add_command(name, backup, with_id=False))
    line = first_line(answer)
    if not line.startswith("New server registered"):
        if "dynamic load balancing" in line:
            raise UnsupportedAction(f"{b.name}: cannot toggle backup on {b.backend}/{plan.server}: HAProxy says "
                                    f"{line!r} (static algorithm or `hash-type map-based`)")
        raise b.refusal(plan.add_command(plan.server, backup), answer, plan.server)
    rec.step("probe added")
    differs = pool_mismatch(b.api.command(f"show servers conn {b.backend}"), b.backend, name, plan.words(backup))
    gone = b.api.command(f"del server {b.backend}/{name}")
    if not first_line(gone).startswith("Server deleted"):
        raise ProbeLeft(f"{b.name}: could not remove probe server {b.backend}/{name} ({first_line(gone)}); "
                        f"it is in maint and takes no traffic: `del server {b.backend}/{name}`")
    rec.step("probe deleted")
    if differs:
        raise UnsupportedAction(f"{b.name}: cannot toggle backup on {b.backend}/{plan.server}: {differs}; the "
                                f"re-created server would not reuse connections as it does now")


def sessions(b: BackendAPI, server: str) -> int:
    answer = b.api.command("show stat")
    try:
        stat = parse_show_stat(answer)
    except ParseError:
        raise b.refusal("show stat", answer, server) from None
    row = next((r for r in backend_rows(stat, b.backend) if r["svname"] == server), None)
    if row is None:
        raise BalancerRefused(f"{b.name}: server {b.backend}/{server} disappeared while draining")
    return (to_int(row.get("scur")) or 0) + (to_int(row.get("qcur")) or 0)


def wait_empty(b: BackendAPI, server: str, wait: float, rec: StepRecorder | None = None) -> None:
    deadline = time.monotonic() + wait
    while (n := sessions(b, server)) > 0:
        if rec is not None:
            rec.checkpoint()
        if time.monotonic() >= deadline:
            raise BalancerRefused(
                f"{b.name}: {b.backend}/{server} still has {n} session(s) after {wait:g}s in maint; drain it "
                f"first (asrtop drain NODE --wait), then toggle backup")
        time.sleep(POLL)


def delete(b: BackendAPI, plan: Plan, wait: float, rec: StepRecorder | None = None) -> None:
    server = plan.server
    deadline = time.monotonic() + max(wait, 1.0)
    purged = False
    while True:
        if rec is not None:
            rec.checkpoint()
        answer = b.api.command(f"del server {b.backend}/{server}")
        line = first_line(answer)
        if line.startswith("Server deleted"):
            return
        if "connection" in line.lower() and time.monotonic() < deadline:
            if not purged:
                purge_idle(b, plan)
                purged = True
            else:
                time.sleep(POLL)
            continue
        if "other configuration elements" in line or "referenced" in line.lower():
            raise UnsupportedAction(f"{b.name}: cannot toggle backup on {b.backend}/{server}: HAProxy says {line!r}")
        raise b.refusal(f"del server {b.backend}/{server}", answer, server)


def purge_idle(b: BackendAPI, plan: Plan) -> None:
    """Close the idle pooled connections that keep `del server` from working.

    No sessions are left (wait_empty), but a connection that was in flight when the server went to maint
    stays in the idle pool until pool-purge-delay thins it out (15 s measured on 2.6 and 2.8). An address
    change makes HAProxy close a server's idle connections at once, so the port is moved by one and back
    while the server is in maint (no traffic, checks paused): its final address is the original one.
    """
    port = to_int(plan.state.get("srv_port"))
    host = plan.state.get("srv_addr")
    if not port or not host:
        return
    where = f"{b.backend}/{plan.server}"
    other = port + 1 if port < 65535 else port - 1
    b.api.command(f"set server {where} addr {host} port {other}")
    back = b.api.command(f"set server {where} addr {host} port {port}")
    if "port changed" not in back and "no need to change" not in back:
        raise BalancerRefused(f"{b.name}: {where} is in maint with port {other} instead of {port}: "
                              f"`set server {where} addr {host} port {port}` said {first_line(back)!r}")


def restore_state(b: BackendAPI, server: str, state: AdminState) -> None:
    if state != AdminState.MAINT:
        b.command(f"set server {b.backend}/{server} state {state.value}", server)


def finish(b: BackendAPI, plan: Plan, server: str, prev: AdminState, rec: StepRecorder | None = None) -> None:
    """After a successful add server: start checks again, put the previous admin state back."""
    rec = rec if rec is not None else NullRecorder()
    where = f"{b.backend}/{server}"
    steps = []
    if plan.checked:
        steps.append((f"enable health {where}", "health enabled"))
    if plan.agent:
        steps.append((f"enable agent {where}", "agent enabled"))
    if prev != AdminState.MAINT:
        steps.append((f"set server {where} state {prev.value}", "state restored"))
    done = ["add server"]
    for cmd, step in steps:
        answer = b.api.command(cmd)
        if first_line(answer):
            raise BalancerRefused(f"{b.name}: {where} was re-created in maint, but `{cmd}` failed "
                                  f"({first_line(answer)}); done: {', '.join(done)}; run `asrtop recover` or "
                                  f"finish by hand")
        rec.step(step)
        done.append(cmd)
