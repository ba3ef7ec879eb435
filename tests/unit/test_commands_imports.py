"""`asrtop status` / actions stay light: no textual, prometheus_client, aiohttp (no agents), crossplane (no nginx)."""

import json
import subprocess
import sys

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
