"""`asrtop check` through the command line on real parts: the demo cluster (HAProxy 2.8, agents, simulated
nodes), a cluster whose balancer and agent are both gone (UNKNOWN), and Nagios' UNKNOWN for usage and
config errors. The engine's rules are replaced by a test rule (the real rules' end-to-end test is the demo's)."""

from __future__ import annotations

import json
import urllib.request

import pytest

import asrtop.problems.rules as engine
from asrtop.cli import main
from asrtop.problems.engine import OneShot, Rule, evaluate_once
from asrtop.problems.model import Finding, Severity
from support.netutil import free_port


def differs(ctx):
    snap = ctx.snapshot
    for name in snap.nodes_differing_from_target():
        yield Finding("model-differs", name, Severity.CRITICAL,
                      f"runs model {snap.node(name).model_digest[:7]}, the fleet {snap.target_digest[:7]}",
                      f"asrtop rollout {name}")


def digest(agent_url: str) -> str:
    with urllib.request.urlopen(agent_url + "/v1/status", timeout=5) as r:
        return json.loads(r.read())["model"]["sha256"]


@pytest.fixture
def test_rules(monkeypatch):
    rules = (Rule("model-differs", "Model differs", differs),)
    seen = {}

    def check(snapshot, history, settings, min_ready=1, now=None) -> OneShot:
        seen["min_ready"] = min_ready
        return evaluate_once(rules, snapshot, history, settings, now)
    monkeypatch.setattr(engine, "RULES", rules)
    monkeypatch.setattr(engine, "check", check)
    return seen


def test_demo_names_the_node_on_another_model_then_follows_the_configured_target(demo_cluster, test_rules,
                                                                                 tmp_path, capsys):
    # the demo runs one node on another revision: the issue's own example line
    models = [digest(n.agent_url) for n in demo_cluster.nodes]
    odd = next(i for i, m in enumerate(models) if models.count(m) == 1)
    fleet = next(m for m in models if models.count(m) > 1)
    assert main(["check", "--config", str(demo_cluster.config_path)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"CRITICAL: node-{odd + 1} runs model {models[odd][:7]}, the fleet {fleet[:7]} | "
                               "problems=1;;;0 critical=1;;0;0 warning=0;0;;0 nodes=4;;;0 ")
    assert lines[1:] == [f"CRITICAL node-{odd + 1} runs model {models[odd][:7]}, the fleet {fleet[:7]}; "
                         f"action: asrtop rollout node-{odd + 1}"]
    assert test_rules["min_ready"] == 1
    # cluster.model_sha256 names the odd node's model: now the three others differ
    cfg = tmp_path / "asrtop.toml"
    cfg.write_text(demo_cluster.config_path.read_text().replace(
        "[cluster]\n", f'[cluster]\nmodel_sha256 = "{models[odd]}"\n'))
    assert main(["check", "--json", "--config", str(cfg)]) == 2
    doc = json.loads(capsys.readouterr().out)
    others = [f"node-{i + 1}" for i in range(4) if i != odd]
    assert doc["status"] == "CRITICAL" and doc["exit"] == 2 and [p["node"] for p in doc["problems"]] == others
    assert doc["summary"] == f"CRITICAL: {others[0]} runs model {fleet[:7]}, the fleet {models[odd][:7]} (+2 more)"
    assert doc["perfdata"]["nodes"] == 4 and doc["perfdata"]["critical"] == 3


def test_unknown_when_no_balancer_and_no_agent_can_be_read(tmp_path, test_rules, capsys):
    cfg = tmp_path / "asrtop.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
                   f'[[balancers]]\nname = "hx"\nkind = "haproxy"\nsocket = "{tmp_path / "gone.sock"}"\n'
                   'backend = "asr"\n'
                   f'[[nodes]]\nname = "node-1"\naddress = "127.0.0.1:{free_port()}"\n'
                   f'agent = "http://127.0.0.1:{free_port()}"\n')
    assert main(["check", "--config", str(cfg)]) == 3
    out = capsys.readouterr().out
    assert out.startswith("UNKNOWN: cannot read the fleet: no balancer could be read (") and out.count("\n") == 1
    assert out.rstrip().endswith("and no agent answered")


def test_usage_and_config_errors_are_unknown_for_check_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "--bogus"])
    assert e.value.code == 3
    assert capsys.readouterr().out.startswith("UNKNOWN: asrtop check: error: unrecognized arguments: --bogus")
    with pytest.raises(SystemExit) as e:
        main(["check", "--prometheus"])
    assert e.value.code == 3 and capsys.readouterr().out.startswith("UNKNOWN: asrtop check: error: argument")
    assert main(["check", "--config", str(tmp_path / "missing.toml")]) == 3
    assert capsys.readouterr().out == f"UNKNOWN: {tmp_path / 'missing.toml'}: config file not found\n"
    with pytest.raises(SystemExit) as e:  # every other command keeps its own exit code for bad input
        main(["status", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_check_help_says_the_nagios_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "0 OK, 1 WARNING, 2 CRITICAL" in out and "3 UNKNOWN" in out and "--json" in out
