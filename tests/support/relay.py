"""A Runtime API relay for crash tests: stop asrtop at an exact step of a multi-step balancer change.

    with RuntimeRelay(hx.socket) as relay:                 # give asrtop relay.path as the HAProxy socket
        relay.arm("del server asr/n2")                      # SIGKILL after the answer to the 1st `del server`
        proc = subprocess.Popen(asrtop_argv(cfg, "backup", "n2", "on"))
        relay.pid = proc.pid
        proc.wait()                                         # -9: killed right after HAProxy deleted n2

Every connection carries one command (HAProxy's non-interactive mode): the relay reads it, forwards it to
HAProxy's real admin socket, and sends the answer back. Once armed, after the `nth` command starting with
`prefix` ("" = any command) it sends `sig` to `pid`: after the answer reached asrtop (default), or with
before_answer=True after HAProxy executed it but before asrtop hears of it (an acknowledged step asrtop never
recorded). With freeze=True (the default for SIGKILL) every later command is held unanswered (the connection
stays open until the relay stops), so HAProxy stays exactly as it was after that command even if asrtop
sends one more before the signal lands.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from itertools import count
from pathlib import Path

_ids = count()


def _forward(target: str, cmd: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(target)
        s.sendall(cmd)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


class RuntimeRelay:
    def __init__(self, target: str, path: str | None = None):
        self.target = target
        self.path = path or f"/tmp/asrtop-relay-{os.getpid()}-{next(_ids)}.sock"
        self.commands: list[str] = []  # every command seen, in order
        self.pid: int | None = None
        self.tripped = threading.Event()  # the signal was sent
        self.dropped: list[str] = []  # commands not forwarded after a freeze
        self._held: list[socket.socket] = []  # their connections, never answered
        self._lock = threading.Lock()
        self._armed: tuple[str, int, int, bool, bool] | None = None
        self._seen = 0
        self._frozen = False
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="runtime-relay")

    # -- control ----------------------------------------------------------------------------------

    def arm(self, prefix: str, nth: int = 1, sig: int = signal.SIGKILL, before_answer: bool = False,
            freeze: bool | None = None, pid: int | None = None) -> None:
        with self._lock:
            self._armed = (prefix, nth, sig, before_answer, sig == signal.SIGKILL if freeze is None else freeze)
            self._seen, self._frozen = 0, False
            self.tripped.clear()
            if pid is not None:
                self.pid = pid

    def disarm(self) -> None:
        """Forward everything again (after a trip: the next asrtop run talks to HAProxy normally)."""
        with self._lock:
            self._armed, self._frozen, self._seen = None, False, 0
            self.pid = None

    def count(self, prefix: str = "") -> int:
        return sum(1 for c in self.commands if c.startswith(prefix))

    # -- serving ----------------------------------------------------------------------------------

    def start(self) -> "RuntimeRelay":
        Path(self.path).unlink(missing_ok=True)
        self._server.bind(self.path)
        self._server.listen(64)
        self._server.settimeout(0.1)
        self._thread.start()
        return self

    def stop(self) -> None:
        for conn in self._held:
            conn.close()
        self._stop.set()
        self._thread.join(5)
        self._server.close()
        Path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> "RuntimeRelay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_command(self, conn: socket.socket) -> bytes:
        data = b""
        conn.settimeout(10)
        while b"\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def _handle(self, conn: socket.socket) -> None:
        try:
            raw = self._read_command(conn)
        except OSError:
            conn.close()
            return
        if not raw.endswith(b"\n"):  # the client died while sending it: HAProxy would wait for the rest
            conn.close()
            return
        cmd = raw.decode(errors="replace").strip()
        with self._lock:  # one command at a time: the count and the freeze are exact
            self.commands.append(cmd)
            if self._frozen:  # never answered: the caller waits there until the signal ends it
                self.dropped.append(cmd)
                self._held.append(conn)
                return
            trip = None
            if self._armed is not None and cmd.startswith(self._armed[0]):
                self._seen += 1
                if self._seen == self._armed[1]:
                    trip, self._armed = self._armed, None
                    self._frozen = trip[4]
            try:
                answer = _forward(self.target, raw)
            except OSError:
                answer = b""
            if trip is not None and trip[3]:  # HAProxy did it; asrtop never hears
                self._signal(trip[2])
                self._held.append(conn)
                return
        held_signal = trip is not None and trip[2] != signal.SIGKILL
        if held_signal:
            # a signal asrtop holds (SIGINT, SIGTERM) goes before the answer, so it is there when asrtop reads the
            # answer: sent after it, a loaded machine once delivered it only after asrtop had finished the change
            self._signal(trip[2])
            time.sleep(0.05)  # the target's main thread runs its handler (asrtop's worker waits for the answer)
        with conn:
            try:
                conn.sendall(answer)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if trip is not None and not held_signal:
            self._signal(trip[2])

    def _signal(self, sig: int) -> None:
        deadline = time.monotonic() + 5
        while self.pid is None and time.monotonic() < deadline:  # armed before the process was started
            time.sleep(0.005)
        if self.pid is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        self.tripped.set()
