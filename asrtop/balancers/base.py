"""The one seam between asrtop and a load balancer: the `Balancer` protocol and what it reports.

Also the small rules more than one layer needs (a leaf: imports nothing from asrtop): how a Runtime API
socket spec is read (the HAProxy adapter connects with it, the cluster config warns about it), and the
weight ranges both adapters check.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from enum import Enum
from typing import ContextManager, Mapping, Protocol, runtime_checkable


# Weight maxima: HAProxy's `set server ... weight` takes 0-256; nginx documents no maximum, asrtop caps it
# at 1000 (and the nginx adapter refuses 0: nginx has no weight 0).
HAPROXY_MAX_WEIGHT = 256
NGINX_MAX_WEIGHT = 1000


class AdminState(str, Enum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


class Health(str, Enum):
    UP = "up"
    DOWN = "down"
    NO_CHECK = "no-check"
    PAUSED = "paused"  # a health check is configured but not running (HAProxy pauses it in maint): neither up nor down


@dataclass(unsafe_hash=True)
class ServerState:
    """One server of one backend/upstream as one balancer sees it. None = the balancer does not know.

    Read-only by convention, not frozen (as asrtop.agentstatus's readings, for the same reason): a frozen
    __init__ sets its 16 fields through object.__setattr__, and a refresh of 1,000 nodes on two balancers
    builds 2,000. unsafe_hash keeps it hashable by value, as it was."""

    name: str  # HAProxy server name; nginx: "host:port" as written in the upstream
    address: str  # host or IP as configured
    port: int | None
    weight: int
    backup: bool
    admin: AdminState
    health: Health
    active_sessions: int | None = None  # in flight right now
    queued: int | None = None
    request_rate: float | None = None  # requests/s (HAProxy rate: sessions over the last second)
    requests_total: int | None = None
    errors_5xx_total: int | None = None
    avg_response_seconds: float | None = None  # HAProxy rtime (last 1024 requests)
    checked: bool = False  # a health check is configured
    # HAProxy `agent-check` (nginx: never): configured at all, and whether it runs now (False: paused with
    # `disable agent`); None when there is no agent check. Its answers ready/drain/maint/weight act like the
    # Runtime API's, so a running one can undo a drain or a maint.
    agent_check: bool = False
    agent_enabled: bool | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}" if self.port is not None else self.address


class BalancerError(Exception):
    """A balancer could not be read or refused a change. str() is one line an operator can act on."""


class BalancerUnreachable(BalancerError):
    """Socket missing, connection refused, timed out, or the process died mid-conversation."""


class BalancerRefused(BalancerError):
    """The balancer answered but refused (no admin level, unknown backend/server, invalid value, nginx -t failed)."""


class UnsupportedAction(BalancerError):
    """The balancer cannot do this at all (e.g. HAProxy backup toggle with a static algorithm)."""


class NotPersisted(BalancerError):
    """The change WAS made, but keeping it across a reload failed (HAProxy: the server-state-file could not be
    written). The controller reports it as a warning on a change that took, never as a refusal."""


@runtime_checkable
class Balancer(Protocol):
    """Adapters: balancers/haproxy.py (Runtime API), balancers/nginx.py (upstream file + reload).

    All methods are blocking and fast (a socket round trip or a file rewrite + reload); async callers
    run them in a thread. `server` is a ServerState.name as returned by servers().
    """

    name: str  # the balancer's name in asrtop.toml
    kind: str  # "haproxy" | "nginx"
    max_weight: int  # HAProxy 256, nginx: no upper bound documented -> we cap at 1000

    def servers(self) -> list[ServerState]: ...

    def set_state(self, server: str, state: AdminState) -> None: ...

    def set_weight(self, server: str, weight: int) -> None: ...

    def set_backup(self, server: str, backup: bool) -> None: ...


@runtime_checkable
class AddsPlanNotes(Protocol):
    """A balancer with something to say about a change before it is made (an agent check that can undo a
    drain, whether the change survives a reload, ...). Fast and blocking; never raises; one line each."""

    def plan_notes(self, server: ServerState, kind: str, value: int | bool | None) -> list[str]: ...


@runtime_checkable
class PausesAgentChecks(Protocol):
    """A balancer that pauses a server's agent check around drain/maint (HAProxy's `disable agent`), so the
    agent's next answer cannot set the server back to ready, and resumes it on ready (unless told to leave
    agent checks alone). The controller shows the change in the plan and checks it in the read-back."""

    def agent_change(self, server: ServerState, state: AdminState) -> bool | None:
        """What set_state(server.name, state) does to the server's agent check: False pauses it, True resumes
        it, None leaves it as it is (no agent check, already so, or agent checks are left alone). PURE."""
        ...


@runtime_checkable
class EndsSessions(Protocol):
    """A balancer that can end every connection it holds to one server, now, without touching the others
    (HAProxy: `shutdown sessions server B/S`): a drain's cutoff ends the streams still open through it.
    Open-source nginx cannot (only a reload with worker_shutdown_timeout, for every server at once). Blocking."""

    def shutdown_sessions(self, server: str) -> None:
        """End the server's sessions; BalancerError (one line) when it cannot."""
        ...


@runtime_checkable
class ReportsStartTime(Protocol):
    """A balancer that can say when the process serving its admin interface started (HAProxy: `show info`).

    A change asrtop made before that start may have been lost with the previous process (reload_watch.py).
    Blocking, one round trip, like the Balancer methods.
    """

    def started_at(self) -> float | None:
        """Unix time that process started; None when unknown or unreachable (not a BalancerError)."""
        ...


@runtime_checkable
class ReportsTransport(Protocol):
    """A balancer that says how asrtop reaches it, in words: "local socket", "tcp", "local" (nginx's files
    here), or its SSH host's label "ssh ops@lb1:22". The console and `asrtop status` show it."""

    @property
    def transport(self) -> str: ...


def parse_socket(spec: str) -> tuple[str, str | tuple[str, int]]:
    """"/run/haproxy.sock", "unix@/p", "127.0.0.1:9999", "ipv4@h:p" -> ("unix", path) | ("tcp", (host, port))."""
    for prefix, kind in (("unix@", "unix"), ("ipv4@", "tcp"), ("ipv6@", "tcp")):
        if spec.startswith(prefix):
            spec = spec[len(prefix):]
            if kind == "unix":
                return "unix", spec
            break
    host, sep, port = spec.rpartition(":")
    if sep and port.isascii() and port.isdigit() and "/" not in spec and host:
        return "tcp", (host.strip("[]"), int(port))
    return "unix", spec


def validate_weight(balancer: str, weight: object, maximum: int, what: str) -> int:
    """`weight` as a whole number 0..maximum, else BalancerRefused naming the balancer and the range."""
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise BalancerRefused(f"{balancer}: weight must be a whole number 0-{maximum}, got {shown(weight)}")
    if not 0 <= weight <= maximum:
        raise BalancerRefused(f"{balancer}: weight {weight} is out of range for {what} (0-{maximum})")
    return weight


ECHO_LIMIT = 80  # characters of user input repeated in an error line


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters + "…" (an error line repeats what the user typed, never all of it)."""
    return text if len(text) <= limit else text[:limit] + "…"


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """repr() of user input for an error line, cut to `limit` characters + "…"."""
    return clip(repr(value), limit)


# -- multi-step changes: the intent journal's seam (the control layer implements StepRecorder) ---------------


class StepInterrupted(BalancerError):
    """The operator asked asrtop to stop (SIGINT/SIGTERM/SIGHUP) between two steps of a multi-step change;
    raised by StepRecorder.checkpoint() outside a critical section. The adapter undoes what it started and
    re-raises it with what it left behind."""


class StepRecorder(Protocol):
    """Where a multi-step change (HAProxy's backup re-create) says where it stands: the control layer's
    write-ahead intent journal. Called from the adapter's thread; every method is fast and blocking.

    step("planned", ...facts) is written (durably) BEFORE the first change, with everything needed to finish
    or undo the change; every other step is written right after the balancer acknowledged it. A step that
    was acknowledged but not yet written is found by `asrtop recover` reading the balancer's state."""

    def step(self, name: str, **facts: object) -> None: ...

    def checkpoint(self) -> None:
        """Raise StepInterrupted when the operator asked to stop (never inside critical())."""
        ...

    def critical(self) -> ContextManager[None]:
        """A section that must not be cut (delete to re-create): stop requests wait until it ends."""
        ...


class NullRecorder:
    """A StepRecorder that records nothing and never stops a change (adapters used without the controller)."""

    def step(self, name: str, **facts: object) -> None:
        pass

    def checkpoint(self) -> None:
        pass

    def critical(self) -> ContextManager[None]:
        return nullcontext()


@dataclass(frozen=True)
class RecoveryReport:
    """What recovering one journaled operation did (or, dry run, would do) on one balancer.

    result: "completed" (the change was finished as intended), "undone" (put back as before), "nothing to do"
    (the balancer already shows a finished state), or "failed" (error says why; recovery can be rerun)."""

    result: str
    lines: tuple[str, ...] = ()  # each thing done or to do, e.g. "add server asr/n2 127.0.0.1:8001 ... backup"
    error: str | None = None
    after: ServerState | None = None  # the server read back after the recovery (None: dry run or missing)


@runtime_checkable
class RecoversChanges(Protocol):
    """A balancer whose multi-step changes are journaled (HAProxy's backup re-create) and that can finish or
    undo one from its journaled facts after asrtop was stopped in the middle of it. Blocking."""

    def set_backup(self, server: str, backup: bool, wait: float | None = None,
                   recorder: StepRecorder | None = None) -> None: ...

    def recover(self, facts: Mapping[str, object], dry_run: bool = False) -> RecoveryReport:
        """Finish or undo the operation whose "planned" facts are given, by what the balancer shows now.
        Idempotent; BalancerError when the balancer cannot be read."""
        ...
