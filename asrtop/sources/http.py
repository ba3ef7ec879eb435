"""One aiohttp session per event loop, for the sources that keep a session across rounds.

An aiohttp.ClientSession belongs to the event loop it was created under. A caller may run rounds under
a new loop each time (`asyncio.run` per command), so the holder remembers the loop it created the session
under (our own record, not aiohttp's private `_loop`) and makes a fresh session when the running loop is
another one. A session of a finished loop went with its loop: `close()` leaves it alone.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the session's maker imports aiohttp: importing this module does not
    import aiohttp


class LoopSession:
    """Holds the session `make()` built under the running loop; `get()` inside a coroutine, `close()` at exit."""

    def __init__(self, make: Callable[[], aiohttp.ClientSession]):
        # The owner's own method (the usual maker) held weakly: owner -> LoopSession -> bound method -> owner is a
        # reference cycle, so all the owner holds (a 1,000-node round's readings) would wait for the cycle
        # collector, which `status` runs only at exit (a third of its exit at 1,000 nodes).
        self._make: Callable[[], Callable[[], aiohttp.ClientSession] | None] = \
            weakref.WeakMethod(make) if hasattr(make, "__self__") and hasattr(make, "__func__") else lambda: make
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the running loop when _session was made

    def get(self) -> aiohttp.ClientSession:
        """The session of the running loop: made now when there is none, it is closed, or it is another loop's."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            make = self._make()
            assert make is not None, "LoopSession outlived its owner"
            session = make()
            self._session, self._loop = session, loop
        return session

    async def close(self) -> None:
        """Close the session when it belongs to the running loop; forget it either way (idempotent)."""
        session, loop = self._session, self._loop
        self._session = self._loop = None
        if session is not None and not session.closed and loop is asyncio.get_running_loop():
            await session.close()
