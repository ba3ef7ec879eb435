"""Budget: start to first full frame with the demo config <= 1.5 s.

Starts the demo cluster (not timed), then runs `asrtop --config <demo config>` startup in a fresh
interpreter: the clock starts before the interpreter does (imports included) and stops when the first
snapshot has been applied to the table and the screen has painted it (call_after_refresh). Headless
Textual, so no terminal is needed. Baseline in the same run: a bare Textual App to its first frame.

    .venv/bin/python tests/benchmarks/bench_tui_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CHILD = r'''
import sys, time
t0 = float(sys.argv[1])
import argparse
from asrtop.config import load_config
from asrtop.tui.run import build_app
from asrtop.tui.app import AsrtopApp

from pathlib import Path
import asrtop.tui.app as appmod


class Timed(AsrtopApp):  # Textual dispatches by class, so the hook is a subclass
    CSS_PATH = str(Path(appmod.__file__).with_name("asrtop.tcss"))

    def on_fleet_updated(self, message):
        super().on_fleet_updated(message)
        if self.fleet_screen.table.row_count == len(message.snapshot.nodes):
            self.call_after_refresh(lambda: (print(f"FRAME {time.time() - t0:.4f}"), self.exit()))


config = load_config(sys.argv[2])
app = build_app(argparse.Namespace(read_only=False, prometheus=None), config, Timed)
app.run(headless=True, size=(120, 35))
'''

BARE = r'''
import sys, time
t0 = float(sys.argv[1])
from textual.app import App
from textual.widgets import Static
class Bare(App):
    def compose(self):
        yield Static("hello")
    def on_mount(self):
        self.call_after_refresh(lambda: (print(f"FRAME {time.time() - t0:.4f}"), self.exit()))
Bare().run(headless=True, size=(120, 35))
'''


def timed(code: str, *args: str) -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, repr(t0), *args], capture_output=True, text=True, timeout=60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("FRAME")), None)
    if line is None:
        raise SystemExit(f"no frame: rc={out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(line.split()[1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    from asrtop.demo.cluster import DemoCluster

    with DemoCluster(nodes=4) as cluster:
        timed(CHILD, str(cluster.config_path))  # warm the OS file cache once, not counted
        runs = [timed(CHILD, str(cluster.config_path)) for _ in range(a.runs)]
        bare = [timed(BARE) for _ in range(a.runs)]
    med = statistics.median
    print(f"start to first full frame, demo config (4 nodes): median {med(runs):.3f} s, max {max(runs):.3f} s"
          f"   budget 1.5 s   runs: {', '.join(f'{r:.3f}' for r in runs)}")
    print(f"baseline bare Textual app to first frame:         median {med(bare):.3f} s "
          f"(asrtop = {med(runs) / med(bare):.2f}x)")
    print("PASS" if max(runs) <= 1.5 else "OVER BUDGET")


if __name__ == "__main__":
    main()
