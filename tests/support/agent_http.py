"""The agent's HTTP face (asrtop_agent.server.make_app) served on a free loopback port, with a client to it."""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager

import httpx


@asynccontextmanager
async def serving(app):
    """Start `app` on 127.0.0.1:<free port>; yields an httpx.AsyncClient to it; closes both after."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    await app.start(sock)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.port}", timeout=5) as client:
            yield client
    finally:
        await app.close()
