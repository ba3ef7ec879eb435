"""The model guard end to end on the demo cluster (real HAProxy, agents hashing real model files; node-2 runs
the previous model revision): `asrtop ready node-2` is refused naming both digests and the differing files,
`--force` puts it back and the audit line says forced; `cluster.model_sha256` pinned to node-2's digest turns
the verdict round for the guard, `status --json` and the console's badge and model view."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import tomllib

import pytest

from support.control_cluster import run_cli, without_second_look

from asrtop.config import load_config
from asrtop.sources.factory import build_fleet_source
from asrtop.balancers.factory import build_balancers
from asrtop.tui.format import model_facts
from asrtop.tui.screens.models import render_models
from asrtop.tui.summary import model_badge, summarize


def status(config_path) -> dict:
    p = run_cli(config_path, "status", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def audit_tail(config_path) -> dict:
    path = load_config(config_path).audit_log
    return json.loads(path.read_text().splitlines()[-1])


def test_ready_on_the_odd_model_is_refused_then_forced(demo_cluster):
    cfg = demo_cluster.config_path
    doc = status(cfg)
    digests = {n["name"]: n["model_sha256"] for n in doc["nodes"]}
    majority, odd = digests["node-1"], digests["node-2"]
    assert odd != majority and doc["summary"]["model_target_sha256"] == majority
    assert doc["summary"]["model_target_source"] == "majority" and doc["summary"]["model_differs"] == ["node-2"]
    assert run_cli(cfg, "maint", "node-2").returncode == 0
    try:
        p = run_cli(cfg, "ready", "node-2")
        assert p.returncode == 3 and p.stdout == ""
        (line,) = without_second_look(p.stderr)
        assert line.startswith("asrtop: refused: node-2 runs model ")
        assert odd[:12] in line and majority[:12] in line and "the fleet majority" in line
        assert "files that differ: " in line and "--force" in line
        assert audit_tail(cfg)["outcome"] == "refused"
        assert status(cfg)["nodes"][1]["state"] == "maint"  # nothing sent
    finally:
        forced = run_cli(cfg, "ready", "node-2", "--force")  # leaves the shared cluster as it was
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith("ready node-2: done on ") and "(forced)" in forced.stdout
    last = audit_tail(cfg)
    assert last["forced"] is True and last["outcome"] == "done" and last["node"] == "node-2"
    assert status(cfg)["nodes"][1]["state"] == "ready"


@pytest.mark.parametrize("slow", [["node-2"], ["node-1", "node-3", "node-4"]], ids=["its-own", "the-others"])
def test_slow_agents_do_not_let_the_odd_model_through(demo_cluster, slow):
    """Agents stopped (SIGSTOP) for 2.5 s from the CLI's start: longer than its start and the round's wait
    (0.8 x refresh = 0.8 s), shorter than the model guard's second look (3 s). `ready node-2` is still
    refused. Before the second look, the round's misses let it through: node-2's own (its model unknown, a
    note) or the others' (the majority taken from node-2 alone)."""
    cfg = demo_cluster.config_path
    pids = [n.agent_proc.pid for n in demo_cluster.nodes if n.name in slow]
    assert run_cli(cfg, "maint", "node-2").returncode == 0

    def resume():
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    later = threading.Timer(2.5, resume)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        later.start()
        p = run_cli(cfg, "ready", "node-2")
        assert p.returncode == 3, p.stdout + p.stderr
        looked, refused = p.stderr.splitlines()  # the wait is said before it is taken
        agents = "agent" if len(slow) == 1 else "agents"
        assert looked == (f"asrtop: no answer from the {agents} of {', '.join(slow)} in the fleet read: asking "
                          "again before the model check (up to 3 s)")
        assert refused.startswith("asrtop: refused: node-2 runs model ") and "files that differ: " in refused
        assert status(cfg)["nodes"][1]["state"] == "maint"  # nothing sent
    finally:
        later.cancel()
        resume()
        forced = run_cli(cfg, "ready", "node-2", "--force")  # leaves the shared cluster as it was
    assert forced.returncode == 0, forced.stderr


def test_pinned_target_treats_node_2_as_right(demo_cluster, tmp_path):
    odd = {n["name"]: n["model_sha256"] for n in status(demo_cluster.config_path)["nodes"]}["node-2"]
    data = tomllib.loads(demo_cluster.config_path.read_text())
    data["cluster"]["model_sha256"] = odd
    data["cluster"]["audit_log"] = str(tmp_path / "audit.jsonl")
    pinned = tmp_path / "asrtop.toml"
    pinned.write_text(toml(data))
    doc = status(pinned)
    assert doc["summary"]["model_target_sha256"] == odd
    assert doc["summary"]["model_target_source"] == "cluster.model_sha256"
    assert doc["summary"]["model_differs"] == ["node-1", "node-3", "node-4"]
    # the guard: node-2 may go back, node-4 (the backup, on the majority's model) may not become a primary
    assert run_cli(pinned, "ready", "node-2").returncode == 0
    p = run_cli(pinned, "backup", "node-4", "off", "--dry-run")
    assert p.returncode == 3 and f"cluster.model_sha256 is {odd[:12]}" in p.stderr
    # the console's words come from the same snapshot rules
    cfg = load_config(pinned)
    source = build_fleet_source(cfg, build_balancers(cfg))

    async def snap():
        try:
            return await source.snapshot()
        finally:
            await source.close()

    s = asyncio.run(snap())
    badge, _ = model_badge(summarize(s))
    assert badge == f"1 of 4 nodes on model {odd[:7]} (pinned), 3 differ!"
    assert model_facts(s).target == odd
    text = render_models(s, {}, False).plain
    assert f"Target model (cluster.model_sha256): {odd}" in text and "3 node(s) differ from the target" in text


def toml(data: dict) -> str:
    """A small TOML writer for the demo's config (tables of scalars and arrays of tables)."""
    out = []

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    for key, v in data.items():
        if isinstance(v, dict):
            out.append(f"[{key}]")
            out += [f"{k} = {value(x)}" for k, x in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out.append(f"[[{key}]]")
                out += [f"{k} = {value(x)}" for k, x in item.items()]
        else:
            out.insert(0, f"{key} = {value(v)}")
    return "\n".join(out) + "\n"
