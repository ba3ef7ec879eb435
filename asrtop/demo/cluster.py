"""The embedded demo cluster: N simulated FunASR nodes, an asrtop-agent beside each, HAProxy in front.

    with DemoCluster(nodes=4) as c:
        c.haproxy_port, c.config_path, c.nodes[i].port / .agent_url / .pid, c.kill_node(i), c.fault(i, ...), c.stop()
        c.ws_url, c.nodes[i].ws_port: FunASR WebSocket streams, through HAProxy and on each node

Everything lives in one temporary directory (configs, model dirs, logs, the admin socket) that is removed
on stop. Children cannot outlive the parent: see asrtop.demo.procs. Start it from a thread that lives as
long as the cluster (PDEATHSIG is per thread).

Default shape (4 nodes): node-1 and node-2 weight 3; node-3 slower (rtf x2) and weight 1; node-4 backup.
node-2 carries the previous model revision, so the fleet is visibly inconsistent. Every node also serves
FunASR's WebSocket protocol on its own port; HAProxy's second frontend (ws_url) balances streams over
WS_BACKEND, and the cluster file names that backend as a second balancer ("haproxy-ws", the same admin
socket) so every action reaches both backends. The cluster file's
[rollout] hook (asrtop.demo.upgrade) moves a node onto UPGRADE_TO, so `asrtop rollout` with no flags puts
every node on one digest.

Fault knobs (asrtop.demo.simfaults) reach a node through `fault()` or `python -m asrtop.demo.fault`; a
node's crash loop is kept in WORKDIR/faults/NODE.json so it survives the restart. With
`restart_crashed=True` (as `asrtop demo` runs it) a node that exits on its own is restarted as systemd
would (asrtop.demo.restarts).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from asrtop.demo import procs
from asrtop.demo import fault as fault_cli
from asrtop.demo import upgrade as upgrade_hook
from asrtop.demo.haproxycfg import (BACKEND, INSTALL_HINT, WS_BACKEND, HaproxyMissing, ServerSpec, find_haproxy,
                                    has_prometheus_exporter, render_config, server_states)
from asrtop.demo.ports import free_ports
from asrtop.demo.restarts import NodeRestarter
from asrtop.demo.revisions import revision_in_dir
from asrtop.demo.simnode import DEFAULT_MODEL
from asrtop.demo.watchdog import MARKER

MAX_NODES = 64
OLD_MODEL = "Fun-ASR-Nano-2511"
UPGRADE_TO = DEFAULT_MODEL  # what the demo's rollout hook installs


class DemoError(RuntimeError):
    """One line an operator can act on; the cluster is already stopped when this is raised."""


@dataclass
class DemoNode:
    index: int
    name: str
    port: int
    agent_port: int
    model_dir: Path
    model_name: str
    weight: int
    backup: bool
    rtf: float
    ws_port: int = 0  # FunASR WebSocket streams
    proc: subprocess.Popen | None = None
    agent_proc: subprocess.Popen | None = None
    restarts: int = 0  # starts after a crash (NodeRestarter), like systemd's NRestarts
    held: bool = False  # stopped on purpose (kill_node): not restarted

    @property
    def server(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def agent_url(self) -> str | None:
        return f"http://127.0.0.1:{self.agent_port}" if self.agent_proc is not None else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def agent_available() -> bool:
    """Has the agent package landed (asrtop_agent/__main__.py importable)?"""
    try:
        return importlib.util.find_spec("asrtop_agent.__main__") is not None
    except (ImportError, ValueError):
        return False


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports, below the ephemeral range (asrtop.demo.ports says why)."""
    try:
        return free_ports(n)
    except OSError as e:
        raise DemoError(f"not enough free loopback ports: needed {n} ({e}); use fewer --nodes") from None


def _get_json(url: str, timeout: float = 0.5) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


class DemoCluster:
    def __init__(self, nodes: int = 4, *, agents: bool | None = None, slots: int = 8, queue: int = 64,
                 rtf: float = 0.1, check_inter_ms: int = 500, agent_interval: str = "1s",
                 start_timeout: float | None = None, haproxy_bin: str | None = None,
                 progress: Callable[[str], None] | None = None, restart_crashed: bool = False):
        """agents=None starts agents when the agent package is installed; True requires them.
        restart_crashed: start a node that exits on its own again, as systemd would."""
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise DemoError(f"--nodes must be between 1 and {MAX_NODES}, got {nodes}")
        self.nodes_count, self.agents, self.slots, self.queue, self.rtf = nodes, agents, slots, queue, rtf
        # every node and agent is a Python process starting at once: allow more time for big demos
        self.start_timeout = start_timeout if start_timeout is not None else 20.0 + 1.0 * nodes
        self.check_inter_ms, self.agent_interval = check_inter_ms, agent_interval
        self.haproxy_bin, self.progress = haproxy_bin, progress
        self.nodes: list[DemoNode] = []
        self.workdir: Path | None = None
        self.haproxy_port = self.stats_port = self.haproxy_ws_port = 0
        self.haproxy_proc: subprocess.Popen | None = None
        self.prometheus_exporter = False
        self._watchdog: procs.Watchdog | None = None
        self._spawner: ThreadPoolExecutor | None = None
        self._stopped = True
        self.ready_seconds: float | None = None
        self.restart_crashed = restart_crashed
        self._restarter: NodeRestarter | None = None
        self._node_lock = threading.Lock()  # one start of a node at a time (the restarter, restart_node)

    # --- paths ---------------------------------------------------------------------------------
    @property
    def admin_socket(self) -> str:
        return str(self.workdir / "admin.sock")

    @property
    def config_path(self) -> Path:
        return self.workdir / "asrtop.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.haproxy_port}"

    @property
    def ws_url(self) -> str:
        """HAProxy's WebSocket frontend (FunASR streams)."""
        return f"ws://127.0.0.1:{self.haproxy_ws_port}"

    @property
    def metrics_url(self) -> str | None:
        return f"http://127.0.0.1:{self.stats_port}/metrics" if self.prometheus_exporter else None

    @property
    def backend(self) -> str:
        return BACKEND

    def pids(self) -> list[int]:
        """Every process this cluster started (nodes, agents, HAProxy, watchdog)."""
        ps = [p for n in self.nodes for p in (n.proc, n.agent_proc)] + [self.haproxy_proc]
        if self._watchdog:
            ps.append(self._watchdog.proc)
        return [p.pid for p in ps if p is not None]

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "DemoCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)

    def start(self) -> "DemoCluster":
        if not self._stopped:  # already running (`with` on a started cluster)
            return self
        if self.nodes:
            raise DemoError("a stopped DemoCluster cannot be restarted; make a new one")
        t0 = time.monotonic()
        binary = self.haproxy_bin or find_haproxy()  # HaproxyMissing before anything starts
        if not os.access(binary, os.X_OK):
            raise HaproxyMissing(f"{binary} is not executable; {INSTALL_HINT.replace('HAProxy not found: ', 'get HAProxy with ')}")
        want_agents = agent_available() if self.agents is None else self.agents
        if want_agents and not agent_available():
            raise DemoError("asrtop-agent is not installed (package asrtop_agent); reinstall with `pip install -e .`")
        self.workdir = Path(tempfile.mkdtemp(prefix="asrtop-demo-"))
        (self.workdir / MARKER).write_text(f"{os.getpid()}\n")
        (self.workdir / "logs").mkdir()
        (self.workdir / "faults").mkdir()
        self._stopped = False
        atexit.register(self.stop)
        try:
            self._watchdog = procs.Watchdog(self.workdir, self.workdir / "logs" / "watchdog.log")
            # PDEATHSIG fires when the *forking thread* ends: fork from a thread of our own that lives until
            # stop(), so a cluster started from a short-lived thread (a worker, to_thread) keeps its children.
            self._spawner = ThreadPoolExecutor(1, thread_name_prefix="asrtop-demo-spawn")
            self._plan()
            self._say(f"starting {self.nodes_count} nodes...")
            for n in self.nodes:
                self._start_node(n)
            self._wait(lambda n: _get_json(n.url + "/health") is not None, "node", lambda n: n.proc, "/health")
            if want_agents:
                self._say("agents...")
                for n in self.nodes:
                    self._start_agent(n)
                self._wait(lambda n: _get_json(n.agent_url + "/v1/status") is not None, "agent",
                           lambda n: n.agent_proc, "/v1/status")
            self._say("haproxy...")
            self._start_haproxy(binary)
            self._write_config()
            if self.restart_crashed:
                self._restarter = NodeRestarter(self._crashed, self._respawn, on_error=self._say).start()
            self.ready_seconds = time.monotonic() - t0
            self._say(f"ready in {self.ready_seconds:.1f} s")
        except BaseException:
            self.stop()
            raise
        return self

    def _plan(self) -> None:
        n = self.nodes_count
        ports = _free_ports(3 * n + 3)
        self.haproxy_port, self.stats_port, self.haproxy_ws_port = ports[-3], ports[-2], ports[-1]
        slow = 2 if n >= 4 else None
        backup = n - 1 if n >= 2 else None
        odd_model = 1 if n >= 3 else None
        for i in range(n):
            name = f"node-{i + 1}"
            self.nodes.append(DemoNode(
                index=i, name=name, port=ports[3 * i], agent_port=ports[3 * i + 1], ws_port=ports[3 * i + 2],
                model_dir=self.workdir / "models" / name,
                model_name=OLD_MODEL if i == odd_model else DEFAULT_MODEL,
                weight=1 if i == slow else 3, backup=i == backup, rtf=self.rtf * (2 if i == slow else 1)))

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen:
        p = self._spawner.submit(procs.spawn, argv, log).result()
        self._watchdog.watch(p.pid)
        return p

    def _start_node(self, n: DemoNode) -> None:
        argv = [sys.executable, "-m", "asrtop.demo.simnode", "--port", str(n.port), "--ws-port", str(n.ws_port),
                "--name", n.name,
                "--rtf", str(n.rtf), "--slots", str(self.slots), "--queue", str(self.queue),
                "--model-dir", str(n.model_dir), "--model-name", n.model_name,
                "--fault-state", str(self.workdir / "faults" / f"{n.name}.json")]
        n.proc = self._spawn(argv, self.workdir / "logs" / f"{n.name}.log")

    def _crashed(self) -> list[int]:
        """Nodes whose process ended on its own (not kill_node)."""
        return [n.index for n in self.nodes if not n.held and n.proc is not None and n.proc.poll() is not None]

    def _respawn(self, i: int) -> None:
        """The restarter's start of a crashed node (no wait for /health: a crash loop may never answer)."""
        with self._node_lock:
            n = self.nodes[i]
            if self._stopped or n.held or n.proc is None or n.proc.poll() is None:
                return
            self._watchdog.forget(n.proc.pid)
            n.model_name = revision_in_dir(n.model_dir) or n.model_name
            self._start_node(n)
            n.restarts += 1

    def _start_agent(self, n: DemoNode) -> None:
        argv = [sys.executable, "-m", "asrtop_agent", "--asr-url", n.url, "--model-dir", str(n.model_dir),
                "--listen", f"127.0.0.1:{n.agent_port}", "--node", n.name, "--gpu", "simulated",
                "--interval", self.agent_interval, "--stream-port", str(n.ws_port)]
        n.agent_proc = self._spawn(argv, self.workdir / "logs" / f"{n.name}-agent.log")

    def _start_haproxy(self, binary: str) -> None:
        self.prometheus_exporter = has_prometheus_exporter(binary)
        cfg = render_config([ServerSpec(n.name, n.port, n.weight, n.backup, n.ws_port) for n in self.nodes],
                            self.haproxy_port, self.admin_socket, self.stats_port, self.prometheus_exporter,
                            self.check_inter_ms, state_file=str(self.workdir / "server-state"),
                            ws_port=self.haproxy_ws_port)
        path = self.workdir / "haproxy.cfg"
        path.write_text(cfg)
        check = subprocess.run([binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True, timeout=10)
        if check.returncode != 0:
            raise DemoError(f"haproxy refused the demo config: {_last_line(check.stderr or check.stdout)}")
        self.haproxy_proc = self._spawn([binary, "-db", "-f", str(path)], self.workdir / "logs" / "haproxy.log")

        def all_up() -> bool:
            self._check_alive("haproxy", self.haproxy_proc, "haproxy.log")
            if not os.path.exists(self.admin_socket):
                return False
            try:
                backends = [server_states(self.admin_socket, b) for b in (BACKEND, WS_BACKEND)]
            except (OSError, RuntimeError):
                return False
            return all(len(states) == len(self.nodes) and all(
                r.get("status") == "UP" and r.get("check_status") == "L7OK" for r in states.values())
                for states in backends)

        self._until(all_up, "haproxy to see every server UP")

    def _wait(self, ok: Callable[[DemoNode], bool], what: str, proc: Callable[[DemoNode], subprocess.Popen],
              path: str) -> None:
        pending = list(self.nodes)

        def step() -> bool:
            for n in list(pending):
                log = f"{n.name}.log" if what == "node" else f"{n.name}-agent.log"
                self._check_alive(f"{n.name} {'simnode' if what == 'node' else what}", proc(n), log)
                if ok(n):
                    pending.remove(n)
            return not pending

        self._until(step, f"{what}s to answer {path}")

    def _until(self, cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not cond():
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {self.start_timeout:.0f} s waiting for {what}; logs in {self.workdir}/logs")
            time.sleep(0.03)

    def _check_alive(self, who: str, p: subprocess.Popen | None, log: str) -> None:
        if p is not None and p.poll() is not None:
            tail = _last_line(_read(self.workdir / "logs" / log))
            raise DemoError(f"{who} exited during start-up (exit {p.returncode}): {tail or 'no output'}")

    def _write_config(self) -> None:
        lines = ["# asrtop demo cluster (generated; removed when the demo stops)", "[cluster]",
                 'name = "asrtop-demo"', "refresh = 1.0", "min_ready = 1",
                 f"audit_log = {json.dumps(str(self.workdir / 'audit.jsonl'))}", "",
                 "[[balancers]]", 'name = "haproxy"', 'kind = "haproxy"',
                 f"socket = {json.dumps(self.admin_socket)}", f"backend = {json.dumps(BACKEND)}", "",
                 "# the streams' backend: the same servers, so drain/ready/maint/weight/backup reach both",
                 "[[balancers]]", 'name = "haproxy-ws"', 'kind = "haproxy"',
                 f"socket = {json.dumps(self.admin_socket)}", f"backend = {json.dumps(WS_BACKEND)}"]
        for n in self.nodes:
            lines += ["", "[[nodes]]", f"name = {json.dumps(n.name)}", f"server = {json.dumps(n.server)}",
                      f"address = {json.dumps(n.address)}"]
            if n.agent_url:
                lines.append(f"agent = {json.dumps(n.agent_url)}")
        lines += ["", "[rollout]", f"hook = {json.dumps(upgrade_hook.hook_template(UPGRADE_TO))}"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def stop(self) -> None:
        """Stop every process (SIGTERM, 1 s grace, SIGKILL), remove the temp dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._restarter is not None:
            self._restarter.stop()  # before the processes go: their ends are not crashes
        ps = [p for p in [self.haproxy_proc] + [x for n in self.nodes for x in (n.agent_proc, n.proc)] if p]
        procs.stop_all(ps, grace=1.0)
        if self._spawner:
            self._spawner.shutdown(wait=True)
        if self._watchdog:
            for p in ps:
                self._watchdog.forget(p.pid)
            self._watchdog.close()
        if self.workdir is not None and (self.workdir / MARKER).exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- faults and reads for tests and the demo ------------------------------------------------
    def kill_node(self, i: int, sig: int = signal.SIGKILL) -> int:
        """Kill node i's ASR process (its agent stays, as on a real host); returns the pid."""
        n = self.nodes[i]
        n.held = True
        n.proc.send_signal(sig)
        n.proc.wait(5)
        return n.proc.pid

    def restart_node(self, i: int, timeout: float = 15.0) -> int:
        """Start node i's ASR process again (same port, same model dir) after kill_node; returns the new pid."""
        n = self.nodes[i]
        if n.proc is not None and n.proc.poll() is None:
            raise DemoError(f"{n.name} is still running (pid {n.proc.pid}); kill_node() it first")
        with self._node_lock:
            if n.proc is not None and self._watchdog:
                self._watchdog.forget(n.proc.pid)
            n.model_name = revision_in_dir(n.model_dir) or n.model_name  # an upgrade may have changed it
            self._start_node(n)
            n.held = False
        deadline = time.monotonic() + timeout
        while _get_json(n.url + "/health") is None:
            self._check_alive(f"{n.name} simnode", n.proc, f"{n.name}.log")
            if time.monotonic() > deadline:
                raise DemoError(f"{n.name} did not answer /health within {timeout:.0f} s after restart")
            time.sleep(0.03)
        return n.proc.pid

    def fault(self, i: int, **knobs) -> dict:
        """Set node i's fault knobs (asrtop.demo.simfaults: error_rate, slowdown, gpu_leak_mb_s, rss_leak_mb_s,
        crash_loop, gpu_hot, crash, clear) through its demo-only POST /_sim/fault; returns the node's answer."""
        try:
            return fault_cli.send(self.nodes[i].address, knobs, timeout=5.0)
        except (ValueError, fault_cli.FaultRefused) as e:
            raise DemoError(f"{self.nodes[i].name} refused the fault {knobs}: {e}") from None

    def upgrade_node(self, i: int, revision: str = UPGRADE_TO, timeout: float = 30.0) -> float:
        """What the demo's rollout hook does, from a test: node i restarts on `revision` (same PID);
        returns once it answers on it (seconds taken). DemoError when it did not."""
        try:
            return upgrade_hook.upgrade(self.nodes[i].address, revision, timeout, say=self._say)
        except (upgrade_hook.UpgradeError, ValueError) as e:
            raise DemoError(str(e)) from None

    def node_model(self, i: int) -> str | None:
        """The model revision node i reports now (/health's models_loaded), None when it does not answer."""
        models = (_get_json(self.nodes[i].url + "/health", timeout=2.0) or {}).get("models_loaded")
        return str(models[0]) if isinstance(models, list) and models else None

    def server_states(self, backend: str = BACKEND) -> dict[str, dict[str, str]]:
        return server_states(self.admin_socket, backend)

    def node_stats(self, i: int) -> dict | None:
        return _get_json(self.nodes[i].url + "/_sim/stats", timeout=2.0)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""
