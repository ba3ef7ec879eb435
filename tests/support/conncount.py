"""HTTP/1.1 keep-alive backends that count the TCP connections they accept (for connection-reuse tests).

    with CountingBackends(["n1", "n2"]) as be:
        ...  # be.ports["n1"], be.specs() for start_haproxy
        be.connections["n1"]  # TCP connections n1 accepted so far; be.requests["n1"] requests it answered

Each backend answers every request with its own name and keeps the connection open (HTTP/1.1), so a
balancer that pools idle server connections reuses them and the connection count stays small.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

from support.balancers import ServerSpec


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, owner: "CountingBackends"):
        self.name, self.owner = name, owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address) -> None:
        pass  # HAProxy resets the idle connections it closes: not an error here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client closes

    def setup(self) -> None:
        super().setup()
        srv: _Server = self.server  # type: ignore[assignment]
        with srv.owner.lock:
            srv.owner.connections[srv.name] += 1

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv: _Server = self.server  # type: ignore[assignment]
        with srv.owner.lock:
            srv.owner.requests[srv.name] += 1
        body = srv.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_OPTIONS = do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


class CountingBackends:
    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.lock = threading.Lock()
        self.connections = {n: 0 for n in self.names}
        self.requests = {n: 0 for n in self.names}
        self._servers = [_Server(n, self) for n in self.names]
        self.ports = {s.name: s.server_address[1] for s in self._servers}
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
                         for s in self._servers]
        for t in self._threads:
            t.start()

    def specs(self, **per_server) -> list[ServerSpec]:
        return [ServerSpec(n, self.ports[n], **per_server.get(n, {})) for n in self.names]

    def counts(self) -> dict[str, tuple[int, int]]:
        """name -> (connections accepted, requests answered)."""
        with self.lock:
            return {n: (self.connections[n], self.requests[n]) for n in self.names}

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> "CountingBackends":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
