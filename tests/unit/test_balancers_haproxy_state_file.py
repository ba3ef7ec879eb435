"""asrtop.balancers.haproxy_state_file: which file a reload loads server states from, and writing it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from asrtop.balancers.base import NotPersisted
from asrtop.balancers.haproxy_api import BackendAPI
from asrtop.balancers.haproxy_state_file import StateFile, keep, locate, reload_note, write_atomically

DUMP = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
        "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
        "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
        "srv_check_addr srv_agent_addr srv_agent_port\n"
        "3 asr 1 n1 127.0.0.1 2 8 1 1 0 1 0 2 0 0 0 0 - 36619 - 0 0 - - 0\n\n")


def cfg(global_lines: str = "", defaults: str = "", backend: str = "", more: str = "") -> list[tuple[str, str]]:
    text = (f"global\n    stats socket /run/h.sock level admin\n{global_lines}"
            f"defaults\n    mode http\n{defaults}"
            f"backend asr\n    balance leastconn\n{backend}    server n1 10.0.0.1:80\n{more}")
    return [("haproxy.cfg", text)]


CWD = Path("/var/lib/haproxy")


@pytest.mark.parametrize("texts, expected", [
    # the manual's two minimal configurations
    (cfg("    server-state-file /tmp/server_state\n", "    load-server-state-from-file global\n"),
     StateFile(Path("/tmp/server_state"), False)),
    (cfg("    server-state-base /etc/haproxy/states\n", "    load-server-state-from-file local\n"),
     StateFile(Path("/etc/haproxy/states/asr"), True)),
    # relative names: server-state-base, else HAProxy's working directory
    (cfg("    server-state-base /s\n    server-state-file state\n", "    load-server-state-from-file global\n"),
     StateFile(Path("/s/state"), False)),
    (cfg("    server-state-file state\n", "", "    load-server-state-from-file global\n"),
     StateFile(CWD / "state", False)),
    (cfg("    server-state-base /s\n", "", "    load-server-state-from-file local\n    server-state-file-name x\n"),
     StateFile(Path("/s/x"), True)),
    (cfg("    server-state-base /s\n", "    load-server-state-from-file local\n",
         "    server-state-file-name use-backend-name\n"), StateFile(Path("/s/asr"), True)),
    (cfg("", "    load-server-state-from-file local\n", "    server-state-file-name /abs/f\n"),
     StateFile(Path("/abs/f"), True)),
    # what is not loaded
    (cfg(), "no server-state-file configured"),
    (cfg("    server-state-file /s/state\n"),
     "backend asr loads no server-state-file (`load-server-state-from-file` is not set)"),
    (cfg("    server-state-file /s/state\n", "    load-server-state-from-file global\n",
         "    load-server-state-from-file none\n"),
     "backend asr loads no server-state-file (`load-server-state-from-file` is none)"),
    (cfg("", "    load-server-state-from-file global\n"),
     "`load-server-state-from-file global` but no `server-state-file` in global"),
    ([("h.cfg", "global\n    server-state-file /s\nbackend other\n")], "backend asr is not in haproxy.cfg"),
])
def test_locate(texts, expected):
    assert locate(texts, "asr", CWD) == expected


def test_locate_defaults_in_force_and_unknown_directory():
    named = [("a.cfg", "global\n    server-state-file /s/state\ndefaults keep\n    load-server-state-from-file global\n"
                       "defaults\n    mode http\n"),
             ("b.cfg", "backend asr from keep\n    server n1 1.2.3.4:5\nlisten other\n    bind :1\n")]
    assert locate(named, "asr", None) == StateFile(Path("/s/state"), False)  # config files in load order
    assert locate(named, "other", None) == \
        "backend other loads no server-state-file (`load-server-state-from-file` is not set)"  # the last defaults
    relative = cfg("    server-state-file state\n", "    load-server-state-from-file global\n")
    assert locate(relative, "asr", None) == \
        "server-state-file state is relative and HAProxy's working directory is unknown"


def test_write_keeps_mode_and_owner_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "state"
    write_atomically(path, "one\n")
    assert path.read_text() == "one\n" and stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o640)
    if os.getuid() == 0:
        os.chown(path, 65534, 65534)
    inode = path.stat().st_ino
    write_atomically(path, "two\n")
    st = path.stat()
    assert path.read_text() == "two\n" and st.st_ino != inode  # replaced, not rewritten in place
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.getuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    with pytest.raises(OSError):
        write_atomically(tmp_path / "missing" / "state", "x")


class FakeAPI:
    kind, target = "tcp", ("10.0.0.9", 9999)  # not local: only the `config` file says where the state file is

    def __init__(self, dump: str):
        self.dump, self.sent = dump, []

    def command(self, cmd: str) -> str:
        self.sent.append(cmd)
        return self.dump


def balancer(tmp_path: Path, dump: str, state: Path, local: bool = False) -> BackendAPI:
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(cfg(f"    server-state-file {state}\n", "",
                        f"    load-server-state-from-file {'local' if local else 'global'}\n"
                        + (f"    server-state-file-name {state}\n" if local else ""))[0][1])
    return BackendAPI("hx", "asr", FakeAPI(dump), conf)  # type: ignore[arg-type]


def test_keep_writes_the_dump_and_says_when_it_cannot(tmp_path):
    b = balancer(tmp_path, DUMP, tmp_path / "state")
    assert keep(b, "drain n1") == tmp_path / "state"
    assert (tmp_path / "state").read_text() == DUMP.rstrip("\n") + "\n"
    assert b.api.sent == ["show servers state"]  # global: every backend
    b = balancer(tmp_path, DUMP, tmp_path / "asr.state", local=True)
    keep(b, "drain n1")
    assert b.api.sent == ["show servers state asr"]  # local: this backend's own file
    assert reload_note(b, "drain") == f"drain survives a reload (server-state-file {tmp_path / 'asr.state'})"
    assert "backup flag comes from haproxy.cfg" in reload_note(b, "backup")
    bad = balancer(tmp_path, "Permission denied\n", tmp_path / "state")
    with pytest.raises(NotPersisted, match=r"^hx: drain n1: done, but server-state-file .* was not written "
                                           r"\(`show servers state` answered 'Permission denied'\)"):
        keep(bad, "drain n1")
    nowhere = balancer(tmp_path, DUMP, tmp_path / "no-such-dir" / "state")
    with pytest.raises(NotPersisted, match=r"was not written \(No such file or directory\); a reload loses it"):
        keep(nowhere, "weight n1 5")
    assert reload_note(nowhere, "weight") == (f"weight is lost on a reload: server-state-file "
                                              f"{tmp_path / 'no-such-dir' / 'state'} cannot be written (no "
                                              f"directory {tmp_path / 'no-such-dir'})")
    unknown = BackendAPI("hx", "asr", FakeAPI(DUMP))  # type: ignore[arg-type]
    assert keep(unknown, "drain n1") is None
    assert reload_note(unknown, "drain") == \
        "drain is lost on a reload: haproxy.cfg unknown (give the balancer its `config`) (README: Balancers)"
