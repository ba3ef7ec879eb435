"""Faults across an HA pair of real HAProxies (2.8 wheel + 2.6 Debian):

- one balancer stopped in the middle of a two-balancer action: reported as partial (exit 4) naming it, the
  other balancer's change intact; after it is back, rerunning the same command converges (exit 0, both);
- two operators (two `asrtop` processes) issuing conflicting actions on the same node at once: the final
  state is one of the two, identical on both balancers, and both actions are in the audit log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.control import Action, Controller
from asrtop.exitcodes import OK, PARTIAL
from support.control_cluster import DRAIN_BIT, admin_weight, asrtop_argv, config, haproxy_pair, raw_servers, run_cli

NODES = ("n1", "n2", "n3")


@pytest.fixture
def pair(tmp_path, wheel_haproxy_bin, debian_haproxy_bin):
    with haproxy_pair(tmp_path, wheel_haproxy_bin, debian_haproxy_bin, NODES) as (_, a, b, path):
        yield a, b, path


class StopsWhenChanged:
    """A balancer adapter whose HAProxy process is SIGKILLed the moment a change is sent to it."""

    def __init__(self, inner, hx):
        self.inner, self.hx = inner, hx
        self.name, self.kind, self.max_weight = inner.name, inner.kind, inner.max_weight

    def servers(self):
        return self.inner.servers()

    def _die(self):
        self.hx.proc.kill()
        self.hx.proc.wait(5)

    def set_state(self, server, state):
        self._die()
        return self.inner.set_state(server, state)

    def set_weight(self, server, weight):
        self._die()
        return self.inner.set_weight(server, weight)

    def set_backup(self, server, backup):
        self._die()
        return self.inner.set_backup(server, backup)


def restart(hx) -> None:
    with open(hx.log_path, "ab") as log:
        hx.proc = subprocess.Popen([hx.binary, "-db", "-f", str(hx.config_path)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=hx.config_path.parent)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if hx.command("show info").startswith("Name:"):
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("haproxy did not come back")


@pytest.mark.parametrize("action, check", [
    (Action("drain", "n2"), lambda r: int(r["srv_admin_state"]) & DRAIN_BIT),
    (Action("weight", "n2", 7), lambda r: r["srv_uweight"] == "7"),
])
async def test_balancer_stopped_mid_action_is_partial_and_rerun_converges(pair, action, check):
    a, b, path = pair
    cfg = config(path)
    hx_a, hx_b = build_balancers(cfg)
    res = await Controller(cfg, [hx_a, StopsWhenChanged(hx_b, b)]).apply(action)
    assert (res.outcome, res.exit_code) == ("partial", PARTIAL), res.message
    assert "hx-b" in res.message and res.message.count("\n") == 0
    assert check(raw_servers(a)["n2"]), "the surviving balancer's change is not intact"
    assert [o.ok for o in res.balancers] == [True, False]
    restart(b)  # back, from its config: the change never reached it
    assert not check(raw_servers(b)["n2"])
    args = [action.kind, action.node] + ([str(action.value)] if action.value is not None else [])
    again = run_cli(path, *args)
    assert again.returncode == OK, again.stderr
    assert check(raw_servers(a)["n2"]) and check(raw_servers(b)["n2"])
    audit = [json.loads(x) for x in cfg.audit_log.read_text().splitlines()]
    assert [r["outcome"] for r in audit] == ["partial", "done"]


CONFLICTS = [(("weight", "n1", "7"), ("weight", "n1", "9")), (("drain", "n2"), ("ready", "n2")),
             (("maint", "n3"), ("weight", "n3", "5"))]


@pytest.mark.parametrize("first, second", CONFLICTS, ids=["weight-weight", "drain-ready", "maint-weight"])
def test_two_operators_conflicting_at_once(pair, first, second):
    a, b, path = pair
    cfg = config(path)
    for round_ in range(5):
        n_audit = len(cfg.audit_log.read_text().splitlines()) if cfg.audit_log.exists() else 0
        # both processes start together; the `--force` keeps the guardrail out of the race
        procs = [subprocess.Popen(asrtop_argv(path, *cmd, "--force"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for cmd in (first, second)]
        outs = [p.communicate(timeout=60) for p in procs]
        codes = [p.returncode for p in procs]
        node = first[1]
        sa, sb = admin_weight(a)[node], admin_weight(b)[node]
        assert sa == sb, f"round {round_}: balancers disagree on {node}: hx-a {sa}, hx-b {sb}; {outs}"
        audit = [json.loads(x) for x in cfg.audit_log.read_text().splitlines()][n_audit:]
        assert sorted((r["action"], r["node"]) for r in audit) == sorted([first[:2], second[:2]])
        assert all(c in (OK, PARTIAL) for c in codes), outs
        # the final state is what one of the two asked for
        want = [expected(cmd, sa) for cmd in (first, second)]
        assert any(want), f"round {round_}: final {sa} is neither {first} nor {second}"
        run_cli(path, "ready", node, "--force")  # reset between rounds
        run_cli(path, "weight", node, "1")


def expected(cmd, state) -> bool:
    admin, weight = int(state[0]), state[1]
    kind = cmd[0]
    if kind == "weight":
        return weight == cmd[2]
    if kind == "drain":
        return bool(admin & DRAIN_BIT) and not admin & 1
    if kind == "maint":
        return bool(admin & 1)
    return admin == 0  # ready


class SlowToChange:
    """A balancer adapter whose changes arrive late (a slow link to the second balancer of the pair)."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay
        self.name, self.kind, self.max_weight = inner.name, inner.kind, inner.max_weight

    def servers(self):
        return self.inner.servers()

    def set_weight(self, server, weight):
        time.sleep(self.delay)
        return self.inner.set_weight(server, weight)


async def test_concurrent_actions_are_serialised_so_the_pair_never_disagrees(pair):
    """Deterministic version of the race above: operator 1's change reaches hx-b late; operator 2 acts in
    between. Unserialised, hx-a ends at 9 and hx-b at 7; serialised (asrtop.oplock), both at 9."""
    a, b, path = pair
    cfg = config(path)
    hx_a, hx_b = build_balancers(cfg)
    first = Controller(cfg, [hx_a, SlowToChange(hx_b, 0.6)])
    second = Controller(cfg, build_balancers(cfg))

    async def later():
        await asyncio.sleep(0.2)
        return await second.apply(Action("weight", "n1", 9))

    r1, r2 = await asyncio.gather(first.apply(Action("weight", "n1", 7)), later())
    assert (r1.outcome, r2.outcome) == ("done", "done"), (r1.message, r2.message)
    assert admin_weight(a)["n1"][1] == admin_weight(b)["n1"][1] == "9"
