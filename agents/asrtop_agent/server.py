"""The agent's HTTP face: /metrics, /v1/status, /v1/model, /healthz — all served from the last snapshot.

Bodies are rendered once per snapshot (by the collection loop right after collecting, else on the first
scrape), so a scrape costs a dictionary lookup and a socket write.
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web

from . import metrics, status
from .snapshot import Snapshot

try:  # prometheus_client >= 0.22 names the text format explicitly
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as METRICS_CONTENT_TYPE
except ImportError:  # pragma: no cover
    from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE

JSON = "application/json"


def make_app(latest: Callable[[], Snapshot]) -> web.Application:
    async def metrics_handler(request: web.Request) -> web.Response:
        body = latest().rendered("metrics", metrics.render)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def status_handler(request: web.Request) -> web.Response:
        return web.Response(body=latest().rendered("status", status.render_status), content_type=JSON)

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
