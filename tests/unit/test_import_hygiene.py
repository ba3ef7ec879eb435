"""Rule 2 of DESIGN.md: the agent never imports asrtop/textual; the non-UI layers never import textual."""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "asrtop_agent": ("asrtop", "textual"),
    "asrtop_agent.__main__": ("asrtop", "textual"),
    "asrtop_agent.server": ("asrtop", "textual"),
    "asrtop.fleet": ("textual",),
    "asrtop.config": ("textual",),
    "asrtop.agentstatus": ("textual",),
    "asrtop.sources.agents": ("textual",),
    "asrtop.sources.prometheus": ("textual",),
    "asrtop.balancers.haproxy": ("textual",),
    "asrtop.balancers.factory": ("textual",),
    "asrtop.balancers.nginx": ("textual",),
    "asrtop.control": ("textual",),
}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_does_not_import_forbidden(module):
    # A fresh interpreter per module: sys.modules of this test process is polluted by other tests.
    code = (
        "import importlib, sys, json\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    loaded = json.loads(out.stdout)
    for top in FORBIDDEN[module]:
        bad = [m for m in loaded if m == top or m.startswith(top + ".")]
        # asrtop_agent is not "asrtop"
        bad = [m for m in bad if not m.startswith("asrtop_agent")]
        assert not bad, f"{module} imports {bad[:5]}"
