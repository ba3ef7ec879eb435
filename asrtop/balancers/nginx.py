"""nginx adapter: open-source nginx has no admin API, so changes are a rewrite of the upstream block.

servers() reads the block (includes followed, nginx_files). A change edits only the server's `weight=`,
`backup`, `down` words (nginx_conf.rewrite), writes the file atomically (temp file in the same directory,
same mode/owner, rename), runs test_command (`nginx -t`), then reload_command (`nginx -s reload`),
both argv lists with a timeout, never a shell. If either fails, the old file goes back (and nginx is
reloaded again if the reload may have happened) and BalancerRefused carries nginx's own error line.

All of it happens on the balancer's host (host.py: this machine, or another over SSH): the files are read
and written there, the commands run there, and the lock that serialises changes is a flock on the file's
directory there, so asrtop processes on any machine take turns. A transport that fails mid-change is
reported with how far the change got (BalancerUnreachable).

Drain = maint = `down`: a reload starts new workers without the server while old workers finish their
in-flight requests, which is what a drain is in open-source nginx. The file records no difference between
drain and maint, so servers() reads a `down` server back as maint.
nginx documents no maximum weight; we cap at 1000.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from asrtop.balancers.base import (
    NGINX_MAX_WEIGHT,
    AdminState,
    BalancerRefused,
    BalancerUnreachable,
    ServerState,
    UnsupportedAction,
    validate_weight,
)
from asrtop.balancers.host import LOCAL, CommandDenied, CommandNotFound, CommandTimedOut, Host, HostUnreachable
from asrtop.balancers.nginx_files import Refresh
from asrtop.balancers.nginx_live import NginxSite
from asrtop.balancers.nginx_conf import (
    NO_BACKUP_METHODS,
    ConfFile,
    NginxConfError,
    Upstream,
    find_server,
    locate,
    parse_upstream,
    rewrite,
    server_state,
)


def nginx_error_line(output: str) -> str:
    """The line an operator needs from nginx's output: the [emerg]/[alert]/[error] one, else the last one."""
    lines = [x.strip() for x in output.splitlines() if x.strip()]
    for marker in ("[emerg]", "[alert]", "[crit]", "[error]"):
        for x in lines:
            if marker in x:
                return x
    return lines[-1] if lines else "(no output)"


class NginxBalancer:
    kind = "nginx"
    max_weight = NGINX_MAX_WEIGHT

    def __init__(self, name: str, config: str | os.PathLike, upstream: str, test_command: Sequence[str] = (),
                 reload_command: Sequence[str] = (), timeout: float = 10.0, *, prefix: str | None = None,
                 stub_status: str | None = None, check_running: bool = True, host: Host = LOCAL):
        """Empty test/reload commands: derived from `config` and `prefix` (nginx_live.NginxSite.commands).
        check_running=False reads the file alone (an nginx config that no nginx runs, as in file-only tests)."""
        self.name, self.config, self.upstream = name, Path(config), upstream
        self.host = host  # where the files, commands and lock live (host.py)
        self.site = NginxSite(self.config, upstream, test_command, reload_command, prefix, stub_status, host)
        self.check_running = check_running
        # the last upstream block parsed: (its ConfFile, line, text, Upstream, its servers' states)
        self._upstream: tuple[ConfFile, int, str, Upstream, tuple[ServerState, ...]] | None = None
        self._plan: tuple | None = None  # what the last read asked of the host (Refresh.plan)
        # nginx -t loads every certificate and module: allow it more than a socket round trip
        self.timeout = max(float(timeout), 10.0)

    @property
    def test_command(self) -> tuple[str, ...]:
        return self.site.commands()[0]

    @property
    def reload_command(self) -> tuple[str, ...]:
        return self.site.commands()[1]

    def __repr__(self) -> str:
        return f"NginxBalancer({self.name!r}, {str(self.config)!r}, {self.upstream!r})"

    @property
    def transport(self) -> str:
        """ReportsTransport: "local" (the files and commands are here) or the SSH host's label."""
        return self.host.label

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, memo: Refresh | None = None) -> tuple[Path, str, Upstream]:
        """(file holding the upstream, its text, the parsed block); BalancerUnreachable when no nginx runs
        with it (every refresh and every change reads through here). What the last read asked of the host
        is asked again at once, first (nginx_files.Refresh)."""
        memo = Refresh(self.host) if memo is None else memo
        try:
            memo.read_ahead(self._plan)
            files = self.site.files.walk(str(self.config), memo)
        except (FileNotFoundError, IsADirectoryError):
            raise BalancerUnreachable(f"{self.name}: nginx config {self.config} does not exist or is not a "
                                      f"file{self.where()}") from None
        except OSError as e:
            raise BalancerUnreachable(f"{self.name}: cannot read nginx config: {e.strerror or e}: "
                                      f"{e.filename or self.config}{self.where()}") from None
        except HostUnreachable as e:
            raise BalancerUnreachable(f"{self.name}: {e}") from None
        try:
            file, line = locate(files, self.upstream)
            text, upstream = self._parse(memo.files[file], line)
            if self.check_running:
                self.site.check(file, memo)
            self._plan = memo.plan()
        except NginxConfError as e:
            raise BalancerRefused(f"{self.name}: {e}{self.where()}") from None
        except BalancerUnreachable as e:
            raise BalancerUnreachable(f"{self.name}: {e}{self.where()}") from None
        except HostUnreachable as e:  # names the host itself
            raise BalancerUnreachable(f"{self.name}: {e}") from None
        return Path(file), text, upstream

    def _parse(self, conf: ConfFile, line: int) -> tuple[str, Upstream]:
        """(the file's text, its upstream block), parsed again only when the file's bytes changed (ConfFiles
        keeps the same ConfFile for the same bytes): the block's tokens are most of a local refresh's CPU."""
        cached = self._upstream
        if cached is not None and cached[0] is conf and cached[1] == line:
            return cached[2], cached[3]
        text = conf.text
        upstream = parse_upstream(text, self.upstream, conf.path, line)
        self._upstream = (conf, line, text, upstream, tuple(server_state(d) for d in upstream.servers))
        return text, upstream

    def where(self) -> str:
        """" on ssh ops@lb1:22" for a balancer on another host, "" for this machine (messages as before)."""
        return "" if self.host.transport == "local" else f" on {self.host.label}"

    def servers(self) -> list[ServerState]:
        up = self.read()[2]
        cached = self._upstream
        if cached is not None and cached[3] is up:
            return list(cached[4])
        return [server_state(d) for d in up.servers]

    # -- changing ----------------------------------------------------------------------------------------

    def set_state(self, server: str, state: AdminState) -> None:
        state = AdminState(state)
        self.change(server, down=state != AdminState.READY)

    def set_weight(self, server: str, weight: int) -> None:
        validate_weight(self.name, weight, NGINX_MAX_WEIGHT, "nginx (no documented maximum; asrtop caps it)")
        if weight == 0:
            raise BalancerRefused(f"{self.name}: nginx has no weight 0 (minimum 1); use drain or maint instead")
        self.change(server, weight=weight)

    def set_backup(self, server: str, backup: bool) -> None:
        self.change(server, backup=bool(backup))

    def change(self, server: str, **what) -> None:
        directory = str(self.config.parent)
        begun: dict = {}  # set by apply() once the file may differ: the transport may drop from then on
        try:
            with self.host.lock(directory):
                self._change(server, begun, **what)
        except HostUnreachable as e:
            after = f"; {self._undo(directory, begun)}" if begun else ""
            raise BalancerUnreachable(f"{self.name}: {e}{after}") from None
        except (CommandNotFound, CommandDenied) as e:  # the lock's flock there (commands are run() below)
            raise BalancerRefused(f"{self.name}: cannot lock {directory}, nothing changed: {e}") from None

    def _change(self, server: str, begun: dict, **what) -> None:
        memo = Refresh(self.host)
        path, old, up = self.read(memo)
        targets = find_server(up, server)
        if not targets:
            known = ", ".join(d.address for d in up.servers) or "none"
            raise BalancerRefused(f"{self.name}: nginx upstream {self.upstream!r} has no server {server!r} "
                                  f"(servers: {known})")
        if what.get("backup"):
            bad = [m for m in up.methods if m in NO_BACKUP_METHODS]
            if bad:
                raise UnsupportedAction(f"{self.name}: nginx does not allow `backup` in upstream "
                                        f"{self.upstream!r}, which uses `{bad[0]}`; change the method first")
        new = rewrite(old, targets, **what)
        if new == old:
            return  # already so: no write, no reload
        self.apply(path, old, new, memo, begun)

    def apply(self, path: Path, old: str, new: str, memo: Refresh | None = None, begun: dict | None = None) -> None:
        """Write, test, reload; on any failure put the old bytes back and say what nginx said."""
        test, reload = self.site.commands(memo)
        begun = {} if begun is None else begun
        begun.update(path=path, old=old, new=new, reload=None)
        try:
            self.write(path, new)
        except OSError as e:  # the temp file is gone, the file untouched
            begun.clear()
            raise BalancerRefused(f"{self.name}: cannot write {path}{self.where()}: {e.strerror or e}") from None
        ok, out = self.run(test)
        if not ok:
            self.write(path, old)
            begun.clear()
            raise BalancerRefused(f"{self.name}: `{' '.join(test)}` failed{self.where()}, {path} restored: "
                                  f"{nginx_error_line(out)}")
        begun["reload"] = reload
        ok, out = self.run(reload)
        if not ok:
            self.write(path, old)
            # the reload may have been signalled before failing: reload once more on the restored file
            again, _ = self.run(reload)
            begun.clear()
            raise BalancerRefused(f"{self.name}: `{' '.join(reload)}` failed{self.where()}, {path} restored"
                                  f"{'' if again else ' (reload after restore failed too)'}: "
                                  f"{nginx_error_line(out)}")
        begun.clear()

    def _undo(self, directory: str, begun: dict) -> str:
        """The transport dropped after the write began (the lock went with it): on a new connection, under the
        lock again, put the old file back if it still holds our change (and reload if a reload may have run).
        Returns what the file is now, for the error line."""
        path, old, new, reload = begun["path"], begun["old"], begun["new"], begun["reload"]
        try:
            with self.host.lock(directory):
                now = self.host.read_bytes(str(path)).decode("utf-8", "surrogateescape")
                if now == old:
                    return f"{path} unchanged"
                if now != new:
                    return f"{path} was changed since by someone else: left as it is"
                self.write(path, old)
                if reload is not None and not self.run(reload)[0]:
                    return f"{path} restored, but the reload after it failed: reload nginx on {self.host.label}"
                return f"{path} restored"
        except (HostUnreachable, OSError):
            done = "reloaded or not" if reload is not None else "not reloaded"
            return (f"{path} may hold the change ({done}): check it on {self.host.label} once it answers "
                    "(nginx -t, reload or put it back)")

    def write(self, path: Path, text: str) -> None:
        self.host.write_atomic(str(path), text.encode("utf-8", "surrogateescape"))

    def run(self, argv: tuple[str, ...]) -> tuple[bool, str]:
        try:
            rc, out = self.host.run(argv, self.timeout)
        except CommandNotFound as e:
            return False, f"{e} (set test_command/reload_command in asrtop.toml)"
        except (CommandDenied, CommandTimedOut) as e:
            return False, str(e)
        return rc == 0, out or f"exit status {rc}"
