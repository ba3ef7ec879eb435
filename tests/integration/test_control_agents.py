"""drain --wait with an agent: the agent's in-flight count counts, as the max with the balancers' sessions.

Agents here are small aiohttp servers in the test process serving a schema-1 /v1/status whose in-flight
count the test sets; balancers and backends are real processes.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from aiohttp import web

from asrtop.balancers.factory import build_balancers
from asrtop.control import Action, Controller
from support.netutil import free_port
from asrtop.sources.factory import build_fleet_source
from support.balancers import nginx_upstream_block, start_backends, start_haproxy, start_nginx
from support.control_cluster import asrtop_argv, config, haproxy_entry, nginx_entry, node_entry, write_config
from support.sources_synth import SynthNode


class Agent:
    def __init__(self, name: str, in_flight: int):
        self.node = SynthNode(name, in_flight=in_flight)
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> "Agent":
        async def status(_):
            self.node.collected_at = time.time()
            return web.json_response(self.node.status_body())

        app = web.Application()
        app.router.add_get("/v1/status", status)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


async def test_drain_wait_on_nginx_follows_the_agent(tmp_path, nginx_bin):
    """nginx reports no sessions: the agent's in-flight count is what `drain --wait` follows."""
    with start_backends(("n1", "n2")) as be, \
            start_nginx(nginx_bin, tmp_path, nginx_upstream_block("fun_asr_backend", be.specs())) as ngx:
        async with Agent("n1", in_flight=2) as agent:
            nodes = [node_entry("n1", f"127.0.0.1:{be.ports['n1']}", agent.url),
                     node_entry("n2", f"127.0.0.1:{be.ports['n2']}")]
            path = write_config(tmp_path, [nginx_entry("ngx", ngx)], nodes)
            proc = await asyncio.create_subprocess_exec(
                *asrtop_argv(path, "drain", "n1", "--wait", "--timeout", "20"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            seen = [await asyncio.wait_for(proc.stdout.readline(), 20)]  # "drain n1: done on ngx"

            async def progress_line() -> bytes:  # the next figure drain --wait prints (a slow start is no failure)
                seen.append(await asyncio.wait_for(proc.stdout.readline(), 20))
                return seen[-1]

            assert (await progress_line()).split()[1] == b"2"  # still waiting: the agent says 2 in flight
            agent.node.in_flight = 1
            assert (await progress_line()).split()[1] == b"1"  # still waiting at 1: only 0 ends the wait
            assert proc.returncode is None
            agent.node.in_flight = 0
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    lines = b"".join(seen + [out]).decode().splitlines()
    assert lines[0] == "drain n1: done on ngx"
    assert [ln.split()[1] for ln in lines[1:-1]] == ["2", "1", "0"]
    assert lines[-1] == "n1 is empty: safe to upgrade"


async def test_in_flight_is_the_max_of_agent_and_balancer_sessions(tmp_path, wheel_haproxy_bin):
    with start_backends(("n1", "n2")) as be, start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()) as hx:
        async with Agent("n1", in_flight=3) as agent:
            nodes = [node_entry("n1", agent=agent.url), node_entry("n2")]
            cfg = config(write_config(tmp_path, [haproxy_entry("hx", hx.socket)], nodes))
            balancers = build_balancers(cfg)
            source = build_fleet_source(cfg, balancers)
            try:
                ctl = Controller(cfg, balancers, source=source)
                assert await ctl.in_flight("n1") == 3  # HAProxy: 0 sessions; the agent: 3
                agent.node.in_flight = 0
                async with httpx.AsyncClient(timeout=30) as client:
                    slow = [asyncio.create_task(client.get(hx.url("/slow?s=2"))) for _ in range(4)]
                    while be.in_flight["n1"] < 2:
                        await asyncio.sleep(0.02)
                    assert await ctl.in_flight("n1") == 2  # the agent says 0, HAProxy sees 2
                    # wait_drained follows a drain (a node shown ready again fails the wait): drain it first
                    assert (await ctl.apply(Action("drain", "n1"))).outcome == "done"
                    seen: list[int | None] = []
                    assert await ctl.wait_drained("n1", 10, lambda n, _: seen.append(n), interval=0.1) is True
                    assert seen[0] == 2 and seen[-1] == 0
                    assert all(r.status_code == 200 for r in await asyncio.gather(*slow))
            finally:
                await source.close()
        # The agent is gone and HAProxy stops: in flight is unknown, which never counts as empty.
        hx.stop()
        source = build_fleet_source(cfg, balancers)
        try:
            ctl = Controller(cfg, balancers, source=source)
            seen = []
            assert await ctl.wait_drained("n1", 0.3, lambda n, _: seen.append(n), interval=0.1) is False
            assert seen and all(n is None for n in seen)
        finally:
            await source.close()
