"""Regenerate screenshots/ from the real console on the demo cluster, under load:

    .venv/bin/python -m asrtop.demo.screenshots [--out screenshots] [--size 120x32]

Starts the demo cluster (HAProxy, simulated nodes, agents) and a load generator, drives the app
headless with Textual's Pilot, and writes SVGs (fleet, node detail, model view, drain confirmation,
drain in progress) plus PNGs through rsvg-convert when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHOTS = ("fleet", "node_detail", "model_view", "drain_confirm", "drain_progress")


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
    def __init__(self, url: str, concurrency: int, duration: float):
        super().__init__(name="screenshots-load", daemon=True)
        from asrtop.demo.load import LoadGenerator

        self.gen = LoadGenerator(url, concurrency, duration=duration)

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


async def _shoot(config_path: Path, out: Path, size: tuple[int, int]) -> list[Path]:
    from asrtop.config import load_config
    from asrtop.tui.run import build_app
    from asrtop.tui.screens.confirm import ConfirmScreen

    app = build_app(argparse.Namespace(read_only=False, prometheus=None), load_config(config_path))
    written: list[Path] = []

    def save(name: str) -> None:
        written.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(out))))

    async with app.run_test(size=size) as pilot:
        await _until(pilot, lambda: app.snapshot is not None and all(n.status for n in app.snapshot.nodes),
                     "agents")
        await _until(pilot, lambda: sum(n.in_flight or 0 for n in app.snapshot.nodes) >= 4, "load")
        await pilot.pause(20.0)  # some history for the sparklines
        save("fleet")
        table = app.fleet_screen.table
        busy = max((n for n in app.snapshot.nodes if not n.backup and n.name in app.snapshot.model_groups()[0].nodes),
                   key=lambda n: n.in_flight or 0)
        table.move_cursor(row=table.get_row_index(busy.name))
        await pilot.press("enter")
        await pilot.pause(1.5)
        save("node_detail")
        await pilot.press("escape", "M")
        await pilot.pause(2.5)  # file lists come from the agents
        save("model_view")
        await pilot.press("escape")
        await _until(pilot, lambda: (app.snapshot.node(busy.name).in_flight or 0) >= 2, "in-flight on the node")
        await pilot.press("d")
        await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and not app.screen.pending, "plan")
        await pilot.pause(0.3)
        save("drain_confirm")
        await pilot.press("y")
        await _until(pilot, lambda: busy.name in app.draining and app.draining[busy.name], "drain progress",
                     timeout=10)
        await pilot.pause(0.5)
        save("drain_progress")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="screenshots", help="output folder (default screenshots/)")
    p.add_argument("--size", default="120x32", help="terminal size COLSxROWS (default 120x32)")
    args = p.parse_args(argv)
    m = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not m:
        print(f"screenshots: --size must be COLSxROWS, got {args.size!r}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from asrtop.demo.cluster import DemoCluster

    with DemoCluster(nodes=4) as cluster:
        load = _Load(cluster.url, concurrency=12, duration=90)
        load.start()
        try:
            svgs = asyncio.run(_shoot(cluster.config_path, out, (int(m[1]), int(m[2]))))
        finally:
            load.gen.stop()
    for svg in svgs:
        png = svg_to_png(svg)
        print(f"{svg}" + (f"  {png}" if png else "  (no rsvg-convert: PNG skipped)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
