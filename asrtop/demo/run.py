"""`asrtop demo [--nodes N] [--load C] [--streams K] [--stream-mix PCT:LEN,...] [--headless] [--duration S]`.

Starts the embedded cluster (asrtop.demo.cluster), runs load in a background thread (C file requests in
flight through HAProxy's HTTP frontend, K FunASR WebSocket streams through its WebSocket frontend), and
either opens the console on it or (--headless) runs for --duration seconds and prints a summary (streams
still open at the end are cut by the load's stop and counted as such). Exit codes: 0 done; 1 the headless
load had failures (a request failed, a stream was refused or ended without its final result) or a part of
the cluster died at start-up; 2 bad input or HAProxy
missing (the line says how to install it); 130 interrupted (Ctrl+C or SIGTERM: the cluster is stopped;
--headless prints the load report and node table first, as at a normal end).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

from asrtop.exitcodes import BAD_INPUT, ERROR, OK

INTERRUPTED = 130
STREAMS_PER_NODE = 3
DEMO_STREAM_MIX = "30:10s,40:45s,20:2m,10:5m"  # seconds to minutes: the console shows streams' ages grow


def _err(line: str) -> None:
    print(f"asrtop demo: {line}", file=sys.stderr, flush=True)


class LoadThread:
    """LoadGenerator in its own thread and event loop, so the console's loop is never slowed by it."""

    def __init__(self, url: str, concurrency: int, duration: float, **options):
        from asrtop.demo.load import LoadGenerator

        self.gen = LoadGenerator(url, concurrency, duration=duration, **options)
        self.report = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="asrtop-demo-load", daemon=True)

    def _run(self) -> None:
        try:
            self.report = self.gen.run()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def start(self) -> "LoadThread":
        self.thread.start()
        return self

    def cut(self) -> str:
        """Stop starting requests and report what finished, without waiting for those in flight: the
        cluster stop that follows cuts them anyway (waiting for them made quitting the console take 5 s).
        Open streams are closed by the load itself (a close frame each, quick) and counted as cut by the stop."""
        self.gen.stop(cut_streams=True)
        counts, deadline = self.gen.stream_counts, time.monotonic() + 0.5
        while counts is not None and self.report is None and counts.snapshot().open and time.monotonic() < deadline:
            time.sleep(0.01)
        report, cut = self.report or self.gen.snapshot(), self.gen.in_flight
        return report.summary() + (f"\n{cut} request(s) still in flight were cut by the stop (not counted)"
                                   if cut else "")


class Interrupted(KeyboardInterrupt):
    """What the demo's SIGTERM (and headless SIGINT) handler raises: a KeyboardInterrupt to every
    `except`, but not the exact class. CPython marks a *bare* KeyboardInterrupt that leaves exec'd string
    code (dataclass and namedtuple creation during a lazy import do that) as "unhandled" even when it is
    caught later, and then `python -m` ends by killing itself with SIGINT instead of exiting 130."""


def on_stop_signal(signum, frame):  # noqa: ARG001
    # Once: unwind through `with cluster` (which stops every child); a repeated signal while stopping
    # must not interrupt the clean-up itself.
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted


def run_demo(args: Any) -> int:
    nodes, load = getattr(args, "nodes", 4), getattr(args, "load", 16)
    headless, duration = getattr(args, "headless", False), getattr(args, "duration", 30.0)
    streams = getattr(args, "streams", None)
    streams = STREAMS_PER_NODE * nodes if streams is None else streams
    stream_mix = getattr(args, "stream_mix", None) or DEMO_STREAM_MIX
    if load < 0:
        _err(f"--load must be >= 0, got {load}")
        return BAD_INPUT
    if streams < 0:
        _err(f"--streams must be >= 0, got {streams}")
        return BAD_INPUT
    from asrtop.demo.loadws import parse_stream_mix

    try:
        parse_stream_mix(stream_mix)
    except ValueError as e:
        _err(str(e))
        return BAD_INPUT
    if not duration > 0:
        _err(f"--duration must be > 0, got {duration}")
        return BAD_INPUT
    read_only = bool(getattr(args, "read_only", False))  # `asrtop --read-only demo`: the console too
    load_options = {"streams": streams, "stream_mix": stream_mix}
    if threading.current_thread() is not threading.main_thread():
        return _run(nodes, load, headless, duration, read_only, load_options)
    stop_signals = (signal.SIGTERM, signal.SIGINT) if headless else (signal.SIGTERM,)
    # (the console reads Ctrl+C as a key; asyncio's own SIGINT handling stays for it)
    before = {s: signal.signal(s, on_stop_signal) for s in stop_signals}
    try:
        return _run(nodes, load, headless, duration, read_only, load_options)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _run(nodes: int, load: int, headless: bool, duration: float, read_only: bool = False,
         load_options: dict | None = None) -> int:
    from asrtop.demo.cluster import DemoCluster, DemoError
    from asrtop.demo.haproxycfg import HaproxyMissing

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        cluster = DemoCluster(nodes=nodes, slots=16, queue=128, progress=say, restart_crashed=True)
        cluster.start()
    except HaproxyMissing as e:
        _err(str(e))
        return BAD_INPUT
    except DemoError as e:
        _err(str(e))
        return BAD_INPUT if str(e).startswith(("--nodes", "not enough free")) else ERROR
    except KeyboardInterrupt:
        _err("interrupted during start-up; stopped")
        return INTERRUPTED
    loader = None
    try:
        with cluster:
            say(f"HAProxy {cluster.url}  streams {cluster.ws_url}  config {cluster.config_path}"
                + (f"  metrics {cluster.metrics_url}" if cluster.metrics_url else ""))
            options = dict(load_options or {})
            if options.get("streams"):
                # headless: the run lasts --duration; streams still open then are cut by the load's stop
                options.update(ws_url=cluster.ws_url, stream_grace=0.0 if headless else None)
            if load or options.get("streams"):
                loader = LoadThread(cluster.url, load, duration if headless else 10 ** 9, **options).start()
            if headless:
                return run_headless(cluster, loader, duration)
            try:
                return _console(cluster, read_only)
            finally:
                if loader is not None:  # the report before the cluster stops, so shutdown is not counted as failures
                    say("stopping the demo cluster...")
                    print(loader.cut())
                    loader = None
    except KeyboardInterrupt:
        _err("interrupted; cluster stopped")
        return INTERRUPTED
    finally:
        if loader is not None:
            loader.gen.stop()


def run_headless(cluster, loader: LoadThread | None, duration: float) -> int:
    try:
        if loader is None:
            time.sleep(duration)
        else:
            loader.thread.join()
    except KeyboardInterrupt:  # SIGTERM or Ctrl+C: the same report as a normal end, then exit 130
        _err("stopped by a signal: the report covers the requests finished so far")
        if loader is not None:
            print(loader.cut())
        _print_nodes(cluster)
        return INTERRUPTED
    if loader is None:
        report = None
    else:
        if loader.error is not None:
            _err(f"load generator failed: {loader.error}")
            return ERROR
        report = loader.report
        print(report.summary())
    _print_nodes(cluster)
    streams = report.streams if report is not None else None
    bad_streams = streams is not None and (streams.ended_without_final or streams.refused)
    return ERROR if report is not None and (report.failures or bad_streams) else OK


def _print_nodes(cluster) -> None:
    print("node      server state  requests  answered   streams  by status")
    states = {}
    try:
        states = cluster.server_states()
    except (OSError, RuntimeError):
        pass
    for i, n in enumerate(cluster.nodes):
        st = cluster.node_stats(i) or {}
        role = " (backup)" if n.backup else ""
        streams = (st.get("streams") or {}).get("opened", "-")  # streams this node accepted
        print(f"{n.name:<9} {states.get(n.server, {}).get('status', '?'):<12} {st.get('received', '-'):>8}  "
              f"{st.get('answered', '-'):>8}  {streams:>8}  {json.dumps(st.get('by_status', {}))}{role}")


def _console(cluster, read_only: bool = False) -> int:
    ns = argparse.Namespace(config=str(cluster.config_path), read_only=read_only, prometheus=None)
    try:
        from asrtop.tui.run import run_tui
    except ImportError:
        run_tui = None
    if run_tui is not None:
        from asrtop.demo.fault import DemoFaults
        from asrtop.tui.demo_faults import demo_console

        return run_tui(ns, demo_console(DemoFaults()))  # the console with the demo's fault palette
    # Until the console exists: `asrtop status` every second.
    try:
        from asrtop.commands import run_command
    except ImportError:
        run_command = None
    while True:
        print(f"\n--- {time.strftime('%H:%M:%S')}  (Ctrl+C stops the demo)")
        if run_command is not None:
            run_command(argparse.Namespace(command="status", json=False, **vars(ns)))
        else:
            for i, n in enumerate(cluster.nodes):
                st = cluster.node_stats(i) or {}
                print(f"{n.name}: in flight {st.get('in_flight', '-')}, answered {st.get('answered', '-')}")
        sys.stdout.flush()
        time.sleep(1.0)
