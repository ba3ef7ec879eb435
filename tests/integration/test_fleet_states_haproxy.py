"""States as a real HAProxy (Debian 2.6) gives them: a node put in maint is maint with its health check paused,
never "down"; during a backup toggle (del server / add server) the node reads "re-create", from the intent
journal the running change writes, not as an unexplained maint."""

from __future__ import annotations

import asyncio

from asrtop.balancers.factory import build_balancers
from asrtop.control import Action, Controller
from asrtop.control.journal import ChangesInProgress, Journal
from asrtop.fleet_wording import state_word
from asrtop.sources.live import LiveFleetSource
from asrtop.status_report import render_table
from support.balancers import start_backends, start_haproxy, wait_until
from support.control_cluster import config, haproxy_entry, write_config

NODES = ("n1", "n2", "n3")
CHECKED = {"check": True, "extra": "inter 200 rise 1 fall 1"}


async def test_maint_is_not_down_and_a_backup_re_create_says_so(tmp_path, debian_haproxy_bin):
    with start_backends(NODES) as be, \
            start_haproxy(debian_haproxy_bin, tmp_path, be.specs(**{n: CHECKED for n in NODES})) as hx:
        cfg = config(write_config(tmp_path, [haproxy_entry("hx", hx.socket)], NODES))
        balancers = build_balancers(cfg)
        source = LiveFleetSource(cfg, None, balancers, changes=ChangesInProgress(Journal.beside(cfg.audit_log)))
        assert wait_until(lambda: all(s.health.value == "up" for s in balancers[0].servers()))

        res = await Controller(cfg, balancers).apply(Action("maint", "n2"))
        assert res.outcome == "done", res.message
        snap = await source.snapshot()
        n2 = snap.node("n2")
        assert (state_word(n2).text, n2.health) == ("maint", "paused")
        table = render_table(snap)
        assert "3 nodes (2 ready, 1 maint);" in table and "DOWN" not in table and " down " not in table

        # look at the fleet at the exact steps of the toggle: right after `del server` and `add server`
        class Watched(Journal):
            seen: dict = {}

            def append(self, record, fsync=True, fd=None):
                super().append(record, fsync, fd)
                if record["step"] in ("deleted", "added"):  # in the toggle's worker thread: its own loop
                    self.seen[record["step"]] = asyncio.run(source.snapshot())

        res = await Controller(cfg, balancers, journal=Watched.beside(cfg.audit_log)).apply(Action("backup", "n3", True))
        assert res.outcome == "done", res.message
        assert set(Watched.seen) == {"deleted", "added"}
        for snap in Watched.seen.values():  # no server at all, then a new one in maint: both are the re-create
            n3 = snap.node("n3")
            assert state_word(n3).text == "re-create" and not snap.notes, (n3.servers, snap.notes)
            assert n3.changing == "`asrtop backup n3 on` re-creates its server on hx"
        assert "n3: re-create: `asrtop backup n3 on` re-creates its server on hx" in render_table(Watched.seen["added"])
        after = (await source.snapshot()).node("n3")
        assert (after.changing, after.backup) == (None, True)  # done: its state is the balancer's again
