"""The simulated node's fault knobs without a process: checking, the leak's arithmetic, the crash loop's
file, and a node without a fault-state file refusing a crash loop (it could not survive the restart)."""

from __future__ import annotations

import httpx
import pytest
from aiohttp.test_utils import TestServer

from asrtop.demo.fault import PRESETS, DemoFaults, describe
from asrtop.demo.simfaults import SIMULATED_GPU_BYTES, CrashLoopFile, FaultError, Leak, parse
from asrtop.demo.simnode import NodeSettings, SimNode

MiB = 2**20


def test_parse_checks_every_knob_before_any_is_set():
    assert parse({"gpu_leak_mb_s": 50, "crash_loop": True, "clear": True}) == \
        {"gpu_leak_mb_s": 50.0, "crash_loop": 3.0, "clear": True}
    assert parse({"crash_loop": False}) == {"crash_loop": None}
    for body, line in (({"rss_leak_mb_s": -1}, "rss_leak_mb_s must be MiB/s in 0..10000, got -1"),
                       ({"gpu_hot": 1}, "gpu_hot must be true or false, got 1"),
                       ({"crash_loop": 0}, "crash_loop must be true, false or seconds"),
                       ({"slowdown": True}, "slowdown must be a number in (0, 1000], got True"),
                       ([], "expected a JSON object of fault knobs")):
        with pytest.raises(FaultError, match=line.replace("(", r"\(").replace(")", r"\)")):
            parse(body)
    for _, (knobs, _) in PRESETS.items():  # every palette fault is a valid request
        parse(knobs)


def test_leak_grows_at_its_rate_goes_on_from_there_and_stops_at_the_cap():
    now = [0.0]
    leak = Leak(SIMULATED_GPU_BYTES, clock=lambda: now[0])
    leak.set_rate(50)
    now[0] = 10.0
    assert leak.value() == 500 * MiB
    leak.set_rate(100)  # a new rate goes on from what leaked so far
    now[0] = 11.0
    assert leak.value() == 600 * MiB
    now[0] = 10_000.0
    assert leak.value() == SIMULATED_GPU_BYTES  # until the simulated GPU is full
    leak.clear()
    assert leak.value() == 0 and leak.rate == 0


def test_crash_loop_file_round_trip(tmp_path):
    f = CrashLoopFile(tmp_path / "n.json")
    assert f.read() is None
    f.write(1.5)
    assert CrashLoopFile(tmp_path / "n.json").read() == 1.5  # what the next start reads
    f.write(None)
    assert not (tmp_path / "n.json").exists() and f.read() is None
    (tmp_path / "n.json").write_text("not json")
    assert f.read() is None


def test_describe_names_each_fault():
    assert describe({"slowdown": 1.0, "error_rate": 0.0}) == "no faults"
    assert describe({"gpu_leak_mb_s": 50, "gpu_leaked_bytes": 3 * 2**30, "crash_loop": 3.0}) == \
        "GPU leak 50 MiB/s (3.0 GiB so far, simulated), crash loop (3 s after each start)"


def test_palette_injector_refuses_in_one_line_without_sending():
    ok, line = DemoFaults(timeout=0.2).inject("192.0.2.1:80", "gpu-leak")
    assert not ok and line.startswith("refusing 192.0.2.1:80")
    assert DemoFaults().inject("127.0.0.1:1", "no-such") == (False, "no demo fault 'no-such'")


async def test_crash_loop_needs_a_fault_state_file_and_a_bad_request_changes_nothing():
    node = SimNode(NodeSettings(rtf=0.0))
    server = TestServer(node.app())
    await server.start_server()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
            r = await c.post("/_sim/fault", json={"crash_loop": True, "slowdown": 5})
            assert r.status_code == 400 and "crash_loop needs the node started with --fault-state FILE" in r.json()["error"]
            assert node.settings.slowdown == 1.0 and node.faults.crash_loop is None
            assert (await c.post("/_sim/fault", json={"clear": True})).status_code == 200  # nothing kept: fine
            assert (await c.post("/_sim/fault", content=b"{")).json()["error"] == "expected a JSON object of fault knobs"
    finally:
        await server.close()
