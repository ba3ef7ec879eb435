"""`add server` parameters whose default differs from a configured server's, carried explicitly.

HAProxy 2.6 creates a dynamic server (`add server`) with `pool-max-conn 0` and `pool-purge-delay 0`: it
keeps no idle connection, so every request opens a new backend connection. A configured server gets
-1 (unlimited) and 5s (configuration manual, "pool-max-conn", "pool-purge-delay"). 2.8 gives dynamic
servers the configured defaults. Measured on both (`show servers conn`: idle_lim, purge_delay) and
checked there for every other default we could observe (check and agent intervals, rise/fall: equal).

A backup toggle re-creates the server, so it carries both on every version: the value its config line
(or a `default-server` line) gives, else the configured default. The probe server, created with the same
words, must then show those values in `show servers conn`; otherwise the toggle is refused before anything
is deleted.
"""

from __future__ import annotations

import re

# keyword -> (value a configured server gets by default, the `show servers conn` column showing it)
CARRIED = {"pool-max-conn": ("-1", "idle_lim"), "pool-purge-delay": ("5s", "purge_delay")}

_UNITS_MS = {"us": 0.001, "ms": 1.0, "": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0}
_TIME = re.compile(r"^([0-9]+)(us|ms|s|m|h|d|)$")


def last_value(words: list[str], keyword: str) -> str | None:
    """The value of the keyword's last occurrence (HAProxy applies server keywords in order)."""
    value = None
    for i, w in enumerate(words[:-1]):
        if w == keyword:
            value = words[i + 1]
    return value


def pool_words(words: list[str]) -> list[str]:
    """The carried keywords the add-server words do not set yet, with their configured defaults."""
    out: list[str] = []
    for keyword, (default, _) in CARRIED.items():
        if last_value(words, keyword) is None:
            out += [keyword, default]
    return out


def wanted(words: list[str]) -> dict[str, str]:
    """keyword -> value the server will get from these add-server words (defaults for the missing ones)."""
    return {k: last_value(words, k) or default for k, (default, _) in CARRIED.items()}


def as_shown(keyword: str, value: str) -> str | None:
    """The value as `show servers conn` prints it (purge_delay in ms); None when it cannot be read."""
    if keyword == "pool-purge-delay":
        m = _TIME.match(value.strip())
        return None if m is None else str(int(int(m.group(1)) * _UNITS_MS[m.group(2)]))
    v = value.strip()
    return v if re.fullmatch(r"-?[0-9]+", v) else None


def parse_servers_conn(text: str, backend: str) -> dict[str, dict[str, str]]:
    """`show servers conn <backend>`: server -> {column: value}, by header name. {} when not understood.

    2.6 prints fewer columns for a server without idle-connection storage; zip() stops at the shorter."""
    lines = [x for x in text.splitlines() if x.strip()]
    if not lines or not lines[0].startswith("#"):
        return {}
    header = lines[0].lstrip("#").split()
    out: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        cols = line.split()
        if cols and cols[0].startswith(f"{backend}/"):
            out[cols[0][len(backend) + 1:]] = dict(zip(header, cols))
    return out


def mismatch(servers_conn: str, backend: str, server: str, words: list[str]) -> str | None:
    """Why the server (the probe) does not have the pool settings its add-server words ask for; None when it
    has them or HAProxy does not show them (`show servers conn` unknown: nothing to compare)."""
    row = parse_servers_conn(servers_conn, backend).get(server)
    if row is None:
        return None
    for keyword, value in wanted(words).items():
        want, got = as_shown(keyword, value), row.get(CARRIED[keyword][1])
        if want is not None and got is not None and got != want:
            return f"HAProxy gave the probe server {keyword} {got} where the line asks for {value}"
    return None
