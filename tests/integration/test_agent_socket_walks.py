"""The agent's socket read against the real kernel, in a network namespace of its own (support/netns.py): a
round walks the kernel's established-socket table only when a TCP connection came or went since the last walk
(sockets.py: TcpCounters), and in-flight stays right. A simulated FunASR node and the default HTTP probe run for
real; nothing else opens connections in there, as on an idle node."""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path

from support.netns import run_isolated

ROUNDS = 5


def scenario() -> None:
    """In the namespace: phases of rounds; prints {phase: [[walks, up, in flight], ...]}."""
    from asrtop_agent.collectors.asr import AsrCollector
    from asrtop_agent.collectors.sockets import SockDiag, TcpCounters
    from support.agent_proc import simnode

    def settle(done) -> None:
        """Wait (5 s at most) for the kernel to show `done()`: read with a SockDiag of its own and the counters,
        so that the collector's last walk is not touched."""
        deadline = time.monotonic() + 5
        while not done() and time.monotonic() < deadline:
            time.sleep(0.01)

    async def rounds(col: AsrCollector, diag: SockDiag, counters: TcpCounters, n: int, open_now: int) -> list:
        """`n` rounds, each once both ends of the last probe's connection are closed (`open_now` established
        sockets in the namespace): an agent's 1 s interval leaves them that long, this test's rounds less."""
        out = []
        for _ in range(n):
            settle(lambda: counters.read()[4] == open_now)
            walks = diag.walks
            snap = await col.collect()
            out.append([diag.walks - walks, snap.up, snap.in_flight])
            await asyncio.sleep(0.05)
        return out

    async def phases(url: str, port: int) -> dict[str, list]:
        diag, look, counters = SockDiag(), SockDiag(), TcpCounters()
        col = AsrCollector(url, connections=diag)
        got = {"start": await rounds(col, diag, counters, 2, 0)}
        got["idle"] = await rounds(col, diag, counters, ROUNDS, 0)
        stream = socket.create_connection(("127.0.0.1", port))  # a client that holds a connection open
        settle(lambda: look.sample(established=(port,)).established(port))  # accepted by the node (an inode)
        got["connected"] = await rounds(col, diag, counters, ROUNDS, 2)  # its two ends
        stream.close()
        got["closed"] = await rounds(col, diag, counters, ROUNDS, 0)  # the node closed its side too
        await col.close()
        return got

    with tempfile.TemporaryDirectory() as tmp, simnode(Path(tmp)) as node:
        print(json.dumps(asyncio.run(phases(node.url, node.port))))


def test_an_idle_node_walks_the_socket_table_only_when_a_connection_comes_or_goes():
    got = json.loads(run_isolated("test_agent_socket_walks", "scenario").strip().splitlines()[-1])
    # the first round also asks for our side of connections (no listener known yet): the second walks again
    assert got["start"] == [[1, True, 0], [1, True, 0]]
    assert got["idle"] == [[0, True, 0]] * ROUNDS  # the probe's own connection each round does not count
    assert got["connected"] == [[1, True, 1]] + [[0, True, 1]] * (ROUNDS - 1)
    assert got["closed"] == [[1, True, 0]] + [[0, True, 0]] * (ROUNDS - 1)
