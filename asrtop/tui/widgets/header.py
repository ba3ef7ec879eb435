"""Fleet summary header: counts, load, GPU, model-consistency badge, balancer reachability, last refresh."""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import Static

from asrtop.control.drain_words import DrainProgress
from asrtop.fleet import FleetSnapshot
from asrtop.problems.model import Problem
from asrtop.tui.summary import HEADER_WIDTH, Summary, header_lines, summarize


class FleetHeader(Static):
    def __init__(self, cluster: str, read_only: bool, **kw):
        super().__init__("starting: first refresh pending…", **kw)
        self.cluster = cluster
        self.read_only = read_only
        self.summary: Summary | None = None
        self.error: str | None = None
        self._last: list | None = None
        self._args: tuple = (None, "", ())  # the last show()'s draining, trend and problems, to re-fit on a resize

    def show(self, snap: FleetSnapshot | None, error: str | None = None,
             draining: dict[str, DrainProgress | None] | None = None, trend: str = "",
             problems: Sequence[Problem] = (), summary: Summary | None = None) -> None:
        """`summary`: summarize(snap), when the refresh thread made it already (asrtop.tui.refresh)."""
        if snap is not None:
            self.summary = summary if summary is not None else summarize(snap)
        self.error = error
        if self.summary is None:
            self.update(Text(f"{self.cluster}: no data yet" + (f" — {error}" if error else ""), style="bold red"))
            return
        self._args = (draining, trend, problems)
        width = (self.content_size.width or self.app.size.width - 2) if self.is_mounted else 0
        lines = header_lines(self.summary, self.cluster, self.read_only, error, draining, trend,
                             width if width > 0 else HEADER_WIDTH, problems)
        if lines == self._last:  # nothing changed: no repaint
            return
        # The screen's layout is redone (~5 ms at 1,000 rows) only when the header's height may change: the
        # number of its lines, not their words.
        layout = self._last is None or len(lines) != len(self._last)
        self._last = lines
        text = Text(no_wrap=True, overflow="ellipsis")  # header_lines fitted every line to the width
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            for seg, style in line:
                text.append(seg, style or None)
        self.update(text, layout=layout)

    def on_resize(self) -> None:
        if self.summary is not None:  # fit the lines to the new width
            self.show(None, self.error, *self._args)
