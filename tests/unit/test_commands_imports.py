"""`asrtop status` / actions stay light: no textual, prometheus_client, aiohttp (no agents), crossplane (no nginx)."""

import json
import subprocess
import sys
from pathlib import Path

CODE = """
import json, sys
from asrtop.cli import main
rc = main(["--config", sys.argv[1], sys.argv[2], *sys.argv[3:]])
print(json.dumps([rc, sorted(sys.modules)]))
"""


def run(tmp_path, *args):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path}/a.jsonl"\n[[balancers]]\nname = "hx"\nkind = "haproxy"\n'
                   f'socket = "{tmp_path}/none.sock"\nbackend = "asr"\n[[nodes]]\nname = "n1"\n')
    p = subprocess.run([sys.executable, "-c", CODE, str(cfg), *args], capture_output=True, text=True, timeout=60)
    rc, modules = json.loads(p.stdout.splitlines()[-1])
    return rc, modules


def test_status_and_drain_import_nothing_heavy(tmp_path):
    for args in (("status",), ("status", "--json"), ("drain", "n1")):
        rc, modules = run(tmp_path, *args)
        assert rc == 5  # the socket does not exist: unreachable, after the whole path ran
        heavy = [m for m in modules if m.split(".")[0] in ("textual", "prometheus_client", "aiohttp", "crossplane",
                                                          "httpx", "rich", "psutil", "pynvml")]
        assert heavy == [], args


SSL_COUNTED = """
import json, ssl, sys
made = []
new = ssl.SSLContext.__new__
ssl.SSLContext.__new__ = lambda cls, *a, **k: made.append(cls) or new(cls, *a, **k)
from asrtop.cli import main
rc = main(["--config", sys.argv[1], *sys.argv[2:]])
print(json.dumps([rc, sorted(sys.modules), len(made)]))
"""


def test_status_polling_plain_http_agents_loads_no_aiohttp_no_ssl_context_no_textual(tmp_path):
    """aiohttp's import builds SSL contexts that http:// agents never use (issue 17): `status` asks them through
    asrtop.sources.plainhttp. The agent here is a plain HTTP server answering a real /v1/status."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from support.sources_synth import SynthNode

    body = json.dumps(SynthNode("n1").status_body()).encode()

    class Agent(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[cluster]\naudit_log = "{tmp_path}/a.jsonl"\n[[balancers]]\nname = "hx"\nkind = "haproxy"\n'
                       f'socket = "{tmp_path}/none.sock"\nbackend = "asr"\n[[nodes]]\nname = "n1"\n'
                       f'agent = "http://127.0.0.1:{server.server_address[1]}"\n')
        p = subprocess.run([sys.executable, "-c", SSL_COUNTED, str(cfg), "status", "--json"], capture_output=True,
                           text=True, timeout=60)
    finally:
        server.shutdown()
    *doc, last = p.stdout.splitlines()
    rc, modules, ssl_contexts = json.loads(last)
    assert rc == 5, p.stderr  # the balancer socket does not exist; the agent answered
    node = json.loads("\n".join(doc))["nodes"][0]
    assert node["agent"]["error"] is None and node["model_state"] == "ok", node
    assert [m for m in modules if m.split(".")[0] in ("aiohttp", "textual", "yarl", "multidict")] == []
    assert ssl_contexts == 0
    # nor what only a change or a rollout needs: HAProxy's write side, the rollout model (no rollout here); nor
    # what only --help needs (shutil, for the terminal's width) or a write (tempfile)
    assert [m for m in modules if m in ("asrtop.balancers.haproxy_backup", "asrtop.balancers.haproxy_state_file",
                                        "asrtop.control.rollout_model", "tempfile", "shutil",
                                        "asrtop.balancers.ssh_host")] == []  # no balancer over SSH here


def test_python_dash_m_asrtop_is_the_asrtop_command():
    p = subprocess.run([sys.executable, "-m", "asrtop", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "status" in p.stdout, p.stderr


STATUS_DATACLASS_MODULES = ("asrtop.agentstatus", "asrtop.fleet", "asrtop.fleet_wording", "asrtop.config",
                            "asrtop.control.model", "asrtop.balancers.base", "asrtop.sources.live",
                            "asrtop.control.audit", "asrtop.control.journal", "asrtop.control.drift")


def test_status_dataclasses_are_documented():
    """@dataclass writes a class's missing docstring from inspect.signature: ~0.1 ms each that `asrtop status`
    paid at import for the 22 undocumented ones on its path (issue 17)."""
    import dataclasses
    import importlib

    bare = [f"{m}.{name}" for m in STATUS_DATACLASS_MODULES for name, c in vars(importlib.import_module(m)).items()
            if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == m
            and (c.__doc__ or "").startswith(f"{name}(")]
    assert bare == []


AT_EXIT = """
import atexit, gc, json, os, sys
atexit.register(lambda: print(json.dumps({"frozen_at_exit": gc.get_freeze_count()}), flush=True))  # runs last
from asrtop.cli import main
rc = main(["--config", sys.argv[1], *sys.argv[2:]])
print(json.dumps({"rc": rc, "frozen_before_exit": gc.get_freeze_count(), "gc": gc.isenabled()}), flush=True)
"""


def test_status_freezes_what_it_read_at_exit_only(tmp_path):
    """Issue 17: the interpreter's last collections walked everything `status` read (~100 ms of its exit at
    1,000 nodes); frozen at exit they walk nothing. Nothing is frozen before the exit (in-process callers), and
    the collector is on again after the command."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path}/a.jsonl"\n[[balancers]]\nname = "hx"\nkind = "haproxy"\n'
                   f'socket = "{tmp_path}/none.sock"\nbackend = "asr"\n[[nodes]]\nname = "n1"\n')
    p = subprocess.run([sys.executable, "-c", AT_EXIT, str(cfg), "status"], capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert lines[0] == {"rc": 5, "frozen_before_exit": 0, "gc": True}, p.stderr
    assert lines[1]["frozen_at_exit"] > 1000


ENTRY = """
import atexit, gc, json, sys
after_read = []
gc.callbacks.append(lambda phase, info: phase == "start" and after_read.append(info["generation"]))
import asrtop.status_report as report
real = report.render_table
def render(snap):
    after_read.clear()  # count the collections from the table on
    return real(snap)
report.render_table = render
atexit.register(lambda: print(json.dumps({"gc": gc.isenabled(), "collections": len(after_read)}), flush=True))
sys.argv = ["asrtop", "--config", sys.argv[1], "status"]
from asrtop.cli import entry
entry()
"""


def test_the_asrtop_command_leaves_the_collector_off_to_its_exit(tmp_path):
    """The `asrtop` command's process ends after `status`: turning the collector back on would only make it
    walk everything made while it was off (~9 ms at 1,000 nodes). No collection runs after the read, before
    or at the exit; main() called in-process turns it back on (above)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path}/a.jsonl"\n[[nodes]]\nname = "n1"\n')
    p = subprocess.run([sys.executable, "-c", ENTRY, str(cfg)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "n1" in p.stdout and json.loads(p.stdout.splitlines()[-1]) == {"gc": False, "collections": 0}
    scripts = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'asrtop = "asrtop.cli:entry"' in scripts  # the installed command goes through entry() too
