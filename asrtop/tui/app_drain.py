"""The console's drains (AsrtopApp mixes this in): the drain confirmation (with the streams it waits for and an
optional cutoff), then each drain this console started is followed on every refresh with `drain --wait`'s
figures and words (asrtop.control.drain_words.DrainWatch: live streams, the oldest one's age, the estimate to
empty), until the node is empty, is readied again, or, past its cutoff, what is still open is cut through
the balancers (the controller's cut_open: announced, then sent, then reported and audited)."""

from __future__ import annotations

import time

from textual import work

from asrtop.control.drain_words import DrainProgress, DrainWatch, empty_line, open_streams
from asrtop.control.drift import ready_again, undone_line
from asrtop.control.seams import CutsStreams
from asrtop.fleet import FleetSnapshot
from asrtop.tui.screens.drain import DrainConfirmScreen


class DrainWatching:
    """Needs the App's controller, snapshot, draining, poll_seq, notify and run_worker (set up by AsrtopApp)."""

    def init_drains(self) -> None:
        self.draining: dict[str, DrainProgress | None] = {}  # node -> what its watch saw last (None: not yet)
        self._drain_started: dict[str, int] = {}  # node -> last poll started before the drain was sent
        self._drain_watches: dict[str, tuple[DrainWatch, float]] = {}  # node -> (watch, monotonic start)
        self._cut: set[str] = set()  # nodes whose cutoff has been acted on
        self.monotonic = time.monotonic  # tests move the drain's clock

    def drain_confirm(self, title: str, lines: list[str], nodes: tuple[str, ...]) -> DrainConfirmScreen:
        ctl = self.controller
        refusal = ctl.cut_refusal() if isinstance(ctl, CutsStreams) else "this console cannot cut streams"
        open_now = open_streams(self.snapshot, nodes) if self.snapshot else None
        return DrainConfirmScreen(title, lines, cut_refusal=refusal, open_now=open_now, warning=True, pending=True)

    def watch_drain(self, node: str, cutoff: float | None) -> None:
        """A drain this console sent: follow it from the next poll on."""
        self.draining[node] = None
        self._drain_started[node] = self.poll_seq
        self._drain_watches[node] = (DrainWatch(node, cutoff), self.monotonic())
        self._cut.discard(node)

    def _track_drains(self, snap: FleetSnapshot, seq: int) -> None:
        for name in list(self.draining):
            if not snap.has(name):
                self._end_drain(name)
                continue
            node = snap.node(name)
            if seq <= self._drain_started[name]:
                continue  # this poll started before the drain was applied
            again = ready_again(node)
            if again is not None:  # never "safe to upgrade": the node takes new requests again
                self._end_drain(name)
                self.notify(undone_line(name, *again, None, restart_checked=False), title="drain undone",
                            severity="error", timeout=20)
                continue
            if node.admin_state not in ("drain", "maint"):
                self._end_drain(name)
                self.notify(f"{name}: no longer draining (now {node.admin_state})")
                continue
            watch, started = self._drain_watches[name]
            seen = watch.add(self.monotonic() - started, node)  # counted as `asrtop drain --wait` counts
            self.draining[name] = seen
            if seen.empty:
                self._end_drain(name)
                self.notify(empty_line(name), title="drained", timeout=15)
            elif seen.cut_in == 0 and name not in self._cut:
                self._cut.add(name)
                self.cut_streams(name, watch.cutoff or 0.0)

    @work(group="cutoff", exit_on_error=False)
    async def cut_streams(self, node: str, cutoff: float) -> None:
        ctl = self.controller
        if not isinstance(ctl, CutsStreams):
            return
        res = await ctl.cut_open(node, cutoff, lambda line: self.notify(line, title="cutoff", severity="warning",
                                                                          timeout=10))
        self.notify(res.message, title=f"cutoff: {res.outcome}",
                    severity="information" if res.exit_code == 0 else "error", timeout=12)
        self.refresh_now()

    def _end_drain(self, name: str) -> None:
        self.draining.pop(name, None)
        self._drain_started.pop(name, None)
        self._drain_watches.pop(name, None)
