"""Hold SIGINT, SIGTERM and SIGHUP while an action is sent, read back and audited; deliver them after.

Why not signal.pthread_sigmask: the balancer work runs in a worker thread (asyncio.to_thread) while Python
runs signal handlers in the main thread only, and a mask set in the worker does not keep the kernel from
delivering a process-wide signal to the main thread (where the default SIGTERM/SIGHUP action ends the process
in the middle of a `del server` .. `add server`). So the hold installs Python handlers in the main thread
that only remember the first signal. The adapter learns of it at its next checkpoint (StepRecorder.checkpoint:
between steps, never inside a critical section such as delete-to-re-create) and stops there, undoing what it
started; the controller then reads back, audits, and leaves the hold, which delivers the signal to the
handler that was there before (Python's KeyboardInterrupt for SIGINT, the default action for SIGTERM/SIGHUP,
or an enclosing hold: holds nest). SIGKILL cannot be held: the intent journal and `asrtop recover` cover it.

Outside the main thread (or without signal support) a hold does nothing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable, Union

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_Handler = Union[Callable[[int, "FrameType | None"], object], int, signal.Handlers, None]


def signal_name(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"{name} (Ctrl+C)" if signum == signal.SIGINT else name


class SignalHold:
    """`with SignalHold() as hold:` ... `hold.pending` is the first held signal (None: none arrived).

    redeliver=False leaves delivering to the caller (the CLI prints the result first, then exits 130)."""

    def __init__(self, redeliver: bool = True):
        self.redeliver = redeliver
        self.pending: int | None = None
        self.count = 0
        self._old: dict[int, _Handler] = {}

    @property
    def active(self) -> bool:
        return bool(self._old)

    @property
    def name(self) -> str | None:
        return signal_name(self.pending) if self.pending is not None else None

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.pending is None:
            self.pending = signum

    def __enter__(self) -> "SignalHold":
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in HELD:
            try:
                self._old[sig] = signal.signal(sig, self._caught)
            except (ValueError, OSError):  # no signals here (embedded interpreter): nothing held
                continue
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old.clear()
        if self.redeliver:
            self.deliver()

    def deliver(self) -> None:
        """Hand the held signal to whoever handles it now (after the hold ended)."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            signal.raise_signal(signum)
