"""`drain --wait` stopped by Ctrl+C: one line saying the node stays drained and how to bring it back."""

from __future__ import annotations

import asyncio
import signal

import pytest

from asrtop import commands


class CtrlCWhileWaiting:
    """A controller whose wait reports 2 in flight, then gets a real SIGINT (as the terminal sends it)."""

    async def wait_drained(self, node, timeout, progress, on_node=None):
        progress(2, 0.0)
        signal.raise_signal(signal.SIGINT)
        await asyncio.sleep(30)  # cut by the SIGINT
        return True


def test_ctrl_c_during_drain_wait_says_node_stays_drained(capsys):
    with pytest.raises(commands._Fail) as failed:
        asyncio.run(commands._wait(CtrlCWhileWaiting(), "node-3", 60.0))
    assert failed.value.code == 130
    assert failed.value.line == ("interrupted while waiting: node-3 stays drained (2 request(s) were still in "
                                 "flight); bring it back with `asrtop ready node-3`")
    assert capsys.readouterr().out == "node-3: 2 in flight, waited 0.0 s\n"
