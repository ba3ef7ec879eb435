"""End-to-end rollout helpers: the real demo cluster, `asrtop rollout --json` as a real process, bounded load.

    with rollout_cluster(haproxy_bin) as c:          # DemoCluster, 4 nodes + agents + HAProxy, fast drains
        run = RolloutRun(c.config_path, "--hook", hook_line(...), kill_at=("node-2", "hook", "start"))
        out = run.wait()                             # exit code, JSON events, stderr; killed or not
        Fleet(c).models() / .balancer() / .audit_since(mark) / .state()

Also a script (`python tests/support/rollout.py hook --log F --sleep S --exit N -- ARGV...`): a test hook that
records each run (start/end, pid, its argv) in a log, can sleep first (so asrtop can be killed during the hook)
or fail, and otherwise runs ARGV (the demo's upgrade hook). Its argv carries no braces: asrtop fills
{node}/{address} into it, nothing else.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve()
RTF = 0.02  # the demo's real-time factor in these tests: a 5 s clip holds a slot 0.1 s, drains take well < 1 s
AGENT_INTERVAL = "200ms"  # the agent re-reads the node (and re-hashes a changed model) this often

Event = dict


# --- the cluster --------------------------------------------------------------------------------------------
@contextmanager
def rollout_cluster(haproxy_bin: str, **kw) -> Iterator:
    """The 4-node demo (agents, HAProxy 2.8) tuned so a rollout's stages are short."""
    from asrtop.demo.cluster import DemoCluster

    opts = dict(nodes=4, agents=True, rtf=RTF, slots=32, queue=256, agent_interval=AGENT_INTERVAL,
                check_inter_ms=200, haproxy_bin=haproxy_bin)
    opts.update(kw)
    with DemoCluster(**opts) as c:
        yield c


def cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real `asrtop` CLI, once."""
    return subprocess.run([sys.executable, "-m", "asrtop.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)


# --- asrtop rollout as a process ----------------------------------------------------------------------------
def matches(ev: Event, node: str | None, stage: str | None, kind: str | None) -> bool:
    return ((node is None or ev.get("node") == node) and (stage is None or ev.get("stage") == stage)
            and (kind is None or ev.get("kind") == kind))


@dataclass
class RolloutOutcome:
    rc: int | None  # -9 when killed
    events: list[Event]
    stderr: str
    killed: bool
    seconds: float
    other_stdout: list[str] = field(default_factory=list)  # lines that were not JSON (there should be none)

    def stages(self, kind: str = "ok") -> list[tuple[str, str]]:
        """(node, stage) of every event of `kind`, in order."""
        return [(e["node"], e["stage"]) for e in self.events if e.get("kind") == kind and e.get("node")]

    def describe(self) -> str:
        return f"exit {self.rc}; stderr: {self.stderr.strip()[-600:]!r}; last events: {self.events[-4:]}"


class RolloutRun:
    """`asrtop --config CFG rollout ARGS --json`, its stdout read line by line as it comes.

    kill_at=(node, stage, kind): SIGKILL the process as soon as that event is read (from the reader thread,
    so nothing else runs in between on our side); any of the three may be None (any)."""

    def __init__(self, config: Path, *args: str, kill_at: tuple[str | None, str | None, str | None] | None = None,
                 json_out: bool = True):
        argv = [sys.executable, "-m", "asrtop.cli", "--config", str(config), "rollout", *args]
        if json_out:
            argv.append("--json")
        self.argv, self.kill_at = argv, kill_at
        self.events: list[Event] = []
        self.other: list[str] = []
        self.killed = False
        self._q: queue.Queue[Event | None] = queue.Queue()
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=lambda: self._err.extend(self.proc.stderr), daemon=True)]
        for t in self._readers:
            t.start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                self.other.append(line.rstrip("\n"))
                continue
            self.events.append(ev)
            if self.kill_at and not self.killed and matches(ev, *self.kill_at):
                self.proc.send_signal(signal.SIGKILL)
                self.killed = True
            self._q.put(ev)
        self._q.put(None)

    def kill(self) -> None:
        """SIGKILL now (as a lost SSH session's kill -9 or an OOM kill would)."""
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)

    def wait_event(self, node: str | None = None, stage: str | None = None, kind: str | None = None,
                   timeout: float = 30.0) -> Event:
        """The first event (from now on, or already read) matching; AssertionError on timeout or exit."""
        for ev in list(self.events):
            if matches(ev, node, stage, kind):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no event {node}/{stage}/{kind} within {timeout:.0f} s; "
                                     f"last: {self.events[-3:]}") from None
            if ev is None:
                self._q.put(None)
                raise AssertionError(f"asrtop rollout ended before {node}/{stage}/{kind}: "
                                     f"{self.wait(5).describe()}")
            if matches(ev, node, stage, kind):
                return ev

    def wait(self, timeout: float = 60.0) -> RolloutOutcome:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"asrtop rollout still running after {timeout:.0f} s; last: {self.events[-3:]}")
        for t in self._readers:
            t.join(5)
        return RolloutOutcome(rc, list(self.events), "".join(self._err), self.killed,
                              time.monotonic() - self._t0, list(self.other))


def rollout(config: Path, *args: str, timeout: float = 60.0, **kw) -> RolloutOutcome:
    return RolloutRun(config, *args, **kw).wait(timeout)


# --- hooks ------------------------------------------------------------------------------------------------
def upgrade_argv(revision: str) -> list[str]:
    """The demo's upgrade hook as an argv template ({address} filled in by asrtop)."""
    return [sys.executable, "-m", "asrtop.demo.upgrade", "{address}", "--to", revision]


def recording_hook(log: Path, then: list[str] | None = None, *, sleep: float = 0.0, exit_code: int | None = None,
                   fault: dict | None = None, first_sleep: float | None = None, hold: Path | None = None) -> list[str]:
    """A hook that records its run in `log` (with the node's /_sim/stats before it touches the node: an
    upgrade restarts the node and its counters), sleeps, then exits `exit_code` or runs `then`, then sets the
    node's fault knobs to `fault` (a node that came back broken). `first_sleep`: the first run on a node
    sleeps this long instead (a slow upgrade the next run overtakes). `hold`: after its start it waits until
    this file exists (at most 120 s): a stage held open for as long as the test needs, whatever the load."""
    argv = [sys.executable, str(HERE), "hook", "--log", str(log), "--node", "{node}", "--address", "{address}",
            "--sleep", str(sleep)]
    if first_sleep is not None:
        argv += ["--first-sleep", str(first_sleep)]
    if hold is not None:
        argv += ["--hold", str(hold)]
    if exit_code is not None:
        argv += ["--exit", str(exit_code)]
    if fault:
        argv += ["--fault", json.dumps(fault).replace("{", "{{").replace("}", "}}")]
    return argv + ["--", *(then or [])]


def hook_line(argv: list[str]) -> str:
    """The --hook string for an argv (split back with shlex by asrtop)."""
    return shlex.join(argv)


def hook_runs(log: Path) -> list[dict]:
    try:
        return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        return []


def wait_hook_started(log: Path, node: str, timeout: float = 30.0) -> dict:
    """Until the recording hook logs its start on `node` (asrtop announces a stage before it runs it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in hook_runs(log):
            if r["event"] == "start" and r["node"] == node:
                return r
        time.sleep(0.01)
    raise AssertionError(f"no hook started on {node} within {timeout:.0f} s")


def wait_hooks_ended(log: Path, timeout: float = 20.0) -> None:
    """Every hook run recorded in `log` has exited (a hook outlives a SIGKILLed asrtop: it has its own
    process group); so nothing restarts a node after the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(not _alive(r["pid"]) for r in hook_runs(log) if r["event"] == "start"):
            return
        time.sleep(0.05)
    raise AssertionError(f"hooks still running after {timeout:.0f} s: {hook_runs(log)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is as good as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _hook_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="rollout test hook")
    p.add_argument("--log", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--first-sleep", type=float)
    p.add_argument("--address", required=True)
    p.add_argument("--exit", type=int)
    p.add_argument("--fault")
    p.add_argument("--hold")
    p.add_argument("then", nargs="*")
    a = p.parse_args(argv)
    url = f"http://{a.address}"

    def note(event: str, **more) -> None:
        rec = {"event": event, "node": a.node, "pid": os.getpid(), "at": time.time(), **more}
        fd = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(rec) + "\n").encode())
        finally:
            os.close(fd)

    first = not any(r["node"] == a.node for r in hook_runs(Path(a.log)))
    note("start", argv=a.then, stats=_get_json(url + "/_sim/stats"))
    time.sleep(a.first_sleep if first and a.first_sleep is not None else a.sleep)
    held_until = time.monotonic() + 120
    while a.hold and not os.path.exists(a.hold) and time.monotonic() < held_until:
        time.sleep(0.05)
    if a.exit is not None:
        print(f"test hook: failing on purpose with exit {a.exit}", file=sys.stderr)
        note("end", rc=a.exit)
        return a.exit
    rc = subprocess.run(a.then).returncode if a.then else 0
    if rc == 0 and a.fault:
        import urllib.request

        req = urllib.request.Request(url + "/_sim/fault", data=a.fault.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()
    note("end", rc=rc)
    return rc


def revision_digest(revision: str) -> str:
    """The manifest digest an agent reports for a demo node on `revision`, computed here from the revision's
    files (asrtop.demo.revisions) with the agent's manifest rule: not read from any node."""
    import hashlib
    import tempfile

    from asrtop.demo.revisions import write_model_files
    from asrtop_agent.collectors.model import manifest_digest

    with tempfile.TemporaryDirectory() as d:
        write_model_files(Path(d), revision)
        files = sorted(p for p in Path(d).rglob("*") if p.is_file())
        return manifest_digest((str(p.relative_to(d)), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
                               for p in files)


# --- reading the fleet --------------------------------------------------------------------------------------
def _get_json(url: str, timeout: float = 2.0) -> dict | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


class Fleet:
    """What the demo cluster looks like now: balancer rows, each node's model, the audit log, the state file."""

    def __init__(self, cluster):
        self.c = cluster

    @property
    def audit_path(self) -> Path:
        return self.c.workdir / "audit.jsonl"

    def balancer(self) -> dict[str, tuple[str, str, str]]:
        """node -> (status, weight, backup flag) as HAProxy shows them."""
        return {n: (r.get("status", ""), r.get("weight", ""), r.get("bck", ""))
                for n, r in self.c.server_states().items()}

    def models(self) -> dict[str, tuple[str | None, str | None]]:
        """node -> (model the node serves (its /health), manifest digest its agent reports)."""
        out = {}
        for n in self.c.nodes:
            health = _get_json(n.url + "/health") or {}
            status = _get_json(n.agent_url + "/v1/status") or {}
            loaded = health.get("models_loaded") or [None]
            out[n.name] = (loaded[0], (status.get("model") or {}).get("sha256"))
        return out

    def agent_status(self, node: str) -> dict:
        n = next(x for x in self.c.nodes if x.name == node)
        return _get_json(n.agent_url + "/v1/status") or {}

    def digests(self) -> dict[str, str | None]:
        return {n: d for n, (_, d) in self.models().items()}

    def wait_digest(self, node: str, digest: str, timeout: float = 10.0) -> None:
        """Until the node's agent reports `digest` (it re-hashes on its own interval)."""
        deadline = time.monotonic() + timeout
        while self.digests()[node] != digest:
            if time.monotonic() > deadline:
                raise AssertionError(f"{node} does not report {digest[:12]}: {self.models()[node]}")
            time.sleep(0.05)

    def audit_mark(self) -> int:
        try:
            return len(self.audit_path.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def audit_since(self, mark: int) -> list[dict]:
        try:
            lines = self.audit_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(x) for x in lines[mark:]]

    def state(self):
        """The rollout state file (asrtop.control.rollout_model.RolloutState), or None."""
        from asrtop.control.rollout_model import RolloutState, state_path

        p = state_path(self.audit_path)
        if not p.exists():
            return None
        return RolloutState.from_json(json.loads(p.read_text()))

    def sim_stats(self) -> dict[str, dict]:
        return {n.name: self.c.node_stats(n.index) or {} for n in self.c.nodes}


def stage_audit(lines: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """node -> [(stage, outcome)] of the rollout's own audit lines (action "rollout", value the stage)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for rec in lines:
        if rec.get("action") == "rollout" and rec.get("node"):
            out.setdefault(rec["node"], []).append((str(rec.get("value")), str(rec.get("outcome"))))
    return out


# --- load -----------------------------------------------------------------------------------------------------
class Load:
    """LoadGenerator in a thread, bounded by `duration` (it stops by itself) and by stop()."""

    def __init__(self, url: str, streams: int, duration: float, clip_seconds: tuple[float, ...] = (5, 8),
                 timeout: float = 60.0):
        from asrtop.demo.load import LoadGenerator

        self.gen = LoadGenerator(url, streams, duration=duration, clip_seconds=clip_seconds, timeout=timeout)
        self.report = None
        self._t = threading.Thread(target=self._run, name="rollout-load", daemon=True)
        self._t.start()

    def _run(self) -> None:
        self.report = self.gen.run()

    def wait_in_flight(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.gen.in_flight < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def finish(self, timeout: float = 90.0):
        self.gen.stop()
        self._t.join(timeout)
        assert not self._t.is_alive(), "load did not finish"
        return self.report


def hold_busy(url: str, wav: bytes, count: int = 1, timeout: float = 60.0) -> Callable[[], list[int]]:
    """`count` requests with `wav` straight to a node (not through HAProxy), so a drain's wait lasts.
    Returns a join() that gives their HTTP statuses."""
    import urllib.request

    boundary = "rolloutholdbusy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav + f"\r\n--{boundary}--\r\n".encode()
    statuses: list[int] = []

    def one() -> None:
        req = urllib.request.Request(url + "/asr", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                statuses.append(r.status)
        except OSError as e:
            statuses.append(getattr(e, "code", None) or -1)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()

    def join() -> list[int]:
        for t in threads:
            t.join(timeout)
        return statuses

    return join


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "hook":
        sys.exit(_hook_main(sys.argv[2:]))
    sys.exit("usage: rollout.py hook --log FILE --node NODE [--sleep S] [--exit N] -- ARGV...")
