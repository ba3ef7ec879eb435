"""Pure formatting of the console: bars, sparklines, row cells, header summary, model file diff."""

from dataclasses import replace

from fakes import DIGEST_A, DIGEST_B, FakeFleet, with_admin

from asrtop.balancers.base import AdminState
from asrtop.control.drain_words import DrainProgress
from asrtop.tui.format import (COLUMN_KEYS, DIM, bar, matches_filter, row_cells, sort_value, sparkline,
                               table_context)
from asrtop.tui.screens.models import diff_files, render_models, representatives
from asrtop.tui.summary import header_lines, model_badge, summarize


def cells_of(snap, name, **kw):
    return dict(zip(COLUMN_KEYS, row_cells(snap.node(name), table_context(snap, **kw))))


def test_bar_scales_and_marks_unknown():
    assert bar(0.0) == "     " + "   0%"
    assert bar(1.0) == "█████ 100%"
    assert bar(0.5).startswith("██▌")
    assert bar(None).startswith("—")
    assert bar(7.0) == bar(1.0)  # clamped, never wider than its column


def test_sparkline_width_scale_and_gaps():
    s = sparkline([0, 1, 2, 3, None, 4], width=6, top=4)
    assert len(s) == 6 and s[0] == "▁" and s[-1] == "█" and s[4] == " "
    assert sparkline([1, 2], width=5) == "▅█   "
    assert sparkline([], width=3) == "   "


def test_row_marks_minority_model_and_greys_dead_agent():
    snap = FakeFleet(6, odd_model=(4,), dead_agents=(3,)).build()
    minority = cells_of(snap, "node-4")["model"]
    assert minority[0] == DIGEST_B[:7] + "!" and "bold" in minority[1]
    assert cells_of(snap, "node-1")["model"][0] == DIGEST_A[:7]
    dead = cells_of(snap, "node-3")
    assert dead["age"] == ("down", "bold red") and dead["sel"][0] == "!"  # never answered: `status` says down too
    assert all(style == DIM for key, (_, style) in dead.items() if key not in ("sel", "age"))
    assert cells_of(snap, "node-1")["name"][1] != DIM


def test_row_shows_drain_progress_selection_and_mixed_state():
    snap = FakeFleet(3).build()
    seen = DrainProgress("node-2", 4, None, None, None, 1.0, None)  # what the drain watcher saw last
    drained = cells_of(snap, "node-2", draining={"node-2": seen}, selected={"node-2"})
    assert drained["inflight"][0] == "↓4"  # what the drain watcher counted
    unknown = cells_of(snap, "node-2", draining={"node-2": None})
    assert unknown["inflight"][0] == f"↓{snap.node('node-2').in_flight}"  # not counted yet: the node's own
    assert drained["sel"][0] == "●"
    drained = cells_of(with_admin(snap, "node-2", AdminState.DRAIN), "node-2")
    assert drained["state"][0] == "drain"
    # Two balancers disagreeing about one node: MIXED
    n = snap.node("node-1")
    s = n.servers["haproxy-a"]
    mixed = replace(n, servers={"a": s, "b": replace(s, admin=AdminState.MAINT)})
    assert row_cells(mixed, table_context(snap))[COLUMN_KEYS.index("state")][0] == "MIXED"


def test_sort_value_puts_unknown_first_and_filter_matches_name_state_digest():
    snap = FakeFleet(4, dead_agents=(2,)).build()
    assert sort_value(snap.node("node-2"), "gpu", snap.taken_at) < sort_value(snap.node("node-1"), "gpu", snap.taken_at)
    assert matches_filter(snap.node("node-3"), "DE-3")
    assert matches_filter(snap.node("node-3"), "ready")
    assert matches_filter(snap.node("node-1"), DIGEST_A[:4])
    assert not matches_filter(snap.node("node-1"), "node-2")


def test_summary_counts_and_model_badge():
    f = FakeFleet(6, odd_model=(4,), backups=(5,))
    f.admin["node-2"] = AdminState.DRAIN
    f.admin["node-6"] = AdminState.MAINT
    s = summarize(f.build())
    assert (s.total, s.ready, s.draining, s.maint, s.backup) == (6, 4, 1, 1, 1)
    assert s.serving == 3  # node-1, 3, 4 (node-5 is backup)
    assert model_badge(s)[0] == "5 of 6 nodes on model a1b2c3d, 1 differs!"
    same = summarize(FakeFleet(3, odd_model=()).build())
    assert model_badge(same)[0] == "all 3 nodes on model a1b2c3d"
    text = " ".join(seg for line in header_lines(s, "c", read_only=True) for seg, _ in line)
    assert "READ-ONLY" in text and "haproxy-a ✓" in text


def test_summary_marks_unreachable_balancer():
    s = summarize(FakeFleet(3, balancer_error="haproxy-a: connection refused").build())
    text = " ".join(seg for line in header_lines(s, "c", False) for seg, _ in line)
    assert "haproxy-a ✗ UNREACHABLE" in text


def test_model_file_diff_by_relative_path():
    major = [{"dir": "/m/node-1", "path": "model.pt", "size": 10, "sha256": "aa"},
             {"dir": "/m/node-1", "path": "config.yaml", "size": 3, "sha256": "cc"},
             {"dir": "/m/node-1", "path": "tokens.json", "size": 4, "sha256": "dd"}]
    other = [{"dir": "/x/node-2", "path": "model.pt", "size": 10, "sha256": "bb"},
             {"dir": "/x/node-2", "path": "config.yaml", "size": 3, "sha256": "cc"},
             {"dir": "/x/node-2", "path": "extra.bin", "size": 1, "sha256": "ee"}]
    diffs = dict(diff_files(major, other))
    assert set(diffs) == {"model.pt", "tokens.json", "extra.bin"}
    assert "sha256 aa -> bb" in diffs["model.pt"]
    assert diffs["tokens.json"] == "missing here" and diffs["extra.bin"] == "only here"


def test_model_view_groups_and_representatives():
    snap = FakeFleet(5, odd_model=(2, 4), dead_agents=(4,)).build()
    reps = representatives(snap)
    assert "node-1" in reps and "node-2" in reps and "node-4" not in reps  # a dead agent cannot be asked
    text = render_models(snap, {"node-1": [{"path": "a", "size": 1, "sha256": "x"}],
                                "node-2": [{"path": "a", "size": 1, "sha256": "y"}]}, False).plain
    assert "DIFFERS" in text and "majority" in text
    assert "1 file(s) differ" in text and "a: sha256 x -> y" in text


def test_simulated_gpu_marks():
    from asrtop.tui.format import gpu_simulated
    from asrtop.tui.summary import gpu_sim_label

    assert bar(0.38, simulated=True) == "█▉    ~38%" and len(bar(1.0, simulated=True)) == len(bar(1.0))
    assert bar(1.0, simulated=True) == "█████~100%"
    assert bar(None, simulated=True) == bar(None)  # unknown stays unknown, unmarked
    snap = FakeFleet(3, odd_model=(), real_gpus=(1,)).build()
    ctx = table_context(snap)
    assert ctx.gpu_simulated and not gpu_simulated(snap.node("node-1")) and gpu_simulated(snap.node("node-2"))
    gpu_col, mem_col = COLUMN_KEYS.index("gpu"), COLUMN_KEYS.index("mem")
    real, sim = row_cells(snap.node("node-1"), ctx), row_cells(snap.node("node-2"), ctx)
    assert "~" not in real[gpu_col][0] + real[mem_col][0]
    assert "~" in sim[gpu_col][0] and "~" in sim[mem_col][0]
    s = summarize(snap)
    assert (s.gpu_nodes, s.gpu_simulated) == (3, 2) and gpu_sim_label(s) == " (2 of 3 sim)"
    text = "".join(seg for line in header_lines(s, "c", False) for seg, _ in line)
    assert "gpu " in text and "(2 of 3 sim)" in text
    assert gpu_sim_label(summarize(FakeFleet(3).build())) == " (sim)"
    real_only = FakeFleet(3, real_gpus=(1, 2, 3)).build()
    assert gpu_sim_label(summarize(real_only)) == "" and not table_context(real_only).gpu_simulated


def test_detail_labels_simulated_gpu_readings():
    from asrtop.history import FleetHistory
    from asrtop.tui.screens.detail import render_detail

    snap = FakeFleet(2, odd_model=(), real_gpus=(1,)).build()
    history = FleetHistory(capacity=10)
    history.record(snap)
    real = render_detail(snap.node("node-1"), snap, history, []).plain
    sim = render_detail(snap.node("node-2"), snap, history, []).plain
    assert "~" not in real and "simulated" not in real
    assert "(~ simulated GPU readings, not a real GPU)" in sim
    gpu_util = next(line for line in sim.splitlines() if "GPU util" in line)
    assert "~" in gpu_util and "~" in next(line for line in sim.splitlines() if "util " in line and "mem " in line)


def shown(layout):
    return [c.key for c in layout.columns]


def test_fit_columns_drops_by_priority_and_never_overflows():
    from asrtop.tui.format import COLUMNS, FIXED, fit_columns

    full = fit_columns(500, streams=True)
    assert shown(full) == list(COLUMN_KEYS) and not full.hidden
    http_only = fit_columns(500)  # no agent reports streams: no streams column, and none said hidden
    assert shown(http_only) == [k for k in COLUMN_KEYS if k != "streams"] and not http_only.hidden
    at80 = fit_columns(80, names_width=7)
    for key in ("name", "state", "inflight", "rps", "5xx", "rt", "gpu", "model", "age"):
        assert key in shown(at80), key
    assert {"temp", "power", "cpu"} <= {c.key for c in COLUMNS if c.label in at80.hidden}
    scrollbar = fit_columns(78, names_width=7)  # the same table once its rows need the scrollbar
    assert set(shown(scrollbar)) <= set(shown(at80))
    for width in range(20, 220):
        layout = fit_columns(width, names_width=12, sort_column="cpu", simulated=True, agent_counted=True)
        used = sum(c.width + 2 for c in layout.columns)
        assert used <= width or shown(layout) == list(FIXED), width
        assert shown(layout) == [k for k in COLUMN_KEYS if k in shown(layout)]  # display order kept
        if width >= 30:
            assert "cpu" in shown(layout)  # the sorted column goes first
        if width >= 60:
            assert {"state", "inflight", "rps"} <= set(shown(layout))  # then the top of PRIORITY


def test_fit_columns_labels_say_sort_simulation_and_agent_marks():
    from asrtop.tui.format import fit_columns, table_hint

    labels = {c.key: c.label for c in fit_columns(300, sort_column="rps", sort_reverse=True, simulated=True,
                                                  agent_counted=True).columns}
    assert labels["rps"] == "*=agent req/s▼" and labels["5xx"] == "5xx*" and labels["rt"] == "resp*"
    assert labels["gpu"] == "gpu ~=sim"
    assert {c.key: c.label for c in fit_columns(300, sort_column="name").columns}["name"] == "node▲"
    narrow = fit_columns(80, names_width=7, agent_counted=True)
    assert not narrow.agent_legend and {c.key: c.label for c in narrow.columns}["rps"] == "req/s*"
    assert table_hint(narrow, True).startswith("* counted by the node's agent · hidden at this width: ")
    assert table_hint(fit_columns(300), False) == ""


def test_rate_drops_a_trailing_point_zero():
    from asrtop.tui.format import rate

    assert [rate(v) for v in (1.0, 4.0, 0.96, 2.5, 12.4, 0, 0.04, None)] == \
        ["1", "4", "1", "2.5", "12", "0", "0.0", "—"]


def test_agent_counted_request_figures_are_marked_unknown_stays_blank():
    snap = FakeFleet(3, agent_counted=(1, 3)).build(tick=1)
    ctx = table_context(snap)
    assert ctx.agent_counted
    one, two, three = (cells_of(snap, n) for n in ("node-1", "node-2", "node-3"))
    assert one["rps"][0] == "*3" and one["5xx"][0] == "*10" and one["rt"][0] == "*1.6s"
    assert three["rps"][0] == "*0" and three["rt"][0] == "—"  # nothing finished: blank, not "0ms", unmarked
    assert not any(two[k][0].startswith("*") for k in ("rps", "5xx", "rt"))  # the balancer counted these
    assert not table_context(FakeFleet(3).build()).agent_counted


def test_hot_and_drift_cells_carry_attributes_and_no_colour_keeps_only_them():
    from asrtop.tui.format import ALARM, without_colour

    snap = FakeFleet(12, odd_model=(4,)).build(tick=1)
    hot = cells_of(snap, "node-5")["gpu"]
    assert hot[0].endswith("92%") and "bold" in hot[1] and hot[2] == ALARM
    assert len(cells_of(snap, "node-1")["gpu"]) == 2  # 24 %: no accent
    assert "reverse" in cells_of(snap, "node-4")["model"][1]
    n = snap.node("node-6")
    warm = replace(n.status, gpus=(replace(n.status.gpus[0], temperature_celsius=91.0),))
    node = replace(n, agent=replace(n.agent, status=warm))
    temp = dict(zip(COLUMN_KEYS, row_cells(node, table_context(snap))))["temp"]
    assert temp[0] == "91°" and "reverse" in temp[1]
    assert without_colour("bold reverse magenta") == "bold reverse"
    s = n.servers["haproxy-a"]
    mixed = replace(n, servers={"a": s, "b": replace(s, admin=AdminState.MAINT)})
    state = dict(zip(COLUMN_KEYS, row_cells(mixed, table_context(snap))))["state"]
    assert state[0] == "MIXED" and "bold" in without_colour(state[1])  # DOWN / MIXED stay bold without colour
    assert without_colour(DIM) == "dim" and without_colour("green") == ""


def test_every_cell_fits_its_column_even_with_big_counts_and_marks():
    from asrtop.tui.format import fit_columns

    for agent_counted in ((), (2, 3)):
        snap = FakeFleet(12, odd_model=(4,), dead_agents=(9,), agent_counted=agent_counted).build(tick=1)
        busy = snap.node("node-1")
        s = busy.servers["haproxy-a"]
        busy = replace(busy, servers={"haproxy-a": replace(s, errors_5xx_total=12345, request_rate=1234.0)})
        ctx = table_context(snap, draining={"node-6": DrainProgress("node-6", 1234, None, None, None, 9.0, None)})
        assert ctx.agent_counted == bool(agent_counted)
        widths = {c.key: c.width for c in fit_columns(500, names_width=7, agent_counted=ctx.agent_counted,
                                                      streams=True).columns}
        for node in (busy, *snap.nodes):
            for key, cell in zip(COLUMN_KEYS, row_cells(node, ctx)):
                assert len(cell[0]) <= widths[key], (node.name, key, cell[0])


def test_critical_problem_mark_after_selection_before_stale_agent_and_without_colour():
    from asrtop.tui.format import CRITICAL_MARK, without_colour

    snap = FakeFleet(4, dead_agents=(3,)).build()
    marked = cells_of(snap, "node-2", critical={"node-2"})
    assert marked["sel"][0] == CRITICAL_MARK and "reverse" in without_colour(marked["sel"][1])
    assert cells_of(snap, "node-3", critical={"node-3"})["sel"][0] == CRITICAL_MARK  # before the stale '!'
    assert cells_of(snap, "node-4", critical={"node-4"}, selected={"node-4"})["sel"][0] == "●"  # the actions' targets
    assert cells_of(snap, "node-1", critical={"node-2"})["sel"][0] == " "


def test_header_opens_its_third_line_with_the_problem_count():
    from asrtop.problems.model import Problem, Severity
    from asrtop.tui.summary import ALERT

    s = summarize(FakeFleet(3).build())
    crit = Problem("model-differs", "node-2", Severity.CRITICAL, "runs model x", None, None, 0.0)
    warn = Problem("gpu-hot", "node-1", Severity.WARNING, "is hot", None, None, 0.0)
    line = header_lines(s, "lab", False, problems=(warn, crit, warn))[2]
    assert line[0] == ("3 problems: 1 CRIT", ALERT)  # reverse video: it survives NO_COLOR
    assert header_lines(s, "lab", False, problems=(warn,))[2][0] == ("1 problem: 1 WARN", "bold yellow")
    assert "problem" not in "".join(t for t, _ in header_lines(s, "lab", False)[2])


def test_severity_words_keep_an_attribute_without_colour():
    from asrtop.problems.model import Severity
    from asrtop.tui.problem_lines import severity_style

    assert severity_style(Severity.CRITICAL, colour=False) == "bold reverse"  # not grey on grey
    assert severity_style(Severity.WARNING, colour=False) == "bold"
    assert "red" in severity_style(Severity.CRITICAL)


def test_header_says_each_balancers_transport_and_read_time():
    from dataclasses import replace

    snap = FakeFleet(3).build()
    lb = replace(snap.balancers[0], transport="ssh ops@lb2:22", latency=0.0031)
    text = "".join(seg for line in header_lines(summarize(replace(snap, balancers=(lb,))), "c", False, width=200)
                   for seg, _ in line)
    assert "haproxy-a ✓ ssh 3.1 ms" in text  # the kind of transport, the target is status's (one line for all)
    local = replace(lb, transport="local socket", latency=0.012)
    text = "".join(seg for line in header_lines(summarize(replace(snap, balancers=(local,))), "c", False, width=200)
                   for seg, _ in line)
    assert "haproxy-a ✓ 12 ms" in text and "local" not in text
