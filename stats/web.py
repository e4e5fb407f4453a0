"""The HTTP face of the counts: status page, its JSON, /metrics, probes. All read from Redis.

Used by ``serve`` (beside its cameras) and by ``exporter`` (alone, for Prometheus, any number
of them: they all read the same Redis and agree).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from stats.exporter import make_registry
from stats.redis_store import read_counts
from stats.status import PAGE, camera_status

log = logging.getLogger(__name__)


class CountsWeb:
    """``not_ready()`` returns a reason while the process is not ready (besides Redis), else None."""

    def __init__(
        self,
        client,
        redis_display: str,
        pending: Callable[[], int] = lambda: 0,
        not_ready: Callable[[], str | None] = lambda: None,
        counts_in_metrics: bool = True,
    ):
        self.client = client
        self.counts_in_metrics = counts_in_metrics
        self.redis_display = redis_display
        self.not_ready = not_ready
        self.registry, self.collector = make_registry(pending)
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None

    async def start(self, bind: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, bind, port)
        await self.site.start()

    @property
    def port(self) -> int:
        return self.site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _counts(self) -> dict | None:
        try:
            return await read_counts(self.client)
        except (RedisError, OSError) as error:
            log.warning("Redis unreachable at %s: %s", self.redis_display, type(error).__name__)
            return None

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def _status(self, request: web.Request) -> web.Response:
        counts = await self._counts()
        if counts is None:
            return web.json_response({"error": "Redis unreachable"}, status=503)
        return web.json_response(camera_status(counts))

    async def _metrics(self, request: web.Request) -> web.Response:
        """Totals from Redis (unless a separate exporter serves them); while Redis is away, only this
        process's own gauges (pending counts)."""
        if self.counts_in_metrics:
            counts = await self._counts()
        else:
            counts = {} if await self._ping() else None
        self.collector.redis_up = counts is not None
        self.collector.counts = counts or {}
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _ping(self) -> bool:
        try:
            await self.client.ping()
        except (RedisError, OSError):
            return False
        return True

    async def _readyz(self, request: web.Request) -> web.Response:
        if not await self._ping():
            return web.Response(status=503, text="not ready: Redis unreachable\n")
        reason = self.not_ready()
        if reason:
            return web.Response(status=503, text=f"not ready: {reason}\n")
        return web.Response(text="ready\n")
