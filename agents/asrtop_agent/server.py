"""The agent's HTTP face: /metrics, /v1/status, /v1/model, /healthz — all served from the last snapshot.

Bodies are rendered once per snapshot (by the collection loop right after collecting, else on the first
scrape), so a scrape costs a dictionary lookup and a socket write. The one exception is asked for:
`/v1/status?after=T` (T: Unix time on the agent's clock, or `now`: when the request arrived) waits for a
snapshot whose collection round began at or after T (CollectionLoop.fresh), 503 when none comes in time.
"""

from __future__ import annotations

import json
import math
from typing import Awaitable, Callable

from aiohttp import web

from . import metrics, status
from .snapshot import FRESH_TIMEOUT, Snapshot

try:  # prometheus_client >= 0.22 names the text format explicitly
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as METRICS_CONTENT_TYPE
except ImportError:  # pragma: no cover
    from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE

JSON = "application/json"


def parse_after(text: str, now: Callable[[], float]) -> float:
    """`?after=` as a time on the agent's clock; ValueError (one line) when it is neither a number nor `now`."""
    if text == "now":
        return now()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"bad after={text!r}: give a Unix time in seconds (e.g. 1763712000.25) or 'now'")
    return value


def _error(status: int, line: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": line}).encode(), content_type=JSON)


def make_app(latest: Callable[[], Snapshot], fresh: Callable[[float], Awaitable[Snapshot]],
             now: Callable[[], float]) -> web.Application:
    """`latest`: the last snapshot; `fresh(T)`: one whose round began at or after T (`now`: the same clock)."""
    async def metrics_handler(request: web.Request) -> web.Response:
        body = latest().rendered("metrics", metrics.render)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def status_handler(request: web.Request) -> web.Response:
        after = request.query.get("after")
        if after is None:
            return web.Response(body=latest().rendered("status", status.render_status), content_type=JSON)
        try:
            t = parse_after(after, now)
        except ValueError as e:
            return _error(400, str(e))
        try:
            snap = await fresh(t)
        except TimeoutError:
            return _error(503, f"no collection round began at or after {t:.3f} within {FRESH_TIMEOUT:g} s "
                               f"(the ASR probe or a collector hangs)")
        return web.Response(body=snap.rendered("status", status.render_status), content_type=JSON)

    async def model_handler(request: web.Request) -> web.Response:
        return web.Response(body=latest().rendered("model", status.render_model), content_type=JSON)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/v1/status", status_handler)
    app.router.add_get("/v1/model", model_handler)
    app.router.add_get("/healthz", healthz)
    return app
