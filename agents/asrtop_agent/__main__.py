"""`asrtop-agent`: parse the command line, bind the ports, run collection + HTTP serving until signalled.

Every operator error (unknown flag, bad interval/address, port in use) is one line on stderr, exit != 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import socket
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import DEFAULT_PORT, __version__

EXIT_USAGE = 2
EXIT_RUNTIME = 1


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; we want one line
        raise UsageError(message)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "": 1.0}


def parse_interval(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad interval {text!r} (use e.g. 1s, 500ms, 2m)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"interval {text!r} out of range (50ms..60m)")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]*):(\d+)|(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad listen address {text!r} (use HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT})")
    host = m.group(1) or m.group(3) or "0.0.0.0"
    port = int(m.group(2) or m.group(4) or m.group(5))
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"bad port in {text!r} (1..65535)")
    return host, port


def parse_url(text: str) -> str:
    parts = urlsplit(text)
    try:
        parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --asr-url {text!r}: invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"bad --asr-url {text!r} (use http://HOST:PORT)")
    return text.rstrip("/")


def parse_probe_arg(text: str) -> tuple[str, str | None]:
    from .collectors.probe import parse_probe

    try:
        return parse_probe(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_port(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"bad --stream-port {text!r} (a port number, 1..65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="asrtop-agent", description="Read-only node sidecar for an ASR service: "
                "GPU, host, service, request and model-hash facts as /metrics and /v1/status.")
    p.add_argument("--asr-url", required=True, type=parse_url, help="base URL of the local ASR service")
    p.add_argument("--model-dir", action="append", default=[], help="model directory to hash (repeatable)")
    p.add_argument("--listen", type=parse_listen, default=("0.0.0.0", DEFAULT_PORT),
                   help=f"HOST:PORT for /metrics and /v1/status (default 0.0.0.0:{DEFAULT_PORT})")
    p.add_argument("--node", default=None, help="node name (default: hostname)")
    p.add_argument("--interval", type=parse_interval, default=1.0, help="collection interval (default 1s)")
    p.add_argument("--health-path", default="/health", help="ASR health probe path (default /health)")
    p.add_argument("--probe", type=parse_probe_arg, default=None, metavar="http[:PATH]|tcp|ws[:PATH]",
                   help="how to tell the ASR service is up: GET of PATH on --asr-url (default http:/health, "
                        "or --health-path), a TCP connect to its port, or a WebSocket handshake on the stream "
                        "port (else --asr-url), closed at once")
    p.add_argument("--stream-port", type=parse_port, default=None, metavar="PORT",
                   help="port of the streaming (WebSocket) service on the ASR host: its established "
                        "connections are the open streams, aged from when first seen")
    p.add_argument("--proxy", type=parse_listen, default=None, metavar="LISTEN",
                   help="also run an in-path proxy on HOST:PORT forwarding to --asr-url, counting requests exactly")
    p.add_argument("--proxy-ws", type=parse_listen, default=None, metavar="LISTEN",
                   help="also run an in-path WebSocket proxy on HOST:PORT forwarding to the stream port "
                        "(else --asr-url), counting streams, frames and audio exactly")
    p.add_argument("--gpu", choices=("nvml", "simulated", "none"), default="nvml",
                   help="GPU source (default nvml; 'simulated' is for the demo only)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.add_argument("--version", action="version", version=f"asrtop-agent {__version__}")
    return p


@dataclass
class Options:
    asr_url: str
    model_dirs: list[str]
    listen: tuple[str, int]
    node: str
    interval: float
    health_path: str
    proxy: tuple[str, int] | None
    gpu: str
    log_level: str = "warning"
    probe: tuple[str, str | None] = ("http", None)  # (kind, path): path None = --health-path for http
    stream_port: int | None = None
    proxy_ws: tuple[str, int] | None = None

    @property
    def stream_url(self) -> str:
        from .collectors.probe import stream_url

        return stream_url(self.asr_url, self.stream_port)


def parse_args(argv: list[str] | None) -> Options:
    ns = build_parser().parse_args(argv)
    return Options(ns.asr_url, ns.model_dir, ns.listen, ns.node or socket.gethostname(), ns.interval,
                   ns.health_path, ns.proxy, ns.gpu, ns.log_level, ns.probe or ("http", None), ns.stream_port,
                   ns.proxy_ws)


def bind(addr: tuple[str, int], what: str) -> socket.socket:
    host, port = addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == 98 else (exc.strerror or str(exc))
        raise RuntimeError(f"cannot listen on {host}:{port} for {what}: {reason}") from None
    sock.setblocking(False)
    return sock


def _endpoint(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_line(opts: Options, sockets: dict[str, socket.socket]) -> str:
    """What a hand-started agent says once on stderr: where it listens and for which node."""
    where = _endpoint(sockets["agent"])
    line = (f"asrtop-agent {__version__}: node {opts.node}: status http://{where}/v1/status, "
            f"metrics http://{where}/metrics")
    if "proxy" in sockets:
        line += f", proxy {_endpoint(sockets['proxy'])} -> {opts.asr_url} (the balancer's address for this node)"
    if "proxy_ws" in sockets:
        line += f", ws proxy {_endpoint(sockets['proxy_ws'])} -> {opts.stream_url}"
    return line + f"; ASR {opts.asr_url}, GPU {opts.gpu}"


async def _start_aiohttp(app, sock: socket.socket):
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


async def serve(opts: Options, sockets: dict[str, socket.socket]) -> None:
    import psutil  # GPU process names (NVML gives only pids), as the host and ASR collectors read them

    from .collectors.asr import AsrCollector, agent_python
    from .collectors.gpu import make_gpu_collector
    from .collectors.host import HostCollector
    from .collectors.model import ModelHasher
    from .collectors.probe import make_probe
    from .collectors.requests import RequestCounters
    from .server import make_app
    from .snapshot import CollectionLoop

    counters = RequestCounters() if opts.proxy else None
    proxy_streams = None
    if opts.proxy_ws:
        from .collectors.streams import ProxyStreams

        proxy_streams = ProxyStreams()
    probe_timeout = max(0.5, min(5.0, opts.interval * 2))
    probe = make_probe(*opts.probe, opts.asr_url, stream_port=opts.stream_port, health_path=opts.health_path,
                       timeout=probe_timeout)
    asr = AsrCollector(opts.asr_url, opts.health_path, counters=counters, probe_timeout=probe_timeout,
                       probe=probe, stream_port=opts.stream_port, proxy_streams=proxy_streams)
    model = ModelHasher(opts.model_dirs)  # its clock is the loop's (time.time): listed_at vs round starts
    loop_ = CollectionLoop(node=opts.node, version=__version__, interval=opts.interval, host=HostCollector(),
                           gpu=make_gpu_collector(opts.gpu, opts.node, psutil_mod=psutil,
                                                  asr_pid=lambda: asr.last_pid, asr_url=opts.asr_url),
                           asr=asr, model=model, agent_python=agent_python())
    app = make_app(lambda: loop_.latest, loop_.fresh, loop_.clock)
    await app.start(sockets["agent"])
    runners = []  # the proxies' (aiohttp, imported only when one runs: the agent's memory floor)
    proxy = ws_proxy = None
    if counters is not None:
        from .proxy import AsrProxy

        proxy = AsrProxy(opts.asr_url, counters)
        runners.append(await _start_aiohttp(proxy.app(), sockets["proxy"]))
    if proxy_streams is not None:
        from .proxy_ws import WsProxy

        ws_proxy = WsProxy(opts.stream_url, proxy_streams)
        runners.append(await _start_aiohttp(ws_proxy.app(), sockets["proxy_ws"]))
    print(start_line(opts, sockets), file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    task = asyncio.create_task(loop_.run())
    try:
        await stop.wait()
    finally:
        task.cancel()
        model.stop()
        for r in reversed(runners):
            await r.cleanup()
        await app.close()
        await asr.close()
        if proxy is not None:
            await proxy.close()
        if ws_proxy is not None:
            await ws_proxy.close()


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        print(f"asrtop-agent: error: {exc} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=opts.log_level.upper(), format="asrtop-agent: %(levelname)s %(message)s")
    try:
        sockets = {"agent": bind(opts.listen, "the agent")}
        if opts.proxy:
            sockets["proxy"] = bind(opts.proxy, "the proxy")
        if opts.proxy_ws:
            sockets["proxy_ws"] = bind(opts.proxy_ws, "the WebSocket proxy")
    except RuntimeError as exc:
        print(f"asrtop-agent: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        asyncio.run(serve(opts, sockets))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
