"""Fleet-scale benchmark of the Prometheus source (issues 7, 17): a real Prometheus scraping N synthetic agents.

    .venv/bin/python tests/benchmarks/bench_sources_prometheus.py [--agents 1000] [--rounds 40] [--scrape 2s]

One subprocess serves N agents' /metrics (the agreed asr_* names, one GPU each); /usr/bin/prometheus
scrapes them on a free loopback port; asrtop's PrometheusSource then builds every node's reading per
round. Budget (issue 17): 1,000 nodes, EVERY round <= 200 ms of wall over the rounds (the max, not the
median). Prints each round's wall and CPU and where the time went (the queries until the last answer is
parsed, of which JSON decoding and grouping; joining series to nodes; building the readings), then max / p95 /
median, the longest the event loop was held during a round (LoopProbe: the console polls on its UI loop), and
baselines measured in the same run:
- a bare query (`count(up)`, one series) right after each round: Prometheus' and the machine's floor now;
- the round floor: the rounds' own queries again, each round's at once, their answers read but not decoded,
  at the same cadence after the rounds: how much of a round's wall is Prometheus' evaluation and sending on
  this machine (asrtop's decoding and building is the rest). Not right after each round, as before: asked in
  the same refresh period they doubled what Prometheus allocates, and so how often its collections met a round;
- the "everything every round" schedule: every node's details and slow facts (versions, model digest and
  files, GPU names, limits) asked for in every round, as a source with one detail slice does, for --old rounds;
- Prometheus' own work per round: its CPU and the bytes it allocated (process_cpu_seconds_total and
  go_memstats_alloc_bytes_total from its /metrics), its scrapes' share subtracted at the rate of the --idle
  seconds; the allocations set the pace of its collections (below) and vary little from run to run;
- Prometheus' own garbage collections (its Go runtime's, GODEBUG=gctrace=1 in its log): which rounds one ran
  into, and how often it collects with the rounds running and with nothing asked (--idle seconds before them).
  Measured on a 2-core box: each lasted 60-230 ms of wall, most of it marking while the queries were evaluated,
  and came every ~3 rounds (the rounds' own ~33 MB of Prometheus allocations on a ~110 MB heap; none or a few a
  minute with nothing asked); in the two runs without a floor between the rounds, every round over budget had
  met one.
- asrtop's own garbage collections (Python's, gc.callbacks): which rounds met one, by generation. The rounds run
  under the console's collector regime (run_tui: the heap alive after the first refresh frozen, full collections
  only at the quiet point between refreshes, every FULL_EVERY; asrtop.tui.gc_schedule), as the console runs the
  source; `status` and `check` run theirs with the collector off. --python-gc runs them under Python's default
  thresholds instead, a process asrtop never is: there a generation-1 collection (~45 ms, every ~12 rounds) and
  now and then a full one (~100 ms) fell inside a round (measured at 1,000 nodes on a 2-core box).
Last, the host's speed before and after (host_speed.py): a run's walls compare with another run's only at a
like speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from asrtop.config import NodeConfig  # noqa: E402
from asrtop.sources import prometheus as prom  # noqa: E402
from asrtop.tui.gc_schedule import FullCollections, freeze_long_lived  # noqa: E402
from bench_sources_agents import start_agents  # noqa: E402
from host_speed import host_speed, host_speed_line  # noqa: E402
from loop_probe import LoopProbe  # noqa: E402
from support.sources_prom import prometheus, wait_scraped  # noqa: E402
from support.sources_synth import raise_nofile  # noqa: E402

BUDGET = 0.200
# A gctrace line: "gc 14 @8.013s 2%: 0.65+149+0.11 ms clock, ...": cycle, its start in seconds since the runtime
# started, then its wall time as stop-the-world + concurrent mark + stop-the-world.
_GCTRACE = re.compile(r"gc \d+ @([\d.]+)s \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock")


def prometheus_collections(log: Path, started: float) -> list[tuple[float, float]]:
    """Prometheus' garbage collections as (start, end) wall times (time.time()), from the gctrace lines of its log;
    `started`: the wall time its process was started at (the lines count from there)."""
    out = []
    for m in _GCTRACE.finditer(log.read_text(errors="replace")):
        at = started + float(m.group(1))
        out.append((at, at + sum(float(m.group(k)) for k in (2, 3, 4)) / 1000))
    return out


class OwnCollections:
    """This process's garbage collections as (start, end, generation), wall times (time.time()), from gc.callbacks."""

    def __init__(self) -> None:
        self.found: list[tuple[float, float, int]] = []
        self._start = 0.0
        gc.callbacks.append(self._seen)

    def _seen(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.time()
        else:
            self.found.append((self._start, time.time(), info["generation"]))

    def stop(self) -> None:
        gc.callbacks.remove(self._seen)

    def in_rounds(self, spans: list[tuple[float, float]]) -> list[list[tuple[float, int]]]:
        """Per round: the (wall seconds, generation) of each collection that started inside it."""
        return [[(b - a, g) for a, b, g in self.found if start <= a < end] for start, end in spans]


def overlapping(span: tuple[float, float], collections: list[tuple[float, float]]) -> bool:
    return any(a < span[1] and b > span[0] for a, b in collections)


def per_minute(collections: list[tuple[float, float]], span: tuple[float, float]) -> float:
    return len(collections) * 60 / max(1e-9, span[1] - span[0])


def ran_into(label: str, walls: list[float], spans: list[tuple[float, float]],
             collections: list[tuple[float, float]]) -> list[bool]:
    """Which of these (rounds or floors) overlapped one of Prometheus' collections; prints both sides' walls."""
    met = [overlapping(span, collections) for span in spans]
    hit = [w for w, m in zip(walls, met) if m]
    clean = [w for w, m in zip(walls, met) if not m]
    print(f"  {label} that ran into one: {len(hit)} of {len(walls)}" + (f", {summary('wall', hit)}" if hit else "")
          + (f"; the others: {summary('wall', clean)}" if clean else ""))
    return met


_OWN_WORK = re.compile(rb"^(process_cpu_seconds_total|go_memstats_alloc_bytes_total) (\S+)$", re.M)


async def own_work(session: aiohttp.ClientSession, url: str) -> tuple[float, float, float]:
    """(now, Prometheus' CPU seconds, bytes it allocated) so far, from its own /metrics."""
    async with session.get(f"{url}/metrics") as resp:
        found = dict(_OWN_WORK.findall(await resp.read()))
    return time.time(), float(found[b"process_cpu_seconds_total"]), float(found[b"go_memstats_alloc_bytes_total"])


def work_per_round(idle_from: tuple, idle_to: tuple, start: tuple, end: tuple, rounds: int) -> tuple[float, float]:
    """Prometheus' CPU seconds and allocated bytes per round from `start` to `end` (own_work's readings), less
    what its scrapes cost over as long a time (their rate from `idle_from` to `idle_to`, when nothing was asked)."""
    idle_s, run_s = idle_to[0] - idle_from[0], end[0] - start[0]
    return tuple((end[k] - start[k] - (idle_to[k] - idle_from[k]) * run_s / idle_s) / rounds for k in (1, 2))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))]


def summary(label: str, values: list[float]) -> str:
    return (f"{label} max {max(values)*1000:.0f} ms, p95 {pct(values, 0.95)*1000:.0f} ms, "
            f"median {statistics.median(values)*1000:.0f} ms")


async def raw_answer(session: aiohttp.ClientSession, url: str, promql: str, federate: bool = False) -> bytes:
    """One of a round's queries (`federate`: a /federate selector) with its answer read but not decoded: Prometheus'
    part of a round (evaluating, encoding, sending), over kept-alive connections as the source's."""
    if federate:
        async with session.get(f"{url}/federate", params={"match[]": promql},
                               headers={"Accept": "text/plain;version=0.0.4"}) as resp:
            return await resp.read()
    async with session.post(f"{url}/api/v1/query", data={"query": promql}) as resp:
        return await resp.read()


def series_in(body: bytes, federate: bool) -> int:
    if federate:
        return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return len(json.loads(body)["data"]["result"])


def console_collector() -> FullCollections:
    """The collector as the console's process sets it after its first refresh (asrtop.tui.app_refresh's
    _freeze_long_lived, run_tui's flags): what is alive then collected once and frozen, full collections taken over
    (asrtop.tui.gc_schedule)."""
    freeze_long_lived()
    full = FullCollections()
    full.take_over()
    return full


async def run_rounds(src: prom.PrometheusSource, nodes: list[NodeConfig], n: int, refresh: float,
                     show: bool, full: FullCollections | None = None) -> dict[str, list]:
    """`n` rounds at `refresh` cadence; `full`: the console's full collections, run at its quiet point (just before
    a poll) when due, outside the rounds' walls (their walls in out["full"])."""
    out: dict[str, list] = {k: [] for k in ("wall", "cpu", "period", "bare", "series", "queries", "decode", "group",
                                            "join", "build", "span", "asked", "block", "full")}
    probe = LoopProbe()
    period_start = time.process_time()
    if show:
        print(f"  {'round':>5} {'wall':>6} {'cpu':>6} {'bare q':>6} | {'series':>6} {'queries':>7} "
              f"{'decode':>6} {'group':>6} {'join':>5} {'build':>6}  (ms)")
    for i in range(n):
        if full is not None:
            f0 = time.perf_counter()
            if full.refreshed():
                out["full"].append(time.perf_counter() - f0)
        out["asked"].append({name: (q, name in prom.FAST_PARTS and src.federates is not False)
                             for name, q in src.round_queries().items()})
        c0, w0, at = time.process_time(), time.perf_counter(), time.time()
        probe.take()
        r = await src.poll(nodes)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        out["block"].append(probe.take())
        out["span"].append((at, at + wall))
        assert len(r) == len(nodes), len(r)
        bad = [x.error for x in r.values() if x.error]
        if bad:  # stale samples: Prometheus itself fell behind its scrapes (an overloaded machine); said, not hidden
            out.setdefault("errors", []).append(f"round {i + 1}: {len(bad)} nodes in error, e.g. {bad[0]}")
        b0, bc0 = time.perf_counter(), time.process_time()
        await src.query("count(up)")
        bare, bare_cpu = time.perf_counter() - b0, time.process_time() - bc0
        cost = src.last_cost
        for k, v in (("wall", wall), ("cpu", cpu), ("bare", bare), *zip(cost._fields, cost)):
            out[k].append(v)
        if show:
            print(f"  {i + 1:>5} {wall*1000:>6.0f} {cpu*1000:>6.0f} {bare*1000:>6.0f} | {cost.series:>6} "
                  f"{cost.queries*1000:>7.0f} {cost.decode*1000:>6.1f} {cost.group*1000:>6.1f} "
                  f"{cost.join*1000:>5.1f} {cost.build*1000:>6.1f}")
        await asyncio.sleep(max(0.0, refresh - (time.perf_counter() - w0)))
        # the process' CPU over the whole refresh period: the collections that follow a round count too
        out["period"].append(time.process_time() - period_start - bare_cpu)
        period_start = time.process_time()
    probe.stop()
    return out


async def replay_floor(raw: aiohttp.ClientSession, url: str, asked: list[dict[str, tuple[str, bool]]],
                       refresh: float) -> tuple[list[float], list[tuple[float, float]], list[float]]:
    """The round floor: each round's queries again, at once, at the rounds' cadence; the walls, their spans and
    the longest the event loop was held in each (reading the answers, and the OS running Prometheus instead)."""
    walls, spans, blocks = [], [], []
    probe = LoopProbe()
    for queries in asked:
        w0, at = time.perf_counter(), time.time()
        probe.take()
        await asyncio.gather(*(raw_answer(raw, url, q, federate) for q, federate in queries.values()))
        walls.append(time.perf_counter() - w0)
        blocks.append(probe.take())
        spans.append((at, at + walls[-1]))
        await asyncio.sleep(max(0.0, refresh - (time.perf_counter() - w0)))
    probe.stop()
    return walls, spans, blocks


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--old", type=int, default=10, help="rounds of the everything-every-round baseline (0: none)")
    ap.add_argument("--ranges", type=int, default=20,
                    help="rounds of the baseline without /federate: the per-round parts as range queries (0: none)")
    ap.add_argument("--scrape", default="2s", help="Prometheus scrape interval (default 2s)")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--switch", type=float, default=None,
                    help="GIL switch interval in ms (the console runs at asrtop.tui.app_refresh.GIL_SWITCH, 1 ms; "
                         "default: the interpreter's)")
    ap.add_argument("--python-gc", action="store_true",
                    help="the rounds under Python's default collector thresholds, not the console's regime")
    ap.add_argument("--idle", type=float, default=20.0,
                    help="seconds with nothing asked before the rounds: Prometheus' collections from its scrapes alone")
    args = ap.parse_args()
    os.environ["GODEBUG"] = "gctrace=1"  # Prometheus inherits it: its collections in its log
    raise_nofile()
    if args.switch is not None:
        sys.setswitchinterval(args.switch / 1000)
    print(f"load average {os.getloadavg()} on {os.cpu_count()} CPUs; GIL switch interval "
          f"{sys.getswitchinterval() * 1000:g} ms")
    speed = host_speed()  # before anything starts; again after Prometheus and the agents stopped
    proc, ports = start_agents(args.agents, 0)
    refresh = float(args.scrape.rstrip("s"))
    full: FullCollections | None = None
    try:
        nodes = [NodeConfig(name, agent=f"http://127.0.0.1:{port}") for name, port in sorted(ports.items())]
        started = time.time()  # Prometheus' process starts as the `with` enters (a few ms later at most)
        with tempfile.TemporaryDirectory() as tmp, \
                prometheus(args.prometheus, [f"127.0.0.1:{p}" for p in ports.values()], Path(tmp),
                           scrape_interval=args.scrape) as base:
            t0 = time.monotonic()
            await asyncio.to_thread(wait_scraped, base, args.agents, 180)
            raw = aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Accept-Encoding",))
            src = prom.PrometheusSource(base, refresh=refresh, timeout=10)
            try:
                await src.poll(nodes)  # warm-up: connections, Prometheus' caches; everybody's details
                full = None if args.python_gc else console_collector()
                queries = {name: (q, name in prom.FAST_PARTS and src.federates is not False)
                           for name, q in src.round_queries().items()}
                print(f"{args.agents} agents scraped every {args.scrape} by {base} "
                      f"(all up after {time.monotonic() - t0:.1f}s); {len(queries)} queries per round, the per-round "
                      + ("parts from /federate" if src.federates else "parts as range queries"))
                sizes = {key: (await raw_answer(raw, base, q, fed), fed) for key, (q, fed) in queries.items()}
                print("  series per query: " + ", ".join(f"{k} {series_in(v, fed)} ({len(v) / 1000:.0f} kB)"
                                                         for k, (v, fed) in sizes.items()))
                work = [await own_work(raw, base)]
                await asyncio.sleep(args.idle)
                work.append(await own_work(raw, base))
                idle = (work[0][0], work[1][0])
                own = OwnCollections()
                new = await run_rounds(src, nodes, args.rounds, refresh, True, full)
                own.stop()
                work.append(await own_work(raw, base))
                f0 = time.perf_counter()
                gc.collect()  # what the console's scheduled one costs here (between rounds, every FULL_EVERY)
                full_wall = time.perf_counter() - f0
                floor, floor_spans, floor_blocks = await replay_floor(raw, base, new["asked"], refresh)
                collections = prometheus_collections(Path(tmp) / "prometheus.log", started)
            finally:
                await src.close()
            ranges = None
            if args.ranges:  # the baseline without /federate (a server without it: Thanos Query, Mimir)
                src = prom.PrometheusSource(base, refresh=refresh, timeout=10)
                src.federates = False
                try:
                    await src.poll(nodes)
                    ranges_work = [await own_work(raw, base)]
                    ranges = await run_rounds(src, nodes, args.ranges, refresh, False, full)
                    ranges_work.append(await own_work(raw, base))
                    ranges_collections = prometheus_collections(Path(tmp) / "prometheus.log", started)
                finally:
                    await src.close()
            old = None
            if not args.old:
                await raw.close()
            if args.old:
                src = prom.PrometheusSource(base, refresh=refresh, timeout=10, detail_slices=1,
                                            static_slices=1)  # all, every round
                try:
                    await src.poll(nodes)
                    old_work = [await own_work(raw, base)]
                    old = await run_rounds(src, nodes, args.old, refresh, False, full)
                    old_work.append(await own_work(raw, base))
                finally:
                    await src.close()
                    await raw.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        if full is not None:
            full.give_back()
            gc.unfreeze()
    speed_after = host_speed()

    print(f"\nPrometheusSource.poll, {args.agents} nodes, {args.rounds} rounds (load average now {os.getloadavg()}):")
    print("  " + summary("wall/round", new["wall"]))
    print("  " + summary("CPU/round ", new["cpu"]))
    print("  " + summary("CPU/refresh period", new["period"]) + "  (the whole process, GC after the round included)")
    print("  " + summary("bare query", new["bare"]) + "  (baseline: Prometheus' floor in the same rounds)")
    print("  " + summary("longest event-loop block in a round", new["block"]) + "  (the loop the console draws on: "
          "the source decodes and builds on its worker thread)")
    print("  " + summary("round floor", floor) + "  (the rounds' queries again at the same cadence after them, each"
          " round's at once, answers read, not decoded: Prometheus' own evaluation and sending)")
    print("  " + summary("longest event-loop block in a round floor", floor_blocks) + "  (reading the answers, and "
          "the OS running Prometheus instead: the baseline of the block in a round)")
    cpu, allocated = work_per_round(work[0], work[1], work[1], work[2], args.rounds)
    print(f"  Prometheus' own work per round (its scrapes' share over as long, from --idle, subtracted): "
          f"{cpu * 1000:.0f} ms of CPU, {allocated / 1e6:.1f} MB allocated (go_memstats_alloc_bytes_total: its "
          "collections come when its heap has grown by its live size)")
    med = {k: statistics.median(v) for k, v in new.items() if k not in ("errors", "span", "asked", "full")}
    print(f"  where the time goes (median): queries until the last answer is parsed {med['queries']*1000:.0f} ms "
          f"(of which JSON decoding {med['decode']*1000:.1f} ms, grouping by instance {med['group']*1000:.1f} ms), "
          f"joining series to nodes {med['join']*1000:.1f} ms, building readings {med['build']*1000:.1f} ms; "
          f"{med['series']:.0f} series per round ({med['series'] / args.agents:.1f} per node)")
    ratio = [w / b for w, b in zip(new["wall"], new["bare"])]
    print(f"  round wall / bare query wall: median x{statistics.median(ratio):.1f}, max x{max(ratio):.1f}")
    print(f"  round floor / round wall: median {statistics.median(floor) / statistics.median(new['wall']):.0%}, "
          f"max {max(floor) / max(new['wall']):.0%}")
    if old:
        print(f"  everything every round ({args.old} rounds): {summary('wall', old['wall'])}; "
              f"{summary('CPU', old['cpu'])}; {statistics.median(old['series']):.0f} series per round")
        old_cpu, old_allocated = work_per_round(work[0], work[1], *old_work, args.old)
        print(f"  ratio to it (median): wall x{statistics.median(new['wall']) / statistics.median(old['wall']):.2f}, "
              f"CPU x{statistics.median(new['cpu']) / statistics.median(old['cpu']):.2f}, "
              f"series x{statistics.median(new['series']) / statistics.median(old['series']):.2f}; Prometheus' own "
              f"work per round: CPU x{cpu / old_cpu:.2f}, allocated x{allocated / old_allocated:.2f} "
              f"({old_cpu * 1000:.0f} ms, {old_allocated / 1e6:.1f} MB)")
    if ranges:
        span = (ranges["span"][0][0], ranges["span"][-1][1])
        r_cpu, r_allocated = work_per_round(work[0], work[1], *ranges_work, args.ranges)
        r_over = sum(w > BUDGET for w in ranges["wall"])
        r_gcs = [c for c in ranges_collections if span[0] <= c[0] < span[1]]
        print(f"  baseline without /federate, the per-round parts as range queries ({args.ranges} rounds after): "
              f"{summary('wall', ranges['wall'])}; {summary('CPU', ranges['cpu'])}; {r_over} of {args.ranges} rounds "
              f"over {BUDGET * 1000:.0f} ms; Prometheus' own work per round {r_cpu * 1000:.0f} ms of CPU, "
              f"{r_allocated / 1e6:.1f} MB allocated; its collections {per_minute(r_gcs, span):.0f}/min")
        wall_ratio = statistics.median(new["wall"]) / statistics.median(ranges["wall"])
        print(f"  ratio to it (median): wall x{wall_ratio:.2f}, "
              f"CPU x{statistics.median(new['cpu']) / statistics.median(ranges['cpu']):.2f}; Prometheus' own work per "
              f"round: CPU x{cpu / r_cpu:.2f}, allocated x{allocated / r_allocated:.2f}")
    for line in new.get("errors", []):
        print(f"  {line}")
    rounds_span = (new["span"][0][0], new["span"][-1][1])
    during = [c for c in collections if rounds_span[0] <= c[0] < rounds_span[1]]
    quiet = [c for c in collections if idle[0] <= c[0] < idle[1]]
    print(f"  Prometheus' own garbage collections (gctrace): {per_minute(during, rounds_span):.0f}/min with the rounds "
          f"running, {per_minute(quiet, idle):.0f}/min over {args.idle:.0f} s with nothing asked; each "
          + (f"median {statistics.median(b - a for a, b in during) * 1000:.0f} ms, max "
             f"{max(b - a for a, b in during) * 1000:.0f} ms of wall" if during else "-"))
    met = ran_into("rounds", new["wall"], new["span"], collections)
    ran_into("round floors", floor, floor_spans, collections)
    own_met = own.in_rounds(new["span"])
    regime = ("Python's default thresholds (--python-gc)" if full is None else
              f"the console's regime: heap frozen after the first round, full collections at the quiet point every "
              f"{full.every} refreshes, {len(new['full'])} in these rounds; one measured after them: "
              f"{full_wall * 1000:.0f} ms")
    print(f"  asrtop's own garbage collections (Python's), {regime}:")
    for gen in (0, 1, 2):
        walls = [w for met_round in own_met for w, g in met_round if g == gen]
        print(f"    generation {gen} inside rounds: {len(walls)} in {sum(any(g == gen for _, g in m) for m in own_met)}"
              f" of {args.rounds} rounds" + (f", {summary('wall', walls)}" if walls else ""))
    over = [i + 1 for i, w in enumerate(new["wall"]) if w > BUDGET]
    over_clean = [i for i in over if not met[i - 1]]
    over_own = [i for i in over if any(g > 0 for _, g in own_met[i - 1])]
    floor_over = sum(f > BUDGET for f in floor)
    print(f"\nbudget (issue 17): every {args.agents}-node round <= {BUDGET*1000:.0f} ms: round max over {args.rounds} "
          f"rounds {max(new['wall'])*1000:.0f} ms, {len(over)} of {args.rounds} rounds over {BUDGET*1000:.0f} ms "
          f"({'OK' if not over else 'OVER in rounds ' + ', '.join(map(str, over))}); Prometheus' own round floor: max "
          f"{max(floor)*1000:.0f} ms, over {BUDGET*1000:.0f} ms in {floor_over} of {args.rounds} rounds; rounds "
          f"over budget that met no Prometheus collection: {len(over_clean)}"
          + (f" ({', '.join(map(str, over_clean))})" if over_clean else "")
          + f"; that met a generation-1 or full collection of asrtop's own: {len(over_own)}"
          + (f" ({', '.join(map(str, over_own))})" if over_own else ""))
    print(host_speed_line(speed, speed_after))


if __name__ == "__main__":
    asyncio.run(main())
