"""The ASR service: health probe, the process listening on its port (CPU, RSS, Python env), in-flight.

In-flight is either exact (the agent's proxy counts it) or the number of established TCP connections
to the ASR port (sockets.py: netlink sock_diag with an in-kernel port filter, /proc/net/tcp fallback), read
in the round's one socket dump with the listener and the stream port's connections. The probe's own connection
is reported to the socket reader (own_connections), so that it alone does not make the next round walk the
kernel's established table again.
The listening PID is found once per listening socket (inode) and cached.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from ..snapshot import AsrSnap
from .probe import HttpProbe
from .requests import RequestCounters
from .streams import ConnectionStreams, ProxyStreams
from .sockets import PortSockets, ProcNetTcp, SockDiag, default_table  # noqa: F401 (re-exported for tests)

# Python packages of the ASR environment worth showing (version skew across nodes is a classic outage).
KEY_PACKAGES = ("funasr", "torch", "torchaudio", "modelscope", "onnxruntime", "onnxruntime_gpu",
                "transformers", "vllm", "numpy")


def url_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "127.0.0.1", port


def python_env(candidates: list[str]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """Python version and key package versions of an interpreter.

    `candidates` are interpreter paths, best first (VIRTUAL_ENV, argv[0], the resolved exe). The prefix
    read is the first one that is a venv (pyvenv.cfg), else the first with a lib/python3.N/site-packages
    (a venv made without pyvenv.cfg, e.g. a copied one: its bin/python resolves to the system's), else the
    last one's. The version comes from pyvenv.cfg, else a python3.N directory or interpreter name; Debian's
    unversioned lib/python3/dist-packages never passes for a version.
    """
    prefixes = [Path(c).parent.parent for c in candidates if c]
    if not prefixes:
        return None, ()
    prefix = (next((p for p in prefixes if (p / "pyvenv.cfg").is_file()), None)
              or next((p for p in prefixes if any(p.glob("lib/python3.*/site-packages"))), None)
              or prefixes[-1])
    version = None
    try:
        for line in (prefix / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info") and value.strip():
                version = value.strip()
    except OSError:
        pass
    site_dirs = [p for pattern in ("lib/python3*/site-packages", "lib/python3*/dist-packages",
                                   "local/lib/python3*/dist-packages") for p in prefix.glob(pattern)]
    if version is None:
        names = [d.parent.name for d in site_dirs] + [Path(c).name for c in candidates if c]
        version = next((m.group(1) for m in map(_VERSIONED.fullmatch, names) if m), None)
    packages: dict[str, str] = {}
    for site in site_dirs:
        for name in KEY_PACKAGES:
            for dist in site.glob(f"{name}-*.dist-info"):
                packages.setdefault(name, dist.name[len(name) + 1:-len(".dist-info")])
    return version, tuple(sorted(packages.items()))


_VERSIONED = re.compile(r"python(3\.\d+)")


def _interpreter_candidates(proc: Any) -> list[str]:
    out = []
    try:
        venv = proc.environ().get("VIRTUAL_ENV")
        if venv:
            out.append(os.path.join(venv, "bin", "python"))
    except Exception:
        pass
    try:
        argv0 = proc.cmdline()[0]
        if os.path.isabs(argv0):
            out.append(argv0)
    except Exception:
        pass
    try:
        out.append(proc.exe())
    except Exception:
        pass
    return out


class AsrCollector:
    def __init__(self, url: str, health_path: str = "/health", *, session: Any = None,
                 psutil_mod: Any = None, clock: Callable[[], float] = time.perf_counter,
                 connections: SockDiag | ProcNetTcp | None = None, counters: RequestCounters | None = None,
                 probe_timeout: float = 2.0, probe: Any = None, stream_port: int | None = None,
                 proxy_streams: ProxyStreams | None = None):
        """`probe`: an object of collectors/probe.py (default: HTTP GET of health_path). Streams come from
        `proxy_streams` (exact) when given, else from the connections on `stream_port` when given."""
        self.url = url.rstrip("/")
        self.probe = probe or HttpProbe(self.url, health_path, probe_timeout, clock, session)
        self.probe_url = self.probe.target
        self.host, self.port = url_port(url)
        if psutil_mod is None:
            import psutil as psutil_mod
        self.psutil = psutil_mod
        self.clock = clock
        self.conns = connections or default_table()
        self.counters = counters
        self.proxy_streams = proxy_streams
        self.conn_streams = (ConnectionStreams(stream_port, self.conns)
                             if stream_port and proxy_streams is None else None)
        self.probe_timeout = probe_timeout
        self._inode: int | None = None
        self._pid: int | None = None
        self._proc: Any = None
        self._cpu_primed = False
        self._env: tuple[str | None, tuple] = (None, ())
        self.last_pid: int | None = None

    async def close(self) -> None:
        await self.probe.close()

    async def collect(self) -> AsrSnap:
        import asyncio

        # The sockets are read before the probe: a WS probe's own connection is never taken for a stream. A
        # blocking probe (the default HTTP GET) runs right after them in the same worker thread: one hop a round.
        then = self.probe.check_blocking if self.probe.blocking else None
        (pid, cpu, rss, perr, conns), streams, probed = await asyncio.to_thread(self._socket_facts, then)
        if self.proxy_streams is not None:
            streams = self.proxy_streams.snapshot()
        if probed is None:
            probed = await self.probe.check()
            self._probed()
        up, latency, error = probed
        if self.counters is not None:
            reqs = self.counters.snapshot()
            in_flight, source = reqs.in_flight, "proxy"
        else:
            reqs, in_flight, source = None, conns, "connections" if conns is not None else None
        python, packages = self._env
        return AsrSnap(url=self.url, up=up, probe_latency_seconds=latency, error=error, pid=pid,
                       process_cpu_ratio=cpu, process_rss_bytes=rss, in_flight=in_flight,
                       in_flight_source=source, requests=reqs, process_error=perr,
                       python=python, packages=packages, probe_kind=self.probe.kind,
                       probe_target=self.probe.target, streams=streams)

    def _socket_facts(self, then_probe: Callable[[], tuple] | None = None):
        """(process facts, streams, then_probe() or None), in the worker thread."""
        sample = self._sample() if self.conns.available() else None
        streams = None
        if self.conn_streams is not None:
            streams = self.conn_streams.collect(sample.established(self.conn_streams.port) if sample else None)
        facts = self._process_facts(sample)
        probed = None
        if then_probe is not None:
            probed = then_probe()
            self._probed()
        return facts, streams, probed

    def _probed(self) -> None:
        """The probe made one connection, closed by now, to the service: on this host when its port's listener
        is (both ends of it move the TCP counters)."""
        self.conns.own_connections(1, local=self._inode is not None)

    def _sample(self) -> PortSockets:
        """The round's one read of the sockets (one walk of the kernel's tables): the ASR port's listener, its
        established connections unless the proxy counts in flight exactly, the stream port's; our side of the
        connections to the ASR port only while no listener is known here (the service being elsewhere)."""
        established = () if self.counters is not None else (self.port,)
        if self.conn_streams is not None:
            established += (self.conn_streams.port,)
        client = self.port if self.counters is None and self._inode is None else None
        return self.conns.sample(listen=(self.port,), established=established, client=client)

    def _process_facts(self, sample: PortSockets | None = None
                       ) -> tuple[int | None, float | None, int | None, str | None, int | None]:
        """pid, cpu ratio (of one core), rss, reason when something is absent, established connections.
        `sample`: this round's read of the sockets (None: read them now)."""
        if not self.conns.available():
            return self._process_facts_psutil()
        if sample is None:
            sample = self._sample()
        inode = sample.listeners.get(self.port)
        if self.counters is not None:  # the proxy counts in flight exactly: only the listener (its PID) is needed
            conns = None
        else:
            if inode is None and self.port not in sample.client:  # the listener went since the last round
                sample = self.conns.sample(client=self.port)
            _, server, client = sample.scan(self.port)
            conns = server if inode is not None else client
        if inode is None:
            self._forget()
            return None, None, None, f"nothing listens on port {self.port} on this host", conns
        if inode != self._inode:
            self._forget()
            self._inode = inode
            self._pid = self.conns.owner_of(inode)
        if self._pid is None:
            return None, None, None, (f"the process listening on port {self.port} is not visible "
                                      "(run the agent in the ASR's PID namespace or as its user)"), conns
        return (*self._read_process(), conns)

    def _process_facts_psutil(self):
        # Non-Linux (or no /proc): psutil walks every process; may need privileges.
        try:
            conns = self.psutil.net_connections("tcp")
        except Exception as exc:
            return None, None, None, f"connections not readable: {exc}", None
        pid = next((c.pid for c in conns if c.status == "LISTEN" and c.laddr and c.laddr.port == self.port), None)
        n = sum(1 for c in conns if c.status == "ESTABLISHED" and c.laddr and c.laddr.port == self.port)
        if pid != self._pid:
            self._forget()
            self._pid = pid
        if pid is None:
            return None, None, None, f"no visible process listens on port {self.port}", n
        return (*self._read_process(), n)

    def _forget(self) -> None:
        self._inode = self._pid = self._proc = None
        self._cpu_primed = False
        self._env = (None, ())

    def _attach(self) -> bool:
        try:
            self._proc = self.psutil.Process(self._pid)
            self._env = python_env(_interpreter_candidates(self._proc))
            return True
        except Exception:
            self._proc = None
            return False

    def _read_process(self) -> tuple[int | None, float | None, int | None, str | None]:
        """(pid, cpu, rss, error) of the attached process; a vanished one is forgotten (looked up again)."""
        pid = self.last_pid = self._pid
        if self._proc is None and not self._attach():
            self._forget()
            return None, None, None, "the process listening on the ASR port vanished"
        gone = getattr(self.psutil, "NoSuchProcess", ProcessLookupError)
        try:
            with self._proc.oneshot():
                cpu = self._proc.cpu_percent(None) / 100.0
                rss = int(self._proc.memory_info().rss)
        except gone:
            self._forget()
            return None, None, None, "the process listening on the ASR port vanished"
        except Exception as exc:  # AccessDenied: keep the PID (no costly re-lookup), say why the rest is absent
            return pid, None, None, f"process {pid} not readable: {type(exc).__name__}"
        if not self._cpu_primed:
            self._cpu_primed = True
            cpu = None  # no interval to measure over yet
        return pid, cpu, rss, None


def agent_python() -> str:
    return "%d.%d.%d" % sys.version_info[:3]
