"""Fuzz: `asrtop` command-line arguments (weights, node names, flags) against ONE real HAProxy.

Run in-process through asrtop.cli.main (thousands of cases), plus a sample as real subprocesses (no
traceback ever). Bad input: exit 2 and exactly one line on stderr, and HAProxy's servers exactly as they
were (checked with an independent `show servers state`). A valid weight is applied and read back.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrtop.cli import main
from support.balancers import start_backends, start_haproxy
from support.control_cluster import admin_weight, asrtop_argv, haproxy_entry, write_config

NODES = ["node-1", "node-2", "node-3"]
FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def cluster(debian_haproxy_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-cli")
    with start_backends(NODES) as be, start_haproxy(debian_haproxy_bin, tmp, be.specs()) as hx:
        cfg = write_config(tmp, [haproxy_entry("haproxy-a", hx.socket)], NODES)
        yield hx, cfg


def valid_weight(text: str) -> int | None:
    """The oracle: plain ASCII digits (optionally signed, spaces around) within HAProxy's 0-256."""
    m = re.fullmatch(r"\s*([+-]?[0-9]+)\s*", text)
    if m is None:
        return None
    v = int(m.group(1))
    return v if 0 <= v <= 256 else None


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


def assert_bad_input(code: int, err: str, before, hx, argv) -> None:
    assert code == 2, (argv, code, err)
    lines = [x for x in err.splitlines() if x.startswith("asrtop")]
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)
    assert admin_weight(hx) == before, f"{argv} changed HAProxy"


NEAR_NODES = ["node-1 ", " node-1", "NODE-1", "node-1\n", "node-1;set server asr/node-2 state maint", "asr/node-1",
              "node-1/..", "node-4", "node-", "-", "--", "-x", "--force", "", "node\x00-1", "ｎode-1", "*", "all"]
WEIGHTS = ["-1", "300", "257", "abc", "", " ", "1.5", "1e2", "0x10", "١٢", "٣", "1_0", "+5", " 7 ", "--", "-0",
           "99999999999999999999999", "nan", "inf", "5;set server asr/node-2 state maint", "256", "0", "3"]
node_names = st.sampled_from(NEAR_NODES) | st.text(max_size=12).filter(lambda s: s not in NODES)
weights = st.sampled_from(WEIGHTS) | st.text(max_size=6) | st.integers(-1000, 1000).map(str)


@FUZZ
@given(st.sampled_from(NODES) | node_names, weights)
def test_weight_arguments(cluster, node, weight):
    hx, cfg = cluster
    before = admin_weight(hx)
    argv = ["--config", str(cfg), "weight", node, weight]
    code, out, err = run(argv)
    w = valid_weight(weight)
    if node in NODES and w is not None:
        assert code == 0, (argv, code, err)
        assert admin_weight(hx)[node][1] == str(w)
    else:
        assert_bad_input(code, err, before, hx, argv)


@settings(FUZZ, max_examples=700)  # each case is a whole CLI run reading HAProxy: the weights test covers more
@given(st.sampled_from(["drain", "ready", "maint", "backup"]), node_names,
       st.sampled_from(["on", "off", "ON", "yes", "", "of"]))
def test_node_name_arguments(cluster, command, node, flag):
    hx, cfg = cluster
    before = admin_weight(hx)
    argv = ["--config", str(cfg), command, node] + ([flag] if command == "backup" else [])
    code, out, err = run(argv)
    assert_bad_input(code, err, before, hx, argv)


@pytest.mark.parametrize("args", [["weight", "node-1", "abc"], ["weight", "node-1", "-1"], ["weight", "nope", "3"],
                                  ["drain", "node-1;maint"], ["backup", "node-2", "maybe"], ["weight", "node-1"],
                                  ["drain", "node-1", "--timeout", "x"], ["frobnicate", "node-1"]])
def test_bad_arguments_as_a_real_process(cluster, args):
    hx, cfg = cluster
    before = admin_weight(hx)
    p = subprocess.run(asrtop_argv(cfg, *args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and len([x for x in p.stderr.splitlines() if x.startswith("asrtop")]) == 1
    assert admin_weight(hx) == before
