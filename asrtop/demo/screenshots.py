"""Regenerate screenshots/ from the real console on the demo cluster, under load, in one command:

    .venv/bin/python -m asrtop.demo.screenshots [--out screenshots] [--size 120x35] [--nodes 12]

Starts a 12-node demo cluster (HAProxy, simulated nodes, agents) under load, makes one agent stale (SIGSTOP,
resumed before the cluster stops) beside the demo's node on another model, drives the app headless with
Textual's Pilot and writes SVGs: the fleet with one node draining, the drain confirmation, the drain ending
in "safe to upgrade", node detail with sparklines, the model view, a rolling upgrade of three nodes (its
plan, then its progress panel), and the fleet at 80x24; PNGs next to
them through rsvg-convert when it is installed. Takes about 2 minutes; live load, so figures differ from
run to run, the layout does not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHOTS = ("fleet", "drain_confirm", "drain_done", "node_detail", "model_view", "fleet_80x24")
HISTORY_SECONDS = 20.0  # of load before the first shot: the sparklines need a shape


def svg_to_png(svg: Path) -> Path | None:
    """PNG next to the SVG. rsvg collapses the non-breaking spaces Textual writes, so feed it a copy
    with plain spaces preserved; the SVG itself stays as Textual exported it."""
    rsvg = shutil.which("rsvg-convert")
    if rsvg is None:
        return None
    text = svg.read_text()
    text = text.replace("&#160;", " ").replace("<svg ", '<svg xml:space="preserve" ', 1)
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False) as tmp:
        tmp.write(text)
    png = svg.with_suffix(".png")
    try:
        subprocess.run([rsvg, tmp.name, "-o", str(png)], check=True, timeout=60)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    return png


class _Load(threading.Thread):
    def __init__(self, url: str, concurrency: int, duration: float, ws_url: str, streams: int):
        super().__init__(name="screenshots-load", daemon=True)
        from asrtop.demo.load import LoadGenerator

        # streams as `asrtop demo` runs them (the strm column, the header's count, the drain's stream line), but
        # short: the rollout shot waits for its drained node to empty
        self.gen = LoadGenerator(url, concurrency, duration=duration, ws_url=ws_url, streams=streams,
                                 stream_mix="60:6s,40:10s")

    def run(self) -> None:
        try:
            self.gen.run()
        except Exception as e:  # the screenshots still come out, with less traffic
            print(f"load generator stopped: {e}", file=sys.stderr)


async def _until(pilot, cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        await pilot.pause(0.1)


def _app(config_path: Path):
    from asrtop.config import load_config
    from asrtop.tui.run import build_app

    return build_app(argparse.Namespace(read_only=False, prometheus=None), load_config(config_path))


async def _ready(pilot, app, stale: str | None) -> None:
    await _until(pilot, lambda: app.snapshot is not None
                 and all(n.status for n in app.snapshot.nodes if n.name != stale), "agents")
    await _until(pilot, lambda: sum(n.in_flight or 0 for n in app.snapshot.nodes) >= 4, "load")


async def _rollout(pilot, app, nodes: list[str], go_to, save) -> None:
    """A rolling upgrade of a few selected nodes (one on the old model): the plan, then its progress panel
    while it runs; it is left to finish (a detached `asrtop rollout`) before the cluster stops."""
    from asrtop.tui.screens.rollout import RolloutScreen

    for node in nodes:
        await go_to(node)
        await pilot.press("space")
    await pilot.press("U")
    await _until(pilot, lambda: isinstance(app.screen, RolloutScreen) and not app.screen.pending, "rollout plan")
    await pilot.pause(0.3)
    save("rollout_plan")
    await pilot.press("y")
    state = app.rollout.current
    await _until(pilot, lambda: (s := state()) is not None and sum(p.done for p in s.nodes.values()) >= 1,
                 "a node upgraded", timeout=60)
    await _until(pilot, lambda: any(p.stage == "wait" and p.status == "running" for p in state().nodes.values()),
                 "a node draining", timeout=30)
    await pilot.pause(1.0)
    save("rollout_progress")
    await _until(pilot, lambda: state().status != "running", "the rollout's end", timeout=120)


async def _shoot(config_path: Path, out: Path, size: tuple[int, int], drain: str, stale: str, stale_pid: int,
                 rollout: list[str]) -> list[Path]:
    from asrtop.tui.screens.confirm import ConfirmScreen

    app = _app(config_path)
    written: list[Path] = []

    def save(name: str) -> None:
        written.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(out))))

    async def go_to(node: str) -> None:
        table = app.fleet_screen.table
        table.move_cursor(row=table.get_row_index(node))
        await pilot.pause(0.1)

    async with app.run_test(size=size, notifications=True) as pilot:  # toasts are in the shots
        await _ready(pilot, app, None)
        os.kill(stale_pid, signal.SIGSTOP)  # its agent stops answering, after it was seen (main resumes it)
        await pilot.pause(HISTORY_SECONDS)
        await _until(pilot, lambda: app.snapshot.node(stale).stale, "the stale agent")
        await _until(pilot, lambda: (app.snapshot.node(drain).in_flight or 0) >= 2, "in-flight on the node")
        await go_to(drain)
        await pilot.press("d")
        await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and not app.screen.pending, "plan")
        await pilot.pause(0.3)
        save("drain_confirm")
        await pilot.press("y")
        await _until(pilot, lambda: bool(app.draining.get(drain)), "drain progress", timeout=10)
        await pilot.pause(1.5)
        save("fleet")  # under load: one node draining, one stale, one on another model
        await _until(pilot, lambda: drain not in app.draining, "drained", timeout=60)
        await pilot.pause(1.0)  # the toast slides in
        save("drain_done")  # the row and the toast: safe to upgrade
        busy = max((n for n in app.snapshot.nodes if not n.backup and n.name not in (drain, stale)
                    and n.name in app.snapshot.model_groups()[0].nodes), key=lambda n: n.in_flight or 0)
        await go_to(busy.name)
        await pilot.press("enter")
        await pilot.pause(1.5)
        save("node_detail")
        await pilot.press("escape", "M")
        await pilot.pause(2.5)  # file lists come from the agents
        save("model_view")
        await pilot.press("escape")
        await _rollout(pilot, app, rollout, go_to, save)

    app = _app(config_path)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:  # many SSH windows
        await _ready(pilot, app, stale)
        await pilot.pause(3.0)
        save("fleet_80x24")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="screenshots", help="output folder (default screenshots/)")
    p.add_argument("--size", default="120x35", help="terminal size COLSxROWS (default 120x35)")
    p.add_argument("--nodes", type=int, default=12, help="demo nodes (default 12)")
    args = p.parse_args(argv)
    m = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not m:
        print(f"screenshots: --size must be COLSxROWS, got {args.size!r}", file=sys.stderr)
        return 2
    if args.nodes < 6:
        print(f"screenshots: --nodes must be at least 6 (one draining, one stale, one odd model), got {args.nodes}",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from asrtop.demo.cluster import DemoCluster

    started = time.monotonic()
    with DemoCluster(nodes=args.nodes, slots=16, queue=128) as cluster:
        load = _Load(cluster.url, concurrency=2 * args.nodes, duration=600, ws_url=cluster.ws_url, streams=args.nodes)
        load.start()
        stale = cluster.nodes[-3]  # its agent is paused while the shots are taken
        try:
            svgs = asyncio.run(_shoot(cluster.config_path, out, (int(m[1]), int(m[2])), cluster.nodes[4].name,
                                      stale.name, stale.agent_proc.pid, [n.name for n in cluster.nodes[1:4]]))
        finally:
            os.kill(stale.agent_proc.pid, signal.SIGCONT)
            load.gen.stop(cut_streams=True)
    for svg in svgs:
        png = svg_to_png(svg)
        print(f"{svg}" + (f"  {png}" if png else "  (no rsvg-convert: PNG skipped)"))
    print(f"screenshots: {len(svgs)} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
