"""The demo's rollout hook for real: the cluster file's [rollout] hook restarts a simulated node on another
revision (same PID), its agent then hashes that revision's files, and a restart keeps the revision."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from asrtop.agentstatus import parse_status
from asrtop.config import load_config
from asrtop.demo.cluster import OLD_MODEL, DemoCluster, DemoError
from asrtop.demo.simnode import DEFAULT_MODEL as FLEET_MODEL  # what node-1 and node-3 run
from support.balancers import wait_until


@pytest.fixture(scope="module")
def cluster(wheel_haproxy_bin):
    """Three nodes (node-2 on the old revision), agents hashing every 0.2 s. Tests here change revisions."""
    with DemoCluster(nodes=3, agents=True, haproxy_bin=wheel_haproxy_bin, agent_interval="0.2s") as c:
        yield c


def digests(c: DemoCluster) -> dict[str, str | None]:
    """Each agent's model digest from a collection round begun now (the model is re-listed in that round, as
    `asrtop rollout` asks after its hook; plain rounds re-check the model every 30 s)."""
    out = {}
    for n in c.nodes:
        st = parse_status(httpx.get(n.agent_url + "/v1/status?after=now", timeout=10).json())
        out[n.name] = st.model.sha256 if st.model.state == "ok" else None
    return out


def test_cluster_file_hook_moves_node_2_onto_the_fleets_digest(cluster):
    hook = load_config(cluster.config_path).rollout.hook  # what `asrtop rollout` runs, with no flags
    node = cluster.nodes[1]
    assert cluster.node_model(1) == OLD_MODEL
    assert wait_until(lambda: len(set(digests(cluster).values()) - {None}) == 2, timeout=15)
    pid = node.pid
    argv = [arg.format(node=node.name, server=node.server, address=node.address, host="127.0.0.1",
                       agent=node.agent_url) for arg in hook]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[-1].startswith(f"node-2: up on {FLEET_MODEL} after ")
    # Same process (watchdog, PDEATHSIG and the cluster's Popen stay valid), now serving the new revision.
    assert node.proc.poll() is None and httpx.get(node.url + "/health").json()["pid"] == pid
    assert cluster.node_model(1) == FLEET_MODEL
    assert wait_until(lambda: len(set(digests(cluster).values())) == 1 and None not in digests(cluster).values(), timeout=15)


def test_restart_after_an_upgrade_keeps_the_revision_and_a_dead_node_is_one_line(cluster):
    cluster.upgrade_node(2, "Fun-ASR-Nano-2512-badcanary")
    assert cluster.node_model(2) == "Fun-ASR-Nano-2512-badcanary"
    cluster.kill_node(2)
    with pytest.raises(DemoError, match="no simulated node answers /health"):
        cluster.upgrade_node(2, FLEET_MODEL, timeout=2)
    cluster.restart_node(2)
    assert cluster.node_model(2) == "Fun-ASR-Nano-2512-badcanary"  # the model dir says which revision
    cluster.upgrade_node(2, FLEET_MODEL)
    assert cluster.node_model(2) == FLEET_MODEL
