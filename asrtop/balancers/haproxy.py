"""HAProxy adapter: the Balancer protocol over the Runtime API (`stats socket ... level admin`) for one backend.

Transport, reads and refusals: haproxy_api.py (one command per connection, unix path or tcp host:port).
Reads: `show stat` + `show servers state <backend>`, parsed by header name (haproxy_stat.py). Writes:
`set server B/S state|weight`; the backup flag has no runtime setter and is toggled by del/add server
(haproxy_backup.py, HAProxy >= 2.4). Agent checks are paused around drain/maint (haproxy_agent.py). After each
change the server-state-file HAProxy loads on a reload, when one is configured, is rewritten
(haproxy_state_file.py); plan notes say whether a change survives a reload and what an agent check may undo.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import asrtop.balancers.haproxy_agent as agent
from asrtop.balancers.base import (
    HAPROXY_MAX_WEIGHT,
    AdminState,
    BalancerError,
    BalancerRefused,
    NotPersisted,
    RecoveryReport,
    ServerState,
    StepRecorder,
    validate_weight,
)
from asrtop.balancers.haproxy_api import BackendAPI, runtime_api
from asrtop.balancers.host import LOCAL, Host
from asrtop.balancers.haproxy_stat import ParseError, build_server_states, start_time

# The write side (haproxy_backup, haproxy_recover, haproxy_state_file: tempfile, the config reader) is imported
# by the methods that change something: `asrtop status` and the console's reads never load it.


class HAProxyBalancer(BackendAPI):
    """Balancer protocol (and ReportsStartTime, RecoversChanges) over HAProxy's Runtime API for one backend.

    `config`: haproxy.cfg (file or directory) to read server lines from when toggling backup; by default
    it is found from the running process (`show info` Pid -> /proc/PID/cmdline -f on `host`).
    `host`: where the socket and the files are (host.py): LOCAL, or an SSH host for a unix socket on lb2.
    `drain_timeout`: how long a backup toggle waits for the server's sessions to end before giving up.
    `agent_checks`: "pause" (pause a server's agent check during drain/maint) or "leave" (haproxy_agent.py).
    """

    kind = "haproxy"
    max_weight = HAPROXY_MAX_WEIGHT

    def __init__(self, name: str, socket: str, backend: str, timeout: float = 2.0,
                 config: str | Path | None = None, drain_timeout: float = 60.0, agent_checks: str = agent.PAUSE,
                 host: Host = LOCAL):
        # the socket, haproxy.cfg and the state file live on `host` (host.py): this machine or one over SSH
        super().__init__(name, backend, runtime_api(name, socket, host, timeout), config, host)
        self.socket, self.timeout = socket, timeout
        self.drain_timeout = drain_timeout
        if agent_checks not in agent.AGENT_MODES:
            raise ValueError(f"balancer {name!r}: agent_checks must be one of {', '.join(agent.AGENT_MODES)}, "
                             f"got {agent_checks!r}")
        self.agent_checks = agent_checks

    def __repr__(self) -> str:
        return f"HAProxyBalancer({self.name!r}, {self.socket!r}, {self.backend!r})"

    @property
    def transport(self) -> str:
        """How asrtop reaches the Runtime API, in words (ReportsTransport): "local socket", "tcp" or the SSH
        host's label ("ssh ops@lb1:22")."""
        if self.host.transport != "local":
            return self.host.label
        return "local socket" if self.api.kind == "unix" else "tcp"

    # -- Balancer protocol -------------------------------------------------------------------------------

    def servers(self) -> list[ServerState]:
        stat, state = self.read()
        try:
            servers = build_server_states(stat, state, self.backend)
        except (ParseError, KeyError) as e:
            raise BalancerRefused(f"{self.name}: cannot parse HAProxy's answer: {e}") from None
        if not servers and f"\n{self.backend}," not in "\n" + stat:
            raise BalancerRefused(f"{self.name}: HAProxy has no backend {self.backend!r}")
        return servers

    def set_state(self, server: str, state: AdminState) -> None:
        self.check_name(server)
        state = AdminState(state)
        where = f"{self.backend}/{server}"
        before, after = agent.commands(where, state, self.agent_checks)
        for cmd in before:  # the agent's next answer must not undo the change
            self.command(cmd, server)
        self.command(f"set server {where} state {state.value}", server)
        for cmd in after:
            self.command(cmd, server, ok=("", agent.NOT_CONFIGURED))
        from asrtop.balancers.haproxy_state_file import keep

        keep(self, f"{state.value} {server}")

    def set_weight(self, server: str, weight: int) -> None:
        self.check_name(server)
        validate_weight(self.name, weight, HAPROXY_MAX_WEIGHT, "HAProxy")
        self.command(f"set server {self.backend}/{server} weight {weight}", server)
        from asrtop.balancers.haproxy_state_file import keep

        keep(self, f"weight {server} {weight}")

    def set_backup(self, server: str, backup: bool, wait: float | None = None,
                   recorder: StepRecorder | None = None) -> None:
        """Re-create the server with the flag (haproxy_backup.py); `recorder` (RecoversChanges) journals
        each step so `asrtop recover` can finish or undo it after a crash (haproxy_recover.py)."""
        from asrtop.balancers.haproxy_backup import toggle_backup
        from asrtop.balancers.haproxy_state_file import keep

        self.check_name(server)
        toggle_backup(self, server, bool(backup), self.drain_timeout if wait is None else wait, recorder)
        keep(self, f"backup {server} {'on' if backup else 'off'}")

    def recover(self, facts: Mapping[str, object], dry_run: bool = False) -> RecoveryReport:
        from asrtop.balancers.haproxy_recover import recover as recover_toggle
        from asrtop.balancers.haproxy_state_file import keep

        report = recover_toggle(self, facts, dry_run)
        if dry_run or report.result == "failed" or not report.lines:
            return report
        try:  # what recovery changed outlives a reload too
            keep(self, f"recover {facts.get('server')}")
        except NotPersisted as e:
            return replace(report, lines=(*report.lines, f"WARNING: {e}"))
        return report

    # -- EndsSessions ------------------------------------------------------------------------------------

    def shutdown_sessions(self, server: str) -> None:
        """`shutdown sessions server B/S`: HAProxy ends every session (stream, request) on that server at once;
        it answers nothing when it did. A drain's cutoff, after the server stopped taking new ones."""
        self.check_name(server)
        self.command(f"shutdown sessions server {self.backend}/{server}", server)

    # -- PausesAgentChecks, AddsPlanNotes --------------------------------------------------------------

    def agent_change(self, server: ServerState, state: AdminState) -> bool | None:
        return agent.agent_change(server, AdminState(state), self.agent_checks)

    def plan_notes(self, server: ServerState, kind: str, value: int | bool | None) -> list[str]:
        """What the agent check may undo, and whether the change survives a reload (server-state-file)."""
        from asrtop.balancers.haproxy_state_file import reload_note

        return [*agent.plan_notes(server, kind, self.agent_checks), reload_note(self, kind)]

    # -- ReportsStartTime --------------------------------------------------------------------------------

    def started_at(self) -> float | None:
        """Unix time the HAProxy process answering the socket started (`show info`); None if unreachable."""
        try:
            info = self.api.command("show info")
        except BalancerError:  # unreachable: the balancer's servers() says so
            return None
        return start_time(info, time.time())
