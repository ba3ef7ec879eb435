"""The console on a streaming fleet (agents report live streams): the table's streams column fits 80 columns,
the header counts them fleet-wide, the detail lists them; the drain confirmation says how long the drain will
last and takes a cutoff, which is announced and then cut through the balancer, in the control layer's words."""

from __future__ import annotations

from dataclasses import replace

from fakes import FakeAudit, FakeBalancer, FakeController, FakeFleet
from screen import plan_shown, screen_lines, screen_text, settled, wait_for

from asrtop.agentstatus import StreamsReading
from asrtop.fleet import merge
from asrtop.tui.app import AsrtopApp
from asrtop.tui.screens.drain import CutoffScreen, DrainConfirmScreen


class StreamingFleet(FakeFleet):
    """FakeFleet whose agents report streams: node-i carries `open[node]` live streams, the oldest 12 min + i s."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.open = {name: (4 if i == 1 else i % 3) for i, name in enumerate(self.names, 1)}

    def build(self, tick=None):
        snap = super().build(tick)
        agents = {}
        for i, n in enumerate(snap.nodes, 1):
            if n.agent is None or n.agent.status is None:
                if n.agent is not None:
                    agents[n.name] = n.agent
                continue
            k = self.open[n.name]
            streams = StreamsReading("proxy", k, 720.0 + i if k else None, ((60, 0), (None, k)), 50, 50 - k)
            st = n.agent.status
            agents[n.name] = replace(n.agent, status=replace(st, asr=replace(st.asr, streams=streams)))
        return merge([n.config for n in snap.nodes], agents, snap.balancers, snap.taken_at, 1.0, snap.notes)


class CuttingBalancer(FakeBalancer):
    """The fake HAProxy, with `shutdown sessions server` (EndsSessions): the node's streams end."""

    def __init__(self, fleet):
        super().__init__(fleet)
        self.cut: list[str] = []

    def shutdown_sessions(self, server: str) -> None:
        self.cut.append(server)
        self.fleet.open[server] = 0
        self.fleet.tick = 4  # its sessions end too: node-1 in flight (1*5+4) % 9 == 0


def flat(app) -> str:
    """The screen's words on one line: a dialog wraps its lines inside its frame."""
    return " ".join(screen_text(app).replace("█", " ").split())


def make():
    fleet = StreamingFleet(6)
    ctl = FakeController(fleet, min_ready=0)
    ctl.balancers = [CuttingBalancer(fleet)]
    app = AsrtopApp(fleet, ctl, cluster="lab", audit=FakeAudit(), refresh=0.2)
    return app, fleet, ctl


async def test_streams_column_header_and_detail_at_80_and_120_columns():
    for size in ((80, 24), (120, 35)):
        app, fleet, _ = make()
        async with app.run_test(size=size) as pilot:
            lines = await settled(pilot, app)
            assert app.fleet_screen.table.max_scroll_x == 0 and all(len(x) <= size[0] for x in lines)
            text = "\n".join(lines)
            assert "strm" in text and "4 12m" in text  # node-1: 4 live streams, the oldest 12 min
            assert "streams 9 (12m)" in text  # fleet-wide: 4+2+0+1+2+0 (the header)
            if size == (120, 35):
                await pilot.press("enter")
                await wait_for(pilot, lambda: "streams" in screen_text(app) and "live (proxy)" in screen_text(app),
                               what="detail")
                assert "4 live (proxy), oldest 12 min" in screen_text(app)


async def test_drain_confirmation_says_the_streams_and_a_cutoff_cuts_them_announced():
    app, fleet, ctl = make()
    clock = [1000.0]
    app.monotonic = lambda: clock[0]
    async with app.run_test(size=(100, 30)) as pilot:
        await settled(pilot, app)
        await pilot.press("d")  # node-1, under the cursor
        await wait_for(pilot, lambda: plan_shown(app), what="confirmation")
        text = flat(app)
        assert "node-1 carries 4 live streams, the oldest 12 min: the drain lasts until they end" in text
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CutoffScreen), what="cutoff dialog")
        await pilot.press(*"30", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DrainConfirmScreen) and app.screen.cutoff == 30,
                       what="cutoff set")
        assert "streams still open after 30 s will be cut (4 open now)" in flat(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.draining.get("node-1") is not None, what="drain followed")
        header = "\n".join(screen_lines(app)[:4])
        assert "node-1 draining: 4 streams, oldest 12m" in header and "cut in 30s" in header
        assert ctl.balancers[0].cut == []  # nothing is cut before the cutoff
        clock[0] += 31
        await wait_for(pilot, lambda: ctl.balancers[0].cut == ["node-1"], what="cut")
        await wait_for(pilot, lambda: "node-1" not in app.draining, what="drained after the cut")
        messages = [n.message for n in app._notifications]
        assert "cutting 4 streams and 1 request still open on node-1 after 30 s" in messages
        assert any(m.startswith("cut 4 streams on node-1 after 30 s: done on haproxy-a") for m in messages)
        cut = [r for r in app.controller.audit.records if r["action"] == "cut"]
        assert len(cut) == 1 and cut[0]["streams"] == 4 and cut[0]["node"] == "node-1"
