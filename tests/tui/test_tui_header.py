"""The header: three lines that fit 80 columns, agent-counted request figures marked, and a model-drift banner
that keeps its contrast under NO_COLOR."""

from __future__ import annotations

import re

from fakes import T0, FakeAudit, FakeController, FakeFleet, status
from screen import settled

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.config import NodeConfig
from asrtop.fleet import AGENT_COUNTED_MARK, AgentReading, AgentTraffic, BalancerReading, merge
from asrtop.tui.app import AsrtopApp
from asrtop.control.drain_words import DrainProgress
from asrtop.tui.summary import header_lines, summarize


def text_of(lines) -> list[str]:
    return ["".join(t for t, _ in line) for line in lines]


def test_header_fits_80_columns_in_three_lines():
    f = FakeFleet(12, odd_model=(4,), dead_agents=(3,), backups=(12,))
    s = summarize(f.build())
    lines = text_of(header_lines(s, "asr-production-eu-west", True, error=None,
                                 draining={"node-10": DrainProgress("node-10", 7, None, None, None, 3.0, None),
                                           "node-11": None}, trend="▁▂▃▄▅▆▇█▇▆"))
    assert len(lines) == 3 and all(len(line) <= 78 for line in lines), lines
    assert lines[1].endswith("(sim)") or "(sim)" in lines[1]  # simulated GPUs are never shown as real
    assert "READ-ONLY" in lines[2]
    wide = text_of(header_lines(s, "lab", False, trend="▁▂▃", width=160))
    assert "▁▂▃" in wide[1]  # the sparkline where it fits


def test_agent_counted_request_figures_are_marked():
    st = status("node-1", 1)
    traffic = AgentTraffic(request_rate=2.5, errors_5xx_rate=0.0, response_seconds=1.8, window_seconds=10)
    nginx = BalancerReading("nginx", "nginx", (ServerState("127.0.0.1:10001", "127.0.0.1", 10001, 3, False,
                                                           AdminState.READY, Health.NO_CHECK),))
    snap = merge([NodeConfig("node-1", address="127.0.0.1:10001", agent="http://127.0.0.1:9001")],
                 {"node-1": AgentReading("http://127.0.0.1:9001", st, T0, traffic=traffic)}, [nginx], T0)
    line = text_of(header_lines(summarize(snap), "lab", False))[1]
    assert f"req/s 2.5{AGENT_COUNTED_MARK}" in line and f"5xx 10{AGENT_COUNTED_MARK}" in line
    counted_by_haproxy = text_of(header_lines(summarize(FakeFleet(3).build()), "lab", False))[1]
    assert AGENT_COUNTED_MARK not in counted_by_haproxy


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


async def test_model_drift_banner_keeps_contrast_under_no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    fleet = FakeFleet(6, odd_model=(4,))
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, app)
        svg = app.export_screenshot()
    banner = re.search(r'<text class="([^"]+)" x="([\d.]+)" y="([\d.]+)"[^>]*>[^<]*differs!', svg)
    assert banner, "no drift banner on screen"
    cls, x, y = banner.groups()
    rule = re.search(re.escape(cls) + r" \{ ([^}]*) \}", svg).group(1)
    assert "font-weight: bold" in rule  # a non-colour attribute
    fg = re.search(r"fill: (#[0-9a-f]{6})", rule).group(1)
    bg = next(m.group(1) for m in re.finditer(
        r'<rect fill="(#[0-9a-f]{6})" x="([\d.]+)" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', svg)
        if m.group(2) == x and float(m.group(3)) <= float(y) < float(m.group(3)) + float(m.group(4)))
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 4.5, (fg, bg)  # readable (WCAG AA), not grey on grey
