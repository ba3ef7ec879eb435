"""A refresh whose figures change but whose header and problem title keep their height asks for no layout of the
screen (issue 17: Static.update's default layout pass, ~5 ms at 1,000 rows, ran on every refresh)."""

from __future__ import annotations

from fakes import FakeAudit, FakeController, FakeFleet
from screen import screen_text, wait_for
from textual.widget import Widget

from asrtop.tui.app import AsrtopApp


async def test_a_refresh_that_changes_figures_redoes_no_layout(monkeypatch):
    fleet = FakeFleet(6)
    app = AsrtopApp(fleet, FakeController(fleet), cluster="lab", audit=FakeAudit(), refresh=3600)
    async with app.run_test(size=(120, 35)) as pilot:
        await wait_for(pilot, lambda: app.refreshes == 1, what="first refresh")
        await pilot.pause(0.05)
        header = app.fleet_screen.query_one("#summary")
        before = str(header.render())
        laid_out = []
        real = Widget.refresh

        def refresh(self, *regions, layout=False, **kw):
            if layout:
                laid_out.append(type(self).__name__)
            return real(self, *regions, layout=layout, **kw)

        monkeypatch.setattr(Widget, "refresh", refresh)
        fleet.tick += 1  # every node's figures move
        app.refresh_now()
        await wait_for(pilot, lambda: app.refreshes == 2, what="second refresh")
        await pilot.pause(0.05)
        assert str(header.render()) != before  # the header shows the new figures...
        assert "node-6" in screen_text(app)
        assert laid_out == []  # ...and nothing asked for a layout
