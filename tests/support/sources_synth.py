"""Synthetic agents for the sources tests and fleet-scale benchmarks.

`SynthNode` describes one node; `status_body()` renders it as a schema-1 /v1/status body (~1.5 KB with
one GPU; `?view=brief` is served the subset the real agent's asrtop_agent.status.brief makes of it) and
`metrics_text()` as the agent's Prometheus exposition in the agreed metric names (agents/README.md).
`serve_agents()` serves many of them from one asyncio loop (the tests' in-process fleets) on distinct loopback
ports with a tiny keep-alive HTTP/1.1 responder (precomputed answers); `python sources_synth.py N` (the
benchmarks' fleet in its own process) serves the same answers from one thread on one epoll
(serve_agents_blocking), cheaper per connection, so that the process under test, not the stand-in, is what a
benchmark measures. Black-holed agents accept and never answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field

from asrtop_agent.status import brief


@dataclass
class SynthNode:
    name: str
    index: int = 0
    sha256: str = hashlib.sha256(b"Fun-ASR-Nano-2512").hexdigest()
    model_state: str = "ok"
    in_flight: int = 3
    cpu_ratio: float = 0.25
    load1: float = 1.5
    gpu_util: float = 0.62
    gpu_mem_used: int = 9 * 2**30
    gpu_mem_total: int = 24 * 2**30
    temperature: float = 61.0
    requests: dict = field(default_factory=lambda: {"2xx": 1200, "4xx": 3, "5xx": 1})
    collected_at: float | None = None
    latency_sum: float = 610.2  # seconds over all requests so far
    audio_seconds: float = 5400.5

    def status_body(self) -> dict:
        now = self.collected_at if self.collected_at is not None else time.time()
        total = sum(self.requests.values())
        return {
            "schema": 1,
            "node": self.name,
            "agent_version": "0.1.0",
            "collected_at": now,
            "interval_seconds": 1.0,
            "host": {"cpu_ratio": self.cpu_ratio, "load1": self.load1, "load5": 1.2, "load15": 1.0,
                     "memory_used_bytes": 21 * 2**30, "memory_total_bytes": 64 * 2**30},
            "gpu_source": "simulated",
            "gpu_error": None,
            "gpus": [{
                "index": 0, "uuid": f"GPU-{self.index:08x}-5d28-e820-9ec2-be7c00000000",
                "name": "NVIDIA A10", "utilization_ratio": self.gpu_util,
                "memory_used_bytes": self.gpu_mem_used, "memory_total_bytes": self.gpu_mem_total,
                "temperature_celsius": self.temperature, "power_watts": 118.5, "power_limit_watts": 150.0,
                "processes": [{"pid": 4242, "name": "python", "gpu_memory_bytes": self.gpu_mem_used - 2**28}],
            }],
            "asr": {
                "url": f"http://127.0.0.1:{10095 + self.index}", "up": True, "probe_latency_seconds": 0.004,
                "error": None, "pid": 4242, "process_cpu_ratio": 0.8, "process_rss_bytes": 5 * 2**30,
                "in_flight": self.in_flight, "in_flight_source": "proxy",
                "requests": {"total": total, "by_class": dict(self.requests), "in_flight": self.in_flight,
                             "latency_p50_seconds": 0.42, "latency_p95_seconds": 1.31,
                             "latency_sum_seconds": self.latency_sum, "audio_seconds_total": self.audio_seconds,
                             "bytes_received_total": 98_000_000, "bytes_sent_total": 1_200_000},
            },
            "model": {"state": self.model_state, "sha256": self.sha256, "files": 12, "bytes": 1_986_000_000,
                      "error": None, "dirs": [{"path": "/models/Fun-ASR-Nano-2512", "state": self.model_state,
                                               "sha256": self.sha256, "files": 12, "bytes": 1_986_000_000,
                                               "error": None}]},
            "versions": {"agent": "0.1.0", "driver": "550.54.15", "cuda": "12.4", "funasr": "1.2.7",
                         "torch": "2.5.1"},
        }

    def metrics_text(self) -> str:
        g = f'gpu="0",uuid="GPU-{self.index:08x}-5d28-e820-9ec2-be7c00000000"'
        now = self.collected_at if self.collected_at is not None else time.time()
        lines = [
            "# TYPE asr_node_info gauge",
            f'asr_node_info{{node="{self.name}",agent_version="0.1.0",gpu_source="simulated"}} 1',
            f"asr_host_cpu_ratio {self.cpu_ratio}",
            f"asr_host_load1 {self.load1}",
            f"asr_host_memory_used_bytes {21 * 2**30}",
            f"asr_host_memory_total_bytes {64 * 2**30}",
            f'asr_gpu_info{{{g},name="NVIDIA A10"}} 1',
            f"asr_gpu_utilization_ratio{{{g}}} {self.gpu_util}",
            f"asr_gpu_memory_used_bytes{{{g}}} {self.gpu_mem_used}",
            f"asr_gpu_memory_total_bytes{{{g}}} {self.gpu_mem_total}",
            f"asr_gpu_temperature_celsius{{{g}}} {self.temperature}",
            f"asr_gpu_power_watts{{{g}}} 118.5",
            f"asr_gpu_power_limit_watts{{{g}}} 150.0",
            f'asr_gpu_process_memory_bytes{{{g},pid="4242",process="python"}} {self.gpu_mem_used - 2**28}',
            "asr_service_up 1",
            "asr_service_probe_latency_seconds 0.004",
            "asr_service_process_cpu_ratio 0.8",
            f"asr_service_process_resident_memory_bytes {5 * 2**30}",
            f'asr_service_in_flight_requests{{source="proxy"}} {self.in_flight}',
            *(f'asr_requests_total{{class="{k}"}} {v}' for k, v in self.requests.items()),
            "# TYPE asr_request_duration_seconds histogram",
            *(f'asr_request_duration_seconds_bucket{{le="{le}"}} {int(sum(self.requests.values()) * f)}'
              for le, f in (("0.1", 0.1), ("0.5", 0.55), ("1.0", 0.9), ("2.5", 0.99), ("+Inf", 1.0))),
            f"asr_request_duration_seconds_sum {self.latency_sum}",
            f"asr_request_duration_seconds_count {sum(self.requests.values())}",
            "asr_request_received_bytes_total 98000000",
            "asr_response_sent_bytes_total 1200000",
            f"asr_audio_seconds_total {self.audio_seconds}",
            f'asr_model_info{{sha256="{self.sha256}"}} 1',
            f'asr_model_dir_info{{path="/models/Fun-ASR-Nano-2512",sha256="{self.sha256}"}} 1',
            "asr_model_files 12",
            "asr_model_bytes 1986000000",
            *(f'asr_model_state{{state="{s}"}} {1 if s == self.model_state else 0}'
              for s in ("ok", "hashing", "missing", "error")),
            *(f'asr_agent_collect_duration_seconds{{collector="{c}"}} 0.002' for c in ("gpu", "host", "asr", "model")),
            *(f'asr_agent_collect_errors_total{{collector="{c}"}} 0' for c in ("gpu", "host", "asr", "model")),
            f"asr_agent_last_collect_timestamp_seconds {now}",
        ]
        return "\n".join(lines) + "\n"


def _response(status: str, body: bytes, ctype: str) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n")
    return head.encode() + body


class _AgentProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1 for GETs without bodies: enough for pollers and Prometheus scrapes."""

    def __init__(self, routes: dict[bytes, bytes] | None):
        self.routes = routes  # None: black hole (accept, read, never answer)
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        if self.routes is None:
            return
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            answer = _answer(self.routes, head)
            if answer is None:
                self.transport.close()
                return
            self.transport.write(answer)


def _answer(routes: dict[bytes, bytes], head: bytes) -> bytes | None:
    """The precomputed answer to a request's head; None when the head is not a request line."""
    try:
        path, _, query = head.split(b" ", 2)[1].partition(b"?")
    except IndexError:
        return None
    view = _view(query)
    return routes.get(path if view == b"full" else path + b"?view=" + view) or _NOT_FOUND


def _view(query: bytes) -> bytes:
    """The query's last `view=` (the real agent's parse_qs reading), b"full" without one."""
    view = b"full"
    for param in query.split(b"&") if query else ():
        name, _, value = param.partition(b"=")
        if name == b"view":
            view = value
    return view


_NOT_FOUND = _response("404 Not Found", b"not found\n", "text/plain")


def routes_for(node: SynthNode) -> dict[bytes, bytes]:
    body = node.status_body()
    return {
        b"/v1/status": _response("200 OK", json.dumps(body).encode(), "application/json"),
        b"/v1/status?view=brief": _response("200 OK", json.dumps(brief(body), separators=(",", ":")).encode(),
                                            "application/json"),
        b"/metrics": _response("200 OK", node.metrics_text().encode(), "text/plain; version=0.0.4"),
    }


async def serve_agents(nodes: list[SynthNode], black_holed: set[str] = frozenset(), host: str = "127.0.0.1"):
    """Start one listener per node on a kernel-chosen port; returns (servers, {node name: port})."""
    loop = asyncio.get_running_loop()
    servers, ports = [], {}
    for n in nodes:
        routes = None if n.name in black_holed else routes_for(n)
        srv = await loop.create_server(lambda r=routes: _AgentProtocol(r), host, 0, backlog=128)
        servers.append(srv)
        ports[n.name] = srv.sockets[0].getsockname()[1]
    return servers, ports


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit: a thousand agents need thousands of sockets."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def serve_agents_blocking(nodes: list[SynthNode], black_holed: set[str], ready, stop) -> None:
    """The same answers as serve_agents, from one thread on one epoll with no event loop: `ready({name: port})`
    once listening, then serve until `stop()` is true (looked at every 50 ms). A benchmark's stand-in fleet shares
    the machine with the process it measures; asyncio's machinery per connection (transport, protocol,
    callbacks: ~0.13 ms of CPU each) would make the stand-in, not the process under test, set the pace at
    1,000 agents, where real agents each answer on their own machine."""
    import select
    import socket

    ep = select.epoll()
    listeners: dict[int, tuple[socket.socket, dict | None]] = {}
    ports = {}
    for n in nodes:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        listeners[lsock.fileno()] = (lsock, None if n.name in black_holed else routes_for(n))
        ports[n.name] = lsock.getsockname()[1]
        ep.register(lsock.fileno(), select.EPOLLIN)
    conns: dict[int, list] = {}  # fd -> [socket, routes, unread bytes]
    ready(ports)
    while not stop():
        for fd, _ in ep.poll(0.05):
            listener = listeners.get(fd)
            if listener is not None:
                while True:
                    try:
                        conn, _ = listener[0].accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conns[conn.fileno()] = [conn, listener[1], b""]
                    ep.register(conn.fileno(), select.EPOLLIN)
                continue
            entry = conns.get(fd)
            if entry is None:
                continue
            conn, routes, buf = entry
            try:
                data = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                del conns[fd]
                conn.close()  # closing the only descriptor takes it off the epoll
                continue
            if routes is None:
                continue  # black hole: read, never answer
            buf += data
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                answer = _answer(routes, head)
                if answer is None:
                    buf = b""
                    break
                try:
                    conn.sendall(answer)
                except OSError:
                    break
            entry[2] = buf
    for conn, _, _ in conns.values():
        conn.close()
    for lsock, _ in listeners.values():
        lsock.close()
    ep.close()


def main(argv: list[str] | None = None) -> None:
    """`python tests/support/sources_synth.py N [BLACK]`: serve N agents (the last BLACK black-holed),
    print one JSON line {name: port}, run until stdin closes (the parent exits or closes it).
    Served by serve_agents_blocking: a benchmark's stand-in fleet, as cheap per answer as Python allows."""
    import sys
    import threading

    args = sys.argv[1:] if argv is None else argv
    n, black = int(args[0]), int(args[1]) if len(args) > 1 else 0
    raise_nofile()
    nodes = [SynthNode(f"gpu-{i:04d}", i, in_flight=i % 9, load1=(i % 40) / 10) for i in range(n)]
    holes = {x.name for x in nodes[n - black:]} if black else set()
    gone = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # EOF when the parent goes away
        gone.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    serve_agents_blocking(nodes, holes, lambda ports: print(json.dumps(ports), flush=True), gone.is_set)


if __name__ == "__main__":
    main()
