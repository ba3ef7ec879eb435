"""An nginx config and its includes, read through the balancer's Host (this machine, or one over SSH).

Every read takes the files' bytes afresh (a config edited by hand or by the other asrtop is seen at once) and
parses a file again only when its bytes changed. Includes are followed as nginx does: a relative pattern
starts at the directory of the file read first (nginx's conf prefix when that file is the main config),
a pattern with `*?[` is globbed on the host (sorted), a plain name must exist; each file is read once
(breadth first, as crossplane did). A file that cannot be read or parsed is kept with its error, so that the
upstream is still found in the others; only the first file's absence is an OSError for the caller.
HostUnreachable passes through: a dead transport is not a config error.

A Refresh (one per refresh or change) reads each file once, and can start from the host's answers read ahead
in one Host.read_many for what the last refresh asked (over SSH one round trip's wait instead of one per
file, glob and stat): only answers taken for this refresh are used, never bytes from an earlier one.
"""

from __future__ import annotations

import glob as _glob
import os

from asrtop.balancers.host import Host, Reads
from asrtop.balancers.nginx_conf import ConfFile, Directive, parse_file


class Refresh:
    """One refresh's (or change's) reads on one host: each config file once (`files`), answers read ahead
    taken first, and what was asked, for the next refresh's read-ahead (`plan`)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.files: dict[str, ConfFile] = {}
        self._ahead = Reads({}, {}, {})
        self._read: list[str] = []  # every file asked through this refresh, in order
        self._globbed: dict[str, list[str]] = {}
        self._dirs: list[str] = []

    def read_ahead(self, plan: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None) -> None:
        """Ask the host at once for what the last refresh asked (its plan); HostUnreachable as any read."""
        if plan is not None and any(plan):
            self._ahead = self.host.read_many(*plan)

    def plan(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        return tuple(dict.fromkeys(self._read)), tuple(dict.fromkeys(self._globbed)), tuple(dict.fromkeys(self._dirs))

    def read_bytes(self, path: str) -> bytes:
        self._read.append(path)
        got = self._ahead.files.pop(path, None)  # once: a second read of it in this refresh asks again
        if got is None:
            return self.host.read_bytes(path)
        if isinstance(got, OSError):
            raise got
        return got

    def glob(self, pattern: str) -> list[str]:
        """Once per refresh, as each file is read once (the upstream's walk and the main config's share it)."""
        if pattern not in self._globbed:
            got = self._ahead.globs.pop(pattern, None)
            self._globbed[pattern] = self.host.glob(pattern) if got is None else got
        return self._globbed[pattern]

    def is_dir(self, path: str) -> bool:
        self._dirs.append(path)
        got = self._ahead.dirs.pop(path, None)
        return self.host.is_dir(path) if got is None else got


class ConfFiles:
    """Reads a config tree through `host`; `memo` (a Refresh, one per refresh or change) reads each file once."""

    def __init__(self, host: Host):
        self.host = host
        self._parsed: dict[str, ConfFile] = {}

    def file(self, path: str, memo: Refresh | None = None) -> ConfFile:
        if memo is not None and path in memo.files:
            return memo.files[path]
        data = (memo or self.host).read_bytes(path)
        cached = self._parsed.get(path)
        if cached is None or cached.data != data:
            cached = self._parsed[path] = parse_file(path, data)
        if memo is not None:
            memo.files[path] = cached
        return cached

    def walk(self, root: str, memo: Refresh | None = None) -> list[ConfFile]:
        """root and every file it includes, root first; OSError when root itself cannot be read."""
        out = [self.file(root, memo)]
        seen = {root}
        conf_dir = os.path.dirname(root)
        i = 0
        while i < len(out):
            for pattern in _includes(out[i].directives):
                if not os.path.isabs(pattern):
                    pattern = os.path.join(conf_dir, pattern)
                names = (memo or self.host).glob(pattern) if _glob.has_magic(pattern) else [pattern]
                for name in names:
                    if name in seen:
                        continue
                    seen.add(name)
                    try:
                        out.append(self.file(name, memo))
                    except OSError as e:
                        out.append(ConfFile(name, b"", (), f"{name}: {e.strerror or e} (included from {out[i].path})"))
            i += 1
        return out


def _includes(directives: tuple[Directive, ...]):
    for d in directives:
        if d.name == "include" and d.args:
            yield d.args[0]
        if d.block:
            yield from _includes(d.block)
