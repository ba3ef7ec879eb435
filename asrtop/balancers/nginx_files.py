"""An nginx config and its includes, read through the balancer's Host (this machine, or one over SSH).

Every read takes the files' bytes afresh (a config edited by hand or by the other asrtop is seen at once) and
parses a file again only when its bytes changed. Includes are followed as nginx does: a relative pattern
starts at the directory of the file read first (nginx's conf prefix when that file is the main config),
a pattern with `*?[` is globbed on the host (sorted), a plain name must exist; each file is read once
(breadth first, as crossplane did). A file that cannot be read or parsed is kept with its error, so that the
upstream is still found in the others; only the first file's absence is an OSError for the caller.
HostUnreachable passes through: a dead transport is not a config error.
"""

from __future__ import annotations

import glob as _glob
import os

from asrtop.balancers.host import Host
from asrtop.balancers.nginx_conf import ConfFile, Directive, parse_file


class ConfFiles:
    """Reads a config tree through `host`; `memo` (one per refresh or change) reads each file once."""

    def __init__(self, host: Host):
        self.host = host
        self._parsed: dict[str, ConfFile] = {}

    def file(self, path: str, memo: dict[str, ConfFile] | None = None) -> ConfFile:
        if memo is not None and path in memo:
            return memo[path]
        data = self.host.read_bytes(path)
        cached = self._parsed.get(path)
        if cached is None or cached.data != data:
            cached = self._parsed[path] = parse_file(path, data)
        if memo is not None:
            memo[path] = cached
        return cached

    def walk(self, root: str, memo: dict[str, ConfFile] | None = None) -> list[ConfFile]:
        """root and every file it includes, root first; OSError when root itself cannot be read."""
        out = [self.file(root, memo)]
        seen = {root}
        conf_dir = os.path.dirname(root)
        i = 0
        while i < len(out):
            for pattern in _includes(out[i].directives):
                if not os.path.isabs(pattern):
                    pattern = os.path.join(conf_dir, pattern)
                names = self.host.glob(pattern) if _glob.has_magic(pattern) else [pattern]
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
