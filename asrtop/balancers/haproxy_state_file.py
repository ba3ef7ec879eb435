"""HAProxy's server-state-file: where the running HAProxy loads it from on a reload, and keeping it current.

A runtime change (`set server ... state|weight`) lives only in the running process; a reload starts a new
one from haproxy.cfg. With

    global
        server-state-file /var/lib/haproxy/server-state
    defaults
        load-server-state-from-file global

the new process first applies the states saved in that file (admin state, weight, address; not the backup
flag, which is the config's). asrtop writes `show servers state` there after every change it makes
(the global file holds every backend; `load-server-state-from-file local` reads one file per backend,
`server-state-file-name`, else the backend's name, under `server-state-base`). The file is replaced
atomically: a temporary file in the same directory, fsync, the old file's mode and owner, rename.

Which file: the balancer's `config` (haproxy.cfg), else the running process's `-f` files when the socket is
on the balancer's host (`show info` Pid -> /proc/PID/cmdline there); relative names are resolved as HAProxy
does: against `server-state-base`, else HAProxy's working directory (/proc/PID/cwd). Files are read and
written on that host (host.py: this machine or one over SSH).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asrtop.balancers.base import BalancerError, NotPersisted
from asrtop.balancers.host import LOCAL, Host, HostUnreachable
from asrtop.balancers.haproxy_api import BackendAPI
from asrtop.balancers.haproxy_config import SECTIONS, read_texts, tokenize

README = "README: Balancers"


@dataclass(frozen=True)
class StateFile:
    """The file a reload of this backend loads server states from."""

    path: Path
    backend_only: bool  # `load-server-state-from-file local`: `show servers state <backend>`; else every backend


@dataclass
class _Scope:
    load: str | None = None  # load-server-state-from-file: global | local | none
    name: str | None = None  # server-state-file-name (local)


def locate(texts: list[tuple[str, str]], backend: str, cwd: Path | None) -> StateFile | str:
    """The state file HAProxy loads for `backend` on its next start, or why there is none (one line).

    PURE: `texts` are the config files in load order (haproxy_config.read_texts); `cwd` is HAProxy's working
    directory (None when unknown)."""
    state_file = base = None
    named: dict[str, _Scope] = {}
    last = _Scope()
    kind, section_name, current = "", "", _Scope()
    found: _Scope | None = None
    for _, text in texts:
        for raw in text.splitlines():
            words = tokenize(raw)
            if not words:
                continue
            head, args = words[0], words[1:]
            if head in SECTIONS:
                if kind == "defaults":
                    last = current
                    if section_name:
                        named[section_name] = current
                kind = head
                section_name = args[0] if args and args[0] != "from" else ""
                inherit = last if head != "defaults" else _Scope()  # a defaults section starts afresh
                if "from" in args and args.index("from") + 1 < len(args):
                    inherit = named.get(args[args.index("from") + 1], last)
                current = _Scope(inherit.load, inherit.name) if head in ("defaults", "backend", "listen") \
                    else _Scope()
                if head in ("backend", "listen") and section_name == backend:
                    found = current
                continue
            if kind == "global" and head == "server-state-file" and args:
                state_file = args[0]
            elif kind == "global" and head == "server-state-base" and args:
                base = args[0]
            elif kind in ("defaults", "backend", "listen") and head == "load-server-state-from-file" and args:
                current.load = args[0]
            elif kind in ("defaults", "backend", "listen") and head == "server-state-file-name":
                current.name = args[0] if args else "use-backend-name"
    if found is None:
        return f"backend {backend} is not in haproxy.cfg"
    if found.load not in ("global", "local"):  # unset is none (checked on 2.6 and 2.8)
        if found.load is None and state_file is None and base is None:
            return "no server-state-file configured"
        return (f"backend {backend} loads no server-state-file (`load-server-state-from-file` is "
                f"{found.load or 'not set'})")
    if found.load == "global":
        if state_file is None:
            return "`load-server-state-from-file global` but no `server-state-file` in global"
        name = state_file
    else:
        name = backend if found.name in (None, "use-backend-name") else found.name
    path = Path(name)
    if not path.is_absolute():
        if base is not None:
            path = Path(base) / path
        if not path.is_absolute():
            if cwd is None:
                return f"server-state-file {name} is relative and HAProxy's working directory is unknown"
            path = cwd / path
    return StateFile(path, found.load == "local")


def find(b: BackendAPI) -> StateFile | str:
    """The state file of this balancer's backend, or why there is none. Reads haproxy.cfg (and `show info`)
    on the balancer's host; HostUnreachable when that host's files cannot be reached."""
    try:
        running = b.running()
    except BalancerError as e:
        return f"HAProxy not readable ({e})"
    paths = [b.config] if b.config else (list(running.paths) if running else [])
    if not paths:
        return "haproxy.cfg unknown (give the balancer its `config`)"
    texts = read_texts(paths, b.host)
    if not texts:
        return f"haproxy.cfg not readable ({', '.join(str(p) for p in paths)})"
    return locate(texts, b.backend, running.cwd if running else None)


def reload_note(b: BackendAPI, kind: str) -> str:
    """One line for a plan: does this change survive a reload of HAProxy?"""
    if kind == "backup":
        return (f"backup is lost on a reload: the server-state-file keeps admin state and weight, the backup "
                f"flag comes from haproxy.cfg; set it there too ({README})")
    try:
        where = find(b)
        if isinstance(where, str):
            return f"{kind} is lost on a reload: {where} ({README})"
        problem = _unwritable(where.path, b.host)
    except HostUnreachable as e:
        return f"{kind} may be lost on a reload: the server-state-file could not be checked ({e})"
    if problem:
        return f"{kind} is lost on a reload: server-state-file {where.path} {problem}"
    return f"{kind} survives a reload (server-state-file {where.path})"


def _unwritable(path: Path, host: Host = LOCAL) -> str | None:
    if not host.is_dir(str(path.parent)):
        return f"cannot be written (no directory {path.parent})"
    if not _may_write(str(path.parent), host):
        return f"cannot be written by this user (directory {path.parent})"
    return None


def _may_write(directory: str, host: Host) -> bool:
    """This user's right to write there; on another host assumed (asking costs a command there, every plan):
    a write that fails after the change says so (NotPersisted)."""
    return os.access(directory, os.W_OK | os.X_OK) if host.transport == "local" else True


def keep(b: BackendAPI, what: str) -> Path | None:
    """After a change: write `show servers state` to the state file HAProxy will load. None when there is no
    state file; NotPersisted (one line: the change WAS made) when it cannot be written."""
    try:
        where = find(b)
    except HostUnreachable as e:
        raise NotPersisted(f"{b.name}: {what}: done, but the server-state-file could not be located ({e}); a "
                           f"reload loses it unless `show servers state` is saved there first") from None
    if isinstance(where, str):
        return None
    cmd = f"show servers state {b.backend}" if where.backend_only else "show servers state"
    try:
        dump = b.api.command(cmd)
    except BalancerError as e:
        raise NotPersisted(_failed(b, what, where.path, f"`{cmd}` failed: {e}")) from None
    if not dump.startswith("1\n") or "\n# be_id" not in dump:  # version 1 + header; else an error message
        raise NotPersisted(_failed(b, what, where.path, f"`{cmd}` answered {dump.strip()[:80]!r}"))
    try:
        write_atomically(where.path, dump.rstrip("\n") + "\n", b.host)
    except OSError as e:
        raise NotPersisted(_failed(b, what, where.path, e.strerror or str(e))) from None
    except HostUnreachable as e:
        raise NotPersisted(_failed(b, what, where.path, str(e))) from None
    return where.path


def _failed(b: BackendAPI, what: str, path: Path, why: str) -> str:
    return (f"{b.name}: {what}: done, but server-state-file {path} was not written ({why}); a reload loses it "
            f"unless `show servers state` is saved there first")


def write_atomically(path: Path, text: str, host: Host = LOCAL) -> None:
    """Replace `path` on `host` with `text` in one step, keeping mode and owner (host.write_atomic)."""
    host.write_atomic(str(path), text.encode())
