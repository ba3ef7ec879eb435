"""LoopSession: one aiohttp session per event loop, by our own record of the loop (not aiohttp's `_loop`)."""

from __future__ import annotations

import asyncio

import aiohttp

from asrtop.sources.http import LoopSession


class Made:
    """A session factory that keeps what it made."""

    def __init__(self):
        self.sessions: list[aiohttp.ClientSession] = []

    def __call__(self) -> aiohttp.ClientSession:
        self.sessions.append(aiohttp.ClientSession())
        return self.sessions[-1]


async def test_one_session_per_loop_until_closed():
    made = Made()
    holder = LoopSession(made)
    first = holder.get()
    assert holder.get() is first and len(made.sessions) == 1
    await first.close()  # closed behind the holder's back: the next get() makes a fresh one
    second = holder.get()
    assert second is not first and not second.closed
    await holder.close()
    assert second.closed
    await holder.close()  # idempotent
    third = holder.get()  # a closed holder opens again on demand
    assert third is not second and not third.closed
    await holder.close()


def test_a_fresh_session_under_a_new_loop_and_close_leaves_a_finished_loops_session_alone():
    # `asrtop status` style callers: asyncio.run() per round, same holder
    made = Made()
    holder = LoopSession(made)

    async def get() -> aiohttp.ClientSession:
        return holder.get()

    first = asyncio.run(get())
    second = asyncio.run(get())
    assert second is not first and len(made.sessions) == 2
    asyncio.run(holder.close())  # second's loop has finished: nothing to await it on, nothing raised
    assert not second.closed
    third = asyncio.run(get())
    assert third is not second and len(made.sessions) == 3


def test_an_owner_whose_method_makes_the_sessions_is_freed_without_the_cycle_collector():
    """Issue 17: the pollers hand LoopSession their own method; held strongly, poller -> LoopSession -> method ->
    poller was a cycle, so a 1,000-node round's readings waited for the cycle collector (at `status`'s exit)."""
    import gc
    import weakref

    from asrtop.sources.agents import AgentPoller

    class Owner:
        def __init__(self):
            self.http = LoopSession(self.make)
            self.made = Made()

        def make(self):
            return self.made()

    async def use(owner):
        session = owner.http.get()
        assert owner.made.sessions == [session]
        await owner.http.close()

    was = gc.isenabled()
    gc.disable()
    try:
        owner, poller = Owner(), AgentPoller(one_shot=True)
        asyncio.run(use(owner))
        gone = [weakref.ref(owner), weakref.ref(poller)]
        del owner, poller
        assert [r() for r in gone] == [None, None]
    finally:
        if was:
            gc.enable()
