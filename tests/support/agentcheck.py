"""A tiny TCP agent for HAProxy's `agent-check`: answers one configurable word to each connection, then closes.

    with AgentCheck("ready\\n") as agent:                 # "ready\\n", "drain\\n", "maint\\n", "up 100%\\n", ...
        spec = ServerSpec("n1", port, check=True, extra=agent.server_words(inter_ms=500))
        ...
        agent.word = "drain\\n"                            # the next answer says drain
        agent.answers                                     # connections answered so far

HAProxy connects every `agent-inter`, reads the line and acts on it like the Runtime API (ready/drain/maint,
a weight). 127.0.0.1 only, a daemon thread, stop() closes the listening socket.
"""

from __future__ import annotations

import socket
import threading


class AgentCheck:
    def __init__(self, word: str = "ready\n"):
        self.word = word
        self.answers = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))  # the kernel picks the port: no race with other tests
        self._sock.listen(64)
        self._sock.settimeout(0.2)  # so the loop sees stop() soon
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="test-agent-check")

    def server_words(self, inter_ms: int = 500) -> str:
        """The `server` line words that point HAProxy's agent check here."""
        return f"agent-check agent-addr 127.0.0.1 agent-port {self.port} agent-inter {inter_ms}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self.word.encode())
                    self.answers += 1
                except OSError:
                    pass

    def start(self) -> "AgentCheck":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> "AgentCheck":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
