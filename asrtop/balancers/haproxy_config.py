"""Read one server's configuration line from haproxy.cfg (PURE parsing + locating the running config).

The Runtime API shows a server's address, weight, check rise/fall, maxconn, ... but not `inter`,
`on-marked-down`, ssl options and the like. A backup toggle (del + add server) must carry those too, so
we read the server line (plus the `default-server` lines that apply: `add server` ignores them) from the
config file the running HAProxy was started with. The files and the process's /proc are read on the host
HAProxy runs on (host.py: this machine or one over SSH); HostUnreachable passes through to the caller.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from asrtop.balancers.host import LOCAL, CommandDenied, CommandNotFound, CommandTimedOut, Host

SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "userlist", "peers", "resolvers", "cache",
            "program", "http-errors", "ring", "mailers", "crt-store", "traces", "log-forward")


@dataclass(frozen=True)
class ServerLine:
    """Words after `server NAME ADDRESS`, and the default-server words in force for it."""

    backend: str
    name: str
    address: str
    words: tuple[str, ...]
    defaults: tuple[str, ...] = ()
    source: str = ""  # "file:line" it was read from


@dataclass
class _Section:
    kind: str
    name: str
    defaults: list[str] = field(default_factory=list)


def tokenize(line: str) -> list[str]:
    """Words of one config line, with HAProxy-like quoting and `#` comments."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=False)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        return list(lex)
    except ValueError:  # unbalanced quote: fall back to plain words
        return line.split("#", 1)[0].split()


def find_server_line(texts: list[tuple[str, str]], backend: str, server: str) -> ServerLine | None:
    """Scan (source name, text) pairs in order, as HAProxy reads them."""
    named_defaults: dict[str, list[str]] = {}
    last_defaults: list[str] = []
    current: _Section | None = None
    for source, text in texts:
        for lineno, raw in enumerate(text.splitlines(), 1):
            words = tokenize(raw)
            if not words:
                continue
            head = words[0]
            if head in SECTIONS:
                if current is not None and current.kind == "defaults":
                    last_defaults = list(current.defaults)
                    if current.name:
                        named_defaults[current.name] = list(current.defaults)
                name = words[1] if len(words) > 1 and words[1] != "from" else ""
                current = _Section(head, name)
                if head in ("backend", "listen", "defaults"):
                    base = last_defaults if head != "defaults" else []
                    if "from" in words[1:]:
                        i = words.index("from")
                        base = named_defaults.get(words[i + 1], []) if i + 1 < len(words) else base
                    current.defaults = list(base)
                continue
            if current is None:
                continue
            if head == "default-server":
                current.defaults.extend(words[1:])
            elif (head == "server" and current.kind in ("backend", "listen") and current.name == backend
                  and len(words) >= 3 and words[1] == server):
                return ServerLine(backend, server, words[2], tuple(words[3:]), tuple(current.defaults),
                                  f"{source}:{lineno}")
    return None


def config_files(paths: list[Path], host: Host = LOCAL) -> list[Path]:
    """Files in the order HAProxy loads them: a directory means its *.cfg files, sorted."""
    out: list[Path] = []
    for p in paths:
        if host.is_dir(str(p)):
            out.extend(sorted(Path(x) for x in host.glob(str(p / "*.cfg")) if host.is_file(x)))
        else:
            out.append(p)
    return out


@dataclass(frozen=True)
class RunningConfig:
    """How a HAProxy process was started: its `-f` files (resolved against its cwd) and its cwd."""

    paths: tuple[Path, ...]
    cwd: Path | None


def running_config(pid: int, host: Host = LOCAL) -> RunningConfig:
    """The `-f` arguments and working directory of a HAProxy process on `host` (its /proc there); no paths
    when not readable or not HAProxy (another namespace's pid)."""
    try:
        argv = host.read_bytes(f"/proc/{pid}/cmdline").split(b"\0")
    except OSError:
        return RunningConfig((), None)
    args = [a.decode(errors="replace") for a in argv if a]
    if not args or "haproxy" not in Path(args[0]).name:
        return RunningConfig((), None)
    cwd = proc_cwd(pid, host)
    if cwd is None:
        return RunningConfig((), None)
    paths: list[Path] = []
    i = 1
    while i < len(args):
        a = args[i]
        if a == "-f" and i + 1 < len(args):
            paths.append(cwd / args[i + 1])
            i += 2
            continue
        if a == "--":  # haproxy [opts] -- file1 file2 ...
            paths.extend(cwd / x for x in args[i + 1:])
            break
        i += 1
    return RunningConfig(tuple(paths), cwd)


def proc_cwd(pid: int, host: Host = LOCAL) -> Path | None:
    """/proc/PID/cwd on `host`: readlink here, `readlink` run there (the Host reads files, not links)."""
    if host.transport == "local":
        try:
            return Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return None
    try:
        code, out = host.run(["readlink", f"/proc/{pid}/cwd"], timeout=5.0)
    except (CommandNotFound, CommandDenied, CommandTimedOut):
        return None
    target = out.strip()
    return Path(target) if code == 0 and target.startswith("/") else None


def running_config_paths(pid: int, host: Host = LOCAL) -> list[Path]:
    """`-f` arguments of a HAProxy process (resolved against its cwd); [] when not readable."""
    return list(running_config(pid, host).paths)


def read_texts(paths: list[Path], host: Host = LOCAL) -> list[tuple[str, str]]:
    texts = []
    for p in config_files(paths, host):
        try:
            texts.append((str(p), host.read_bytes(str(p)).decode(errors="replace")))
        except OSError:
            continue
    return texts


# Words we set ourselves on `add server` (with their argument count): never carried from the config line.
MANAGED = {"weight": 1, "backup": 0, "no-backup": 0, "disabled": 0, "enabled": 0, "id": 1}


def strip_managed(words: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in MANAGED:
            i += 1 + MANAGED[w]
            continue
        out.append(w)
        i += 1
    return out
