"""The history `asrtop check` gives the rules that need one, from a REAL Prometheus: its TSDB is backfilled
with five minutes of agent series (promtool tsdb create-blocks-from openmetrics), so the range queries read
known values without waiting for scrapes. One Prometheus for the module."""

from __future__ import annotations

import asyncio
import io
import subprocess
import time

import pytest

from asrtop.balancers.base import AdminState, Health, ServerState
from asrtop.check_report import run_check
from asrtop.config import ClusterConfig, NodeConfig, ProblemsConfig
from asrtop.fleet import BalancerReading, merge
from asrtop.history import METRICS
from asrtop.problems.engine import Rule
from asrtop.problems.model import Finding, Severity
from asrtop.sources.prometheus import PrometheusError
from asrtop.sources.prometheus_history import PROMQL, fetch_history
from support.sources_prom import prometheus

pytestmark = pytest.mark.timeout(120)
NOW = float(int(time.time()) // 15 * 15)  # on the 15 s scrape grid
SCRAPES = range(-300, 1, 15)  # the last five minutes
LEAK = 50e6  # bytes/s on node-1's GPU


def openmetrics() -> str:
    """node-1 (instance = its agent URL) leaks GPU memory; node-2 is flat; node-3 has no agent URL and is found
    by asr_node_info's node label."""
    nodes = {"node-1": "127.0.0.1:10861", "node-2": "127.0.0.1:10862", "node-3": "10.0.0.3:10860"}
    fams = {
        "asr_node_info": ("gauge", lambda n, i, dt: 1),
        "asr_gpu_memory_used_bytes": ("gauge", lambda n, i, dt: 1e10 + (LEAK * (dt + 300) if n == "node-1" else 0)),
        "asr_gpu_memory_total_bytes": ("gauge", lambda n, i, dt: 8e10),
        "asr_service_in_flight_requests": ("gauge", lambda n, i, dt: 3 + i),
        "asr_requests": ("counter", lambda n, i, dt: 10 * (dt + 300)),
    }
    lines = []
    for fam, (kind, value) in fams.items():
        lines.append(f"# TYPE {fam} {kind}")
        for i, (node, inst) in enumerate(nodes.items()):
            labels = f'instance="{inst}",job="asr"' + (f',node="{node}"' if fam == "asr_node_info" else "")
            labels += ',gpu="0"' if "gpu" in fam else ""
            labels += ',class="2xx"' if fam == "asr_requests" else ""
            name = fam + ("_total" if kind == "counter" else "")
            lines += [f"{name}{{{labels}}} {value(node, i, dt):.0f} {NOW + dt:.0f}" for dt in SCRAPES]
    return "\n".join(lines + ["# EOF"]) + "\n"


@pytest.fixture(scope="module")
def prom(prometheus_bin, promtool_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("prom-history")
    (work / "in.om").write_text(openmetrics())
    subprocess.run([promtool_bin, "tsdb", "create-blocks-from", "openmetrics", str(work / "in.om"),
                    str(work / "tsdb")], check=True, capture_output=True, timeout=60)
    with prometheus(prometheus_bin, [], work) as url:
        yield url


def snapshot():
    cfgs = [NodeConfig("node-1", agent="http://127.0.0.1:10861"), NodeConfig("node-2", agent="http://127.0.0.1:10862"),
            NodeConfig("node-3"), NodeConfig("node-4", agent="http://127.0.0.1:10864")]
    servers = tuple(ServerState(c.name, "127.0.0.1", 8000 + i, 1, False, AdminState.READY, Health.UP)
                    for i, c in enumerate(cfgs))
    return merge(cfgs, {}, [BalancerReading("hx", "haproxy", servers, None, NOW)], NOW)


def test_every_history_metric_is_mapped_or_said_to_be_absent():
    assert set(METRICS) <= set(PROMQL)


def test_range_queries_give_each_node_its_series_on_one_grid(prom):
    # leak_window 120 + leak_for 30: 150 s back (the crash loop's window, 600 s by default, set to the same)
    settings = ProblemsConfig(tuple((k, 150.0 if k == "crash_loop_window" else v) for k, v in ProblemsConfig().values))
    h = asyncio.run(fetch_history(prom, snapshot(), settings, refresh=15.0))
    times = h.timestamps()
    assert times[-1] == NOW and times[0] == NOW - 150 and len(times) == 11
    leak = h.series("node-1", "gpu_mem_bytes")
    assert leak == [1e10 + LEAK * (t - NOW + 300) for t in times]
    assert h.series("node-2", "gpu_mem_bytes") == [1e10] * 11
    assert h.series("node-1", "gpu_mem") == pytest.approx([(1e10 + LEAK * (t - NOW + 300)) / 8e10 for t in times])
    assert h.series("node-3", "in_flight") == [5.0] * 11  # joined by asr_node_info's node label
    assert h.series("node-1", "req_rate") == pytest.approx([10.0] * 11)
    assert h.series("node-1", "queued") == [None] * 11  # not in the agent's metrics: absent, not 0
    assert h.series("node-1", "rss_bytes") == [None] * 11  # exported, but not by these test agents
    assert h.series("node-4", "in_flight") == []  # Prometheus has nothing of it
    with pytest.raises(ValueError):
        h.series("node-1", "no-such-metric")


def test_check_evaluates_history_rules_from_prometheus(prom):
    def leak(ctx):
        for v in ctx.snapshot.nodes:
            s = [x for x in ctx.history.series(v.name, "gpu_mem_bytes") if x is not None]
            if len(s) > 2 and (s[-1] - s[0]) / (len(s) - 1) / 15 > 5e6:
                yield Finding("gpu-memory-leak", v.name, Severity.WARNING, "leaks GPU memory", f"asrtop drain {v.name}")
    rules = (Rule("gpu-memory-leak", "GPU memory leak", leak, needs_history=True),)

    class Source:
        async def snapshot(self):
            return snapshot()

        async def close(self):
            pass

    async def once(source):
        return await source.snapshot()
    out = io.StringIO()
    config = ClusterConfig(path=None, prometheus=prom, refresh=15.0)
    assert asyncio.run(run_check(config, Source(), once, rules=rules, out=out)) == 1
    assert out.getvalue().splitlines()[1:] == ["WARNING node-1 leaks GPU memory; action: asrtop drain node-1"]


def test_a_url_that_is_not_prometheus_is_one_line(prom):
    with pytest.raises(PrometheusError, match="range query failed|not a JSON answer"):
        asyncio.run(fetch_history(prom + "/nothing", snapshot(), ProblemsConfig()))
