"""Helpers for the control/CLI tests: write an asrtop.toml for real balancers, run the real `asrtop` CLI."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

from asrtop.config import ClusterConfig, load_config


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def haproxy_entry(name: str, socket: str, backend: str = "asr", agent_checks: str | None = None) -> str:
    out = f"[[balancers]]\nname = {_q(name)}\nkind = \"haproxy\"\nsocket = {_q(socket)}\nbackend = {_q(backend)}\n"
    return out + (f"agent_checks = {_q(agent_checks)}\n" if agent_checks else "")


def nginx_entry(name: str, ngx) -> str:
    argv = lambda cmd: "[" + ", ".join(_q(x) for x in cmd) + "]"  # noqa: E731
    return (f"[[balancers]]\nname = {_q(name)}\nkind = \"nginx\"\nconfig = {_q(ngx.upstream_conf)}\n"
            f"upstream = {_q(ngx.upstream)}\ntest_command = {argv(ngx.test_command)}\n"
            f"reload_command = {argv(ngx.reload_command)}\n")


def node_entry(name: str, address: str | None = None, agent: str | None = None) -> str:
    out = f"[[nodes]]\nname = {_q(name)}\n"
    if address:
        out += f"address = {_q(address)}\n"
    if agent:
        out += f"agent = {_q(agent)}\n"
    return out


def write_config(tmp_path: Path, balancers: Sequence[str], nodes: Iterable[str], *, min_ready: int = 1,
                 read_only: bool = False, name: str = "cluster.toml", refresh: float = 1.0) -> Path:
    """balancers/nodes: entries from haproxy_entry/nginx_entry/node_entry (or bare node names)."""
    node_text = [n if n.startswith("[[nodes]]") else node_entry(n) for n in nodes]
    text = (f"[cluster]\nname = \"test\"\nmin_ready = {min_ready}\nread_only = {str(read_only).lower()}\n"
            f"refresh = {refresh}\naudit_log = {_q(tmp_path / 'audit.jsonl')}\n\n"
            + "\n".join(balancers) + "\n" + "\n".join(node_text))
    p = tmp_path / name
    p.write_text(text)
    return p


def config(path: Path) -> ClusterConfig:
    return load_config(path)


def asrtop_argv(config_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "asrtop.cli", "--config", str(config_path), *args]


SECOND_LOOK = "asrtop: no answer from the agent"  # the model guard asking slow agents again (a loaded box)


def without_second_look(stderr: str) -> list[str]:
    """stderr's lines but the model guard's second-look line, which a loaded box may add before the verdict."""
    return [line for line in stderr.splitlines() if not line.startswith(SECOND_LOOK)]


def run_cli(config_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(asrtop_argv(config_path, *args), capture_output=True, text=True, timeout=timeout)


def raw_servers(hx) -> dict[str, dict[str, str]]:
    """`show servers state` parsed by its header line: server name -> {column: value}."""
    lines = [ln for ln in hx.command(f"show servers state {hx.backend}").splitlines() if ln.strip()]
    header = next(ln for ln in lines if ln.startswith("# ")).lstrip("# ").split()
    rows = [dict(zip(header, ln.split())) for ln in lines if not ln.startswith("#") and len(ln.split()) > 3]
    return {r["srv_name"]: r for r in rows}


def admin_weight(hx) -> dict[str, tuple[str, str]]:
    """server -> (srv_admin_state, srv_uweight): what the tests compare before/after."""
    return {n: (r["srv_admin_state"], r["srv_uweight"]) for n, r in raw_servers(hx).items()}


DRAIN_BIT = 0x08  # SRV_ADMF_DRAIN in srv_admin_state (HAProxy server.h); MAINT is 0x01
MAINT_BIT = 0x01


@contextmanager
def haproxy_pair(tmp_path: Path, bin_a: str, bin_b: str, nodes: Sequence[str]):
    """An HA pair of real HAProxies ("hx-a", "hx-b") over the same loopback backends, and its cluster file.

    Yields (backends, haproxy a, haproxy b, config path)."""
    from support.balancers import start_backends, start_haproxy

    with start_backends(nodes) as be, start_haproxy(bin_a, tmp_path, be.specs()) as a, \
            start_haproxy(bin_b, tmp_path, be.specs()) as b:
        yield be, a, b, write_config(tmp_path, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)],
                                     nodes)
