"""The HTTP face of the counts: status page, its JSON, /metrics, probes. All read from Redis.

Used by ``serve`` (beside its cameras) and by ``exporter`` (alone, for Prometheus, any number
of them: they all read the same Redis and agree).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from stats.exporter import make_registry
from stats.history import read_history
from stats.listener import IDLE_TIMEOUT_SECONDS, Listener
from stats.redis_store import read_counts
from stats.snapshot import clean_counts
from stats.status import CHART_MINUTES, PAGE, PAGE_POLICY, camera_status, status_json

log = logging.getLogger(__name__)
BAD_LOGGED_MAX = 1000  # distinct bad Redis fields logged (each once); the counter counts them all


class CountsWeb:
    """``not_ready()`` returns a reason while the process is not ready (besides Redis), else None;
    ``idle_timeout`` closes connections that send no whole request for that long; ``local()`` says what only this
    process knows of the cameras it runs (camera -> redacted url, detector, model), ``preview_url`` where its setup
    view is (None: off), ``refused()`` the batches Redis refused by key."""

    def __init__(
        self,
        client,
        redis_display: str,
        pending: Callable[[], int] = lambda: 0,
        not_ready: Callable[[], str | None] = lambda: None,
        counts_in_metrics: bool = True,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        local: Callable[[], dict[str, dict]] = dict,
        preview_url: str | None = None,
        refused: Callable[[], dict[str, int]] = dict,
    ):
        self.local = local
        self.preview_url = preview_url
        self.client = client
        self.counts_in_metrics = counts_in_metrics
        self.redis_display = redis_display
        self.not_ready = not_ready
        self.idle_timeout = idle_timeout
        self.registry, self.collector = make_registry(pending, refused)
        self.listener = Listener()
        self._bad_logged: set[tuple[str, str]] = set()

    async def start(self, bind: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        await self.listener.start(app, bind, port, self.idle_timeout)

    @property
    def port(self) -> int:
        return self.listener.port

    async def stop(self) -> None:
        await self.listener.stop()

    async def _counts(self) -> dict | None:
        """What Redis holds, less the values that cannot be served (counted, and logged once each)."""
        try:
            counts = await read_counts(self.client)
        except (RedisError, OSError) as error:
            log.warning("Redis unreachable at %s: %s", self.redis_display, type(error).__name__)
            return None
        counts, bad = clean_counts(counts)
        self.collector.bad_values += len(bad)
        for key, name in bad:
            if (key, name) not in self._bad_logged and len(self._bad_logged) < BAD_LOGGED_MAX:
                self._bad_logged.add((key, name))
                log.warning("Redis value skipped, not a binarycop count: %s field %s", key, ascii(name[:200]))
        return counts

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=PAGE,
            content_type="text/html",
            headers={"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"},
        )

    async def _status(self, request: web.Request) -> web.Response:
        counts = await self._counts()
        now = time.time()
        try:
            history, skipped = await read_history(self.client, now, CHART_MINUTES)
        except (RedisError, OSError):
            counts = None
        if counts is None:
            return web.json_response({"error": "Redis unreachable"}, status=503)
        self.collector.bad_values += skipped
        status = camera_status(counts, history, now, self.local())
        status["preview"] = self.preview_url
        return web.Response(text=status_json(status), content_type="application/json")

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
