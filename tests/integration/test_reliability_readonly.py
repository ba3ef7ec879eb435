"""--read-only is enforced in the control layer, not only hidden in the UI: Controller(read_only=True),
`cluster.read_only = true` and `asrtop --read-only ...` refuse every action (exit 3) and neither HAProxy
nor nginx changes; the refusal is audited."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.control import Action, Controller
from asrtop.exitcodes import REFUSED_GUARDRAIL
from support.balancers import nginx_upstream_block, start_backends, start_haproxy, start_nginx
from support.control_cluster import admin_weight, config, haproxy_entry, nginx_entry, node_entry, run_cli, write_config

NODES = ("n1", "n2", "n3")
ACTIONS = [Action("drain", "n2"), Action("maint", "n2"), Action("ready", "n2"), Action("weight", "n1", 7),
           Action("weight", "n1", 0), Action("backup", "n3", True), Action("backup", "n1", False)]


@pytest.fixture
def cluster(tmp_path, debian_haproxy_bin, nginx_bin):
    with start_backends(NODES) as be, start_haproxy(debian_haproxy_bin, tmp_path, be.specs()) as hx, \
            start_nginx(nginx_bin, tmp_path, nginx_upstream_block("fun_asr_backend", be.specs())) as ngx:
        nodes = [node_entry(n, address=f"127.0.0.1:{be.ports[n]}") for n in NODES]
        entries = [haproxy_entry("hx", hx.socket), nginx_entry("ngx", ngx)]
        yield hx, ngx, tmp_path, entries, nodes


def state(hx, ngx):
    return admin_weight(hx), ngx.upstream_conf.read_bytes(), ngx.upstream_conf.stat().st_mtime_ns


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: f"{a.kind}-{a.node}-{a.value}")
@pytest.mark.parametrize("how", ["controller", "config"])
async def test_read_only_refuses_every_action(cluster, action, how):
    hx, ngx, tmp, entries, nodes = cluster
    path = write_config(tmp, entries, nodes, read_only=(how == "config"))
    cfg = config(path)
    before = state(hx, ngx)
    ctl = Controller(cfg, build_balancers(cfg), read_only=(how == "controller"))
    plan = await ctl.plan(action)
    res = await ctl.apply(action, force=True)  # --force overrides guardrails, never read-only
    assert plan.refusal is not None and "read-only" in plan.refusal
    assert (res.outcome, res.exit_code) == ("refused", REFUSED_GUARDRAIL) and "read-only" in res.message
    assert state(hx, ngx) == before
    audit = [json.loads(x) for x in cfg.audit_log.read_text().splitlines()]
    assert audit[-1]["node"] == action.node and "refused" in json.dumps(audit[-1])


@pytest.mark.parametrize("args", [["drain", "n2"], ["weight", "n1", "9", "--force"], ["backup", "n3", "on"],
                                  ["maint", "n1", "--force"]])
def test_cli_read_only_flag(cluster, args):
    hx, ngx, tmp, entries, nodes = cluster
    path = write_config(tmp, entries, nodes)
    before = state(hx, ngx)
    p = subprocess.run([sys.executable, "-m", "asrtop.cli", "--config", str(path), "--read-only", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == REFUSED_GUARDRAIL, p.stderr
    assert "read-only" in p.stderr and "Traceback" not in p.stderr
    assert state(hx, ngx) == before
    ok = run_cli(path, "weight", "n1", "9")  # the same cluster without --read-only does change
    assert ok.returncode == 0, ok.stderr
    assert admin_weight(hx)["n1"][1] == "9"
