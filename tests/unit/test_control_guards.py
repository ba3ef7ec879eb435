"""asrtop.control guardrails: the model guard (target = cluster.model_sha256, else the majority), the batch
guardrail, force and its audit line, the plan's warnings. Pure rules, and the real Controller over in-memory
balancers and a source whose agents report model digests."""

from __future__ import annotations

import json
from dataclasses import replace

from asrtop.agentstatus import AgentStatus, AsrReading, HostReading, ModelReading
from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import ClusterConfig, NodeConfig
from asrtop.control import Action, Controller
from asrtop.control.controller import SECOND_LOOK_TIMEOUT
from asrtop.control.model import GUARD_MIN_READY, GUARD_MODEL
from asrtop.control.rules import (batch_refusal, consequence, model_refusal, model_warning, puts_in_rotation,
                                  second_look_line)
from asrtop.fleet import AgentReading, BalancerReading, FleetSnapshot, merge
from asrtop.modelfiles import diff_files

A = "a" * 64
B = "b" * 64
NAMES = ("n1", "n2", "n3")


def status(name: str, digest: str | None, state: str = "ok") -> AgentStatus:
    return AgentStatus(name, "0.1", 0.0, 1.0, HostReading(), "none", None, (), AsrReading(in_flight=0),
                       ModelReading(state, digest), {})


class Fleet:
    """A FleetSource: three nodes behind one in-memory HAProxy, agents reporting `digests`."""

    def __init__(self, digests: dict[str, str | None], target: str | None = None,
                 admin: dict[str, AdminState] | None = None, missed: tuple[str, ...] = (),
                 missed_again: str | None = None):
        """`missed`: nodes whose agent gave no answer in the snapshot's round (a slow agent); asked again
        alone (`agent_status`), it answers, or fails with `missed_again`."""
        self.digests, self.target = digests, target
        self.missed, self.missed_again = missed, missed_again
        self.status_asked: list[tuple[str, float]] = []
        self.admin = {n: AdminState.READY for n in NAMES} | (admin or {})
        self.weight = {n: 1 for n in NAMES}
        self.backup = {n: False for n in NAMES}
        self.files_asked: list[str] = []

    def servers(self) -> tuple[ServerState, ...]:
        return tuple(ServerState(n, "127.0.0.1", 9000 + i, self.weight[n], self.backup[n], self.admin[n], Health.UP,
                                 0, 0) for i, n in enumerate(NAMES))

    async def snapshot(self) -> FleetSnapshot:
        nodes = [NodeConfig(n, agent=f"http://127.0.0.1:{10000 + i}") for i, n in enumerate(NAMES)]
        agents = {n: AgentReading(c.agent or "", status(n, self.digests.get(n), "ok" if self.digests.get(n)
                                                        else "hashing"), 100.0) for n, c in zip(NAMES, nodes)}
        agents |= {n: AgentReading(agents[n].url, None, None, "no answer within 0.8s") for n in self.missed}
        return merge(nodes, agents, [BalancerReading("hx", "haproxy", self.servers())], 100.0, 1.0, (), self.target)

    async def model_files(self, agent_url: str) -> list[dict] | str:
        self.files_asked.append(agent_url)
        node = NAMES[int(agent_url.rsplit(":", 1)[1]) - 10000]
        weights = self.digests.get(node) or "?"
        return [{"path": "am.mvn", "size": 11, "sha256": "c" * 64},
                {"path": "model.pt", "size": 100, "sha256": weights}]

    async def agent_status(self, agent_url: str, timeout: float) -> AgentStatus | str:
        self.status_asked.append((agent_url, timeout))
        if self.missed_again is not None:
            return self.missed_again
        n = NAMES[int(agent_url.rsplit(":", 1)[1]) - 10000]
        return status(n, self.digests.get(n), "ok" if self.digests.get(n) else "hashing")

    async def close(self) -> None:
        pass


class Memory:
    """The fleet's balancer (kind haproxy), in memory."""

    kind, max_weight, name = "haproxy", 256, "hx"

    def __init__(self, fleet: Fleet):
        self.fleet = fleet

    def servers(self):
        return list(self.fleet.servers())

    def set_state(self, server, state):
        self.fleet.admin[server] = state

    def set_weight(self, server, weight):
        self.fleet.weight[server] = weight

    def set_backup(self, server, backup):
        self.fleet.backup[server] = backup


def controller(tmp_path, fleet: Fleet, min_ready: int = 1) -> Controller:
    cfg = ClusterConfig(path=None, min_ready=min_ready, audit_log=tmp_path / "audit.jsonl", model_sha256=fleet.target)
    return Controller(cfg, [Memory(fleet)], source=fleet)


def audit_lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


async def test_ready_on_a_node_with_another_model_is_refused_naming_both_digests_and_the_files(tmp_path):
    fleet = Fleet({"n1": A, "n2": B, "n3": A}, admin={"n2": AdminState.MAINT})
    ctl = controller(tmp_path, fleet)
    res = await ctl.apply(Action("ready", "n2"))
    assert (res.outcome, res.exit_code) == ("refused", 3)
    assert res.message.count("\n") == 0
    assert f"n2 runs model {B[:12]}, the fleet majority is {A[:12]}" in res.message
    assert "files that differ: model.pt (sha256" in res.message and "am.mvn" not in res.message
    assert fleet.admin["n2"] is AdminState.MAINT  # nothing sent
    forced = await ctl.apply(Action("ready", "n2"), force=True)
    assert forced.outcome == "done" and forced.forced and fleet.admin["n2"] is AdminState.READY
    last = audit_lines(tmp_path)[-1]
    assert last["forced"] is True and last["force"] is True and last["outcome"] == "done"
    # force without a guard to override is not "forced"
    again = await ctl.apply(Action("ready", "n1"), force=True)
    assert not again.forced and audit_lines(tmp_path)[-1]["forced"] is False


async def test_pinned_target_makes_the_minority_right_and_the_majority_wrong(tmp_path):
    fleet = Fleet({"n1": A, "n2": B, "n3": A}, target=B,
                  admin={"n1": AdminState.MAINT, "n2": AdminState.MAINT})
    ctl = controller(tmp_path, fleet)
    assert (await ctl.apply(Action("ready", "n2"))).outcome == "done"
    res = await ctl.apply(Action("ready", "n1"))
    assert res.outcome == "refused" and f"cluster.model_sha256 is {B[:12]}" in res.message
    snap = await fleet.snapshot()
    assert snap.target_digest == B and snap.nodes_differing_from_target() == ("n1", "n3")
    assert [g.target for g in snap.model_groups()] == [True, False]


def test_which_actions_put_a_node_in_rotation():
    yes = [Action("ready", "n"), Action("weight", "n", 3), Action("backup", "n", False)]
    no = [Action("drain", "n"), Action("maint", "n"), Action("weight", "n", 0), Action("backup", "n", True)]
    assert all(puts_in_rotation(a) for a in yes) and not any(puts_in_rotation(a) for a in no)


async def test_unknown_model_is_never_matching_but_only_warned(tmp_path):
    fleet = Fleet({"n1": A, "n2": None, "n3": A})
    snap = await fleet.snapshot()
    assert model_refusal(snap, Action("ready", "n2")) is None
    warning = model_warning(snap, Action("ready", "n2"))
    assert warning == f"n2's model is unknown (hashing): not checked against the fleet majority {A[:12]}"
    assert "n2" in snap.nodes_model_unknown() and "n2" not in snap.nodes_differing_from_target()
    plan = await controller(tmp_path, fleet).plan(Action("ready", "n2"))
    assert plan.refusals == () and plan.warnings == (warning,)


async def test_a_node_whose_agent_missed_the_round_is_asked_again_before_the_model_guard(tmp_path):
    """A slow agent (no answer within the round's 0.8 x refresh) must not let a node on another model into
    rotation: the controller asks that agent once more, alone and with longer, before the guard decides."""
    fleet = Fleet({"n1": A, "n2": B, "n3": A}, admin={"n2": AdminState.MAINT}, missed=("n2",))
    assert (await fleet.snapshot()).node("n2").model_digest is None  # what the round saw
    ctl = controller(tmp_path, fleet)
    res = await ctl.apply(Action("ready", "n2"))
    assert (res.outcome, res.exit_code) == ("refused", 3) and f"n2 runs model {B[:12]}" in res.message
    assert fleet.status_asked == [("http://127.0.0.1:10001", SECOND_LOOK_TIMEOUT)]
    assert fleet.admin["n2"] is AdminState.MAINT  # nothing sent
    # only for an action that puts the node in rotation, and only the agents that missed the round
    await ctl.plan(Action("drain", "n2"))
    assert len(fleet.status_asked) == 1


async def test_agents_that_missed_the_round_are_asked_again_before_the_majority_is_taken(tmp_path):
    """n1 and n3 (model A) slow: the round's majority would be n2's own model B, and n2 would pass."""
    fleet = Fleet({"n1": A, "n2": B, "n3": A}, admin={"n2": AdminState.MAINT}, missed=("n1", "n3"))
    assert (await fleet.snapshot()).target_digest == B  # what the round saw
    res = await controller(tmp_path, fleet).apply(Action("ready", "n2"))
    assert res.outcome == "refused" and f"n2 runs model {B[:12]}, the fleet majority is {A[:12]}" in res.message
    assert sorted(url for url, _ in fleet.status_asked) == ["http://127.0.0.1:10000", "http://127.0.0.1:10002"]
    # a batch asks each of them once, before any of its plans
    fleet.status_asked.clear()
    batch = await controller(tmp_path, fleet).plan([Action("ready", "n2"), Action("weight", "n3", 5)])
    assert batch.guarded_by(GUARD_MODEL) and len(fleet.status_asked) == 2
    read_only = controller(tmp_path, fleet)
    read_only.read_only = True  # refuses every plan at once: nobody is asked again
    assert all(p.refusals for p in (await read_only.plan([Action("ready", "n2"), Action("weight", "n3", 5)])).plans)
    assert len(fleet.status_asked) == 2
    # a pinned target needs only the node's own digest: the others are not asked
    pinned = Fleet({"n1": A, "n2": B, "n3": A}, target=A, missed=("n1", "n3"))
    assert (await controller(tmp_path, pinned).plan(Action("ready", "n2"))).refusals
    assert pinned.status_asked == []


def test_the_second_look_is_said_naming_a_few_agents():
    assert second_look_line(["n2"], 3.0) == ("no answer from the agent of n2 in the fleet read: asking again "
                                             "before the model check (up to 3 s)")
    many = second_look_line([f"n{i}" for i in range(12)], 3.0)
    assert "agents of n0, n1, n2, n3, n4, n5, n6, n7, n8, n9 and 2 more in the fleet read" in many


async def test_a_second_miss_is_warned_with_its_reason(tmp_path):
    fleet = Fleet({"n1": A, "n2": B, "n3": A}, missed=("n2",), missed_again="no answer within 3s")
    plan = await controller(tmp_path, fleet).plan(Action("ready", "n2"))
    assert plan.refusals == ()
    assert plan.warnings == (f"n2's model is unknown (no agent answer: no answer within 3s): not checked against "
                             f"the fleet majority {A[:12]}",)


async def test_batch_plan_refuses_what_each_node_alone_may_do(tmp_path):
    fleet = Fleet({"n1": A, "n2": A, "n3": A})
    ctl = controller(tmp_path, fleet, min_ready=2)
    alone = await ctl.plan(Action("drain", "n1"))
    assert alone.refusals == ()
    batch = await ctl.plan([Action("drain", "n1"), Action("drain", "n2")])
    assert [p.refusals for p in batch.plans] == [(), ()]
    assert batch.guarded_by(GUARD_MIN_READY) and batch.forceable
    assert batch.refusal == ("refused: taking n1, n2 out would leave 1 ready primary node(s), min_ready is 2 "
                             "(use --force to override)")
    results = await ctl.apply_batch([Action("drain", "n1"), Action("drain", "n2")])
    assert [r.exit_code for r in results] == [3, 3] and fleet.admin["n1"] is AdminState.READY
    results = await ctl.apply_batch([Action("drain", "n1"), Action("drain", "n2")], force=True)
    assert [r.outcome for r in results] == ["done", "done"] and fleet.admin["n2"] is AdminState.DRAIN
    assert [line["outcome"] for line in audit_lines(tmp_path)] == ["refused", "refused", "done", "done"]


async def test_batch_with_model_guard_and_min_ready_lists_both(tmp_path):
    fleet = Fleet({"n1": A, "n2": B, "n3": A}, admin={"n2": AdminState.MAINT})
    plan = await controller(tmp_path, fleet).plan([Action("ready", "n2"), Action("drain", "n1")])
    assert plan.guarded_by(GUARD_MODEL) and not plan.guarded_by(GUARD_MIN_READY) and plan.forceable
    assert plan.lines[0].startswith("n2 carries 0 in-flight requests")


def test_batch_refusal_ignores_a_single_node():
    snap = merge([NodeConfig("n1")], {}, [BalancerReading("hx", "haproxy", (
        ServerState("n1", "h", 1, 1, False, AdminState.READY, Health.UP),))], 1.0)
    assert batch_refusal(snap, [Action("drain", "n1")], 1) is None  # the node's own plan says it


def test_file_diff_names_what_differs():
    ref = [{"path": "a", "size": 1, "sha256": "x"}, {"path": "b", "size": 2048, "sha256": "y"}]
    other = [{"path": "b", "size": 4096, "sha256": "z"}, {"path": "c", "size": 1, "sha256": "w"}]
    assert [(d.path, d.what) for d in diff_files(ref, other)] == [
        ("a", "missing here"), ("b", "size 2.0 KiB -> 4.0 KiB, sha256 y -> z"), ("c", "only here")]
    assert diff_files(ref, list(ref)) == []


async def test_batch_confirmation_is_per_node_with_one_guardrail_line_and_the_hint_apart(tmp_path):
    """Issue 12 item 9: each node's change lines under its name, ONE line for the guardrail over the batch
    (not "2 of 3 primaries stay ready" per node above a refusal), the refusal's line without the CLI's hint."""
    fleet = Fleet({"n1": A, "n2": A, "n3": A})
    batch = await controller(tmp_path, fleet, min_ready=2).plan([Action("drain", "n1"), Action("drain", "n2")])
    assert batch.lines == ("n1 carries 0 in-flight requests", "  hx: state ready -> drain",
                           "n2 carries 0 in-flight requests", "  hx: state ready -> drain",
                           "together: 1 of 3 primaries stay ready")
    line = "refused: taking n1, n2 out would leave 1 ready primary node(s), min_ready is 2"
    assert batch.refusal_lines == line  # the control layer's own words, the same in both front ends
    assert batch.refusal == f"{line} (use --force to override)"  # the CLI's words, unchanged
    assert batch.force_hint("press f") == "press f to override"
    one = await controller(tmp_path, fleet, min_ready=2).plan([Action("drain", "n1")])
    assert one.lines == ("n1 carries 0 in-flight requests; 2 of 3 primaries stay ready", "  hx: state ready -> drain")


async def test_a_backup_toggle_on_haproxy_says_the_server_is_recreated_and_shows_maint(tmp_path):
    """Issue 12 item 4: the re-create's maint (measured 2-6 s under the demo's load) is said before it happens,
    in the plan the CLI's --dry-run and the console's confirmation both show."""
    fleet = Fleet({"n1": A, "n2": A, "n3": A})
    plan = await controller(tmp_path, fleet).plan(Action("backup", "n1", True))
    assert plan.consequence == ("n1 carries 0 in-flight requests; 2 of 3 primaries stay ready; hx: re-created to "
                                "change backup, it shows maint until its in-flight requests finish (about 3 s under "
                                "load), then returns as a backup")
    snap = await fleet.snapshot()
    nginx = replace(snap, balancers=tuple(replace(b, kind="nginx") for b in snap.balancers))
    assert "re-created" not in consequence(nginx, Action("backup", "n1", True))  # nginx edits its config
    assert "re-created" not in consequence(snap, Action("drain", "n1"))
