"""PURE nginx upstream reading and rewriting.

parse_tree reads one file into its directives (nested blocks, line numbers) with the lexer below, the same
grammar nginx applies (words, quotes, `;`, `{`, `}`, `#` comments); nginx_files follows the includes through
the balancer's host (this machine or one over SSH) and `locate` finds which file and line hold
`upstream NAME`. To rewrite only a server's parameters and keep every other byte of the file (comments,
layout, a whole config on one line as in the seed article), the lexer's tokens carry byte offsets, and edits
are applied as (start, end, replacement) splices.
"""

from __future__ import annotations

from dataclasses import dataclass

from asrtop.balancers.base import AdminState, Health, ServerState

# nginx refuses `backup` in an upstream using these balancing methods (ngx_http_upstream_module docs)
NO_BACKUP_METHODS = ("hash", "ip_hash", "random")


class NginxConfError(ValueError):
    """The file cannot be parsed, or holds no such upstream. str() is one line."""


@dataclass(frozen=True)
class Token:
    text: str  # as written (quotes included)
    start: int
    end: int
    line: int

    @property
    def value(self) -> str:
        t = self.text
        if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
            return t[1:-1]
        return t


def tokens(src: str):
    """nginx-like lexer yielding Token; `;`, `{`, `}` are tokens of their own; `#` comments skipped."""
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and src[i] != "\n":
                i += 1
        elif c in ";{}":
            yield Token(c, i, i + 1, line)
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            yield Token(src[i:j], i, j, line)
            line += src.count("\n", i, j)
            i = j
        else:
            j = i
            while j < n and not src[j].isspace() and src[j] not in ";{}":
                if src[j] == "\\":
                    j += 2
                    continue
                if src[j] == "$" and j + 1 < n and src[j + 1] == "{":  # ${var} is one token
                    j = src.find("}", j) + 1 or n
                    continue
                j += 1
            yield Token(src[i:j], i, j, line)
            i = j


@dataclass(frozen=True)
class ServerDirective:
    args: tuple[Token, ...]  # address first
    end: int  # offset of the `;`

    @property
    def address(self) -> str:
        return self.args[0].value

    def flag(self, name: str) -> Token | None:
        return next((t for t in self.args[1:] if t.value == name), None)


@dataclass(frozen=True)
class Upstream:
    name: str
    file: str
    methods: tuple[str, ...]  # balancing directives present (least_conn, hash, ...)
    servers: tuple[ServerDirective, ...]


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]  # quotes removed
    line: int
    block: tuple["Directive", ...] | None  # the `{ ... }` contents; None for a directive ended by `;`


@dataclass(frozen=True)
class ConfFile:
    """One file as read: its bytes, and its directives or the one-line reason it cannot be parsed."""

    path: str
    data: bytes
    directives: tuple[Directive, ...]
    error: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "surrogateescape")  # every byte kept for the rewrite


def parse_file(path: str, data: bytes) -> ConfFile:
    try:
        return ConfFile(path, data, parse_tree(data.decode("utf-8", "surrogateescape"), path))
    except NginxConfError as e:
        return ConfFile(path, data, (), str(e))  # nginx refuses the whole file too


def parse_tree(src: str, file: str = "<text>") -> tuple[Directive, ...]:
    """The directives of one file, blocks nested (includes are not followed here). A directive may end at
    `}` (as crossplane read it; nginx -t refuses that). NginxConfError on unbalanced braces."""
    stack: list[tuple[list[Token], list[Directive]]] = [([], [])]
    words: list[Token] = []
    for t in tokens(src):
        if t.text in (";", "}") and words:
            stack[-1][1].append(_directive(words, None))
            words = []
        if t.text == "{":
            if not words:
                raise NginxConfError(f'{file}:{t.line}: unexpected "{{"')
            stack.append((words, []))
            words = []
        elif t.text == "}":
            if len(stack) == 1:
                raise NginxConfError(f'{file}:{t.line}: unexpected "}}"')
            head, body = stack.pop()
            stack[-1][1].append(_directive(head, tuple(body)))
        elif t.text != ";":
            words.append(t)
    if len(stack) > 1 or words:
        expecting = '"}"' if len(stack) > 1 else '";" or "}"'
        raise NginxConfError(f"{file}: unexpected end of file, expecting {expecting}")
    return tuple(stack[0][1])


def _directive(words: list[Token], block: tuple[Directive, ...] | None) -> Directive:
    return Directive(words[0].value, tuple(w.value for w in words[1:]), words[0].line, block)


def locate(files: list[ConfFile], upstream: str) -> tuple[str, int]:
    """(file, line) of `upstream NAME` in a config and its includes (nginx_files.ConfFiles.walk), the first
    in nginx's reading order."""
    for f in files:
        found = _find(f.directives, upstream)
        if found is not None:
            return f.path, found
    errors = [f.error for f in files if f.error]
    if errors:
        raise NginxConfError(errors[0])
    root = files[0].path if files else "<config>"
    raise NginxConfError(f"{root} (and its includes) has no `upstream {upstream}` block")


def _find(directives: tuple[Directive, ...], upstream: str) -> int | None:
    for d in directives:
        if d.name == "upstream" and d.args == (upstream,):
            return d.line
        found = _find(d.block or (), upstream)
        if found is not None:
            return found
    return None


def parse_upstream(src: str, upstream: str, file: str = "", line: int = 1) -> Upstream:
    """The upstream block starting at `line` (1-based) of src, with token offsets."""
    toks = list(tokens(src))
    for i, t in enumerate(toks):
        if (t.line >= line and t.text == "upstream" and i + 2 < len(toks) and toks[i + 1].value == upstream
                and toks[i + 2].text == "{"):
            break
    else:
        raise NginxConfError(f"{file or '<text>'} has no `upstream {upstream}` block")
    j, depth = i + 3, 1
    methods: list[str] = []
    servers: list[ServerDirective] = []
    current: list[Token] = []
    while j < len(toks) and depth:
        t = toks[j]
        j += 1
        if t.text == "{":
            depth += 1
            current = []
        elif t.text == "}":
            depth -= 1
            current = []
        elif t.text == ";":
            if depth == 1 and current:
                head = current[0].value
                if head == "server" and len(current) >= 2:
                    d = ServerDirective(tuple(current[1:]), t.start)
                    for w in (a for a in d.args[1:] if a.value.startswith("weight=")):
                        v = w.value.split("=", 1)[1]
                        if not (v.isascii() and v.isdigit() and int(v) >= 1):  # nginx -t refuses it too
                            raise NginxConfError(f"{file or '<text>'}:{w.line}: server {d.address}: weight "
                                                 f"must be a whole number >= 1, got {v!r}")
                    servers.append(d)
                elif head in ("least_conn", "ip_hash", "hash", "random", "least_time", "ntlm", "sticky"):
                    methods.append(head)
            current = []
        else:
            current.append(t)
    if depth:
        raise NginxConfError(f"{file or '<text>'}: `upstream {upstream}` block is not closed")
    return Upstream(upstream, file, tuple(methods), tuple(servers))


def split_address(addr: str) -> tuple[str, int | None]:
    if addr.startswith("unix:"):
        return addr, None
    host, sep, port = addr.rpartition(":")
    if sep and port.isascii() and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return host, int(port)
    return addr, None


def server_state(d: ServerDirective) -> ServerState:
    # nginx honours the last of repeated parameters
    weight = next((t for t in reversed(d.args[1:]) if t.value.startswith("weight=")), None)
    host, port = split_address(d.address)
    return ServerState(
        name=d.address,
        address=host,
        port=port,
        weight=int(weight.value.split("=", 1)[1]) if weight is not None else 1,
        backup=d.flag("backup") is not None,
        # open-source nginx has one "out" flag: drain and maint are both `down`, read back as maint
        admin=AdminState.MAINT if d.flag("down") is not None else AdminState.READY,
        health=Health.NO_CHECK,  # open-source nginx has passive checks only (max_fails), no state to read
    )


def find_server(up: Upstream, server: str) -> list[ServerDirective]:
    return [d for d in up.servers if d.address == server]


def rewrite(src: str, targets: list[ServerDirective], *, weight: int | None = None, backup: bool | None = None,
            down: bool | None = None) -> str:
    """src with the given servers' weight=/backup/down set; every other byte unchanged."""
    edits: list[tuple[int, int, str]] = []
    for d in targets:
        last = d.args[-1]
        if weight is not None:
            # every occurrence: nginx honours the last of repeated parameters
            toks = [t for t in d.args[1:] if t.value.startswith("weight=")]
            for tok in toks:
                edits.append((tok.start, tok.end, f"weight={weight}"))
            if not toks and weight != 1:
                edits.append((d.args[0].end, d.args[0].end, f" weight={weight}"))
        for name, want in (("backup", backup), ("down", down)):
            if want is None:
                continue
            tok = d.flag(name)
            if want and tok is None:
                edits.append((last.end, last.end, f" {name}"))
            elif not want and tok is not None:
                for tok in (t for t in d.args[1:] if t.value == name):  # "backup backup" is valid nginx
                    start = tok.start  # take the whitespace before it too, so "a backup;" -> "a;"
                    while start > 0 and src[start - 1] in " \t":
                        start -= 1
                    edits.append((start, tok.end, ""))
    # back to front so offsets stay valid; at one offset the later edit goes first: "a weight=3 backup"
    order = sorted(range(len(edits)), key=lambda k: (edits[k][0], k), reverse=True)
    for k in order:
        start, end, text = edits[k]
        src = src[:start] + text + src[end:]
    return src
