"""The HTTP face of the counts: status page, its JSON, /metrics, probes. All read from Redis.

Used by ``serve`` (beside its cameras) and by ``exporter`` (alone, for Prometheus, any number
of them: they all read the same Redis and agree).

``/metrics`` and ``/api/status`` are rendered at most once per :data:`RENDER_EVERY_SECONDS`, each render shared by
every request that comes meanwhile, and their JSON made on a worker thread: however many clients read them, the
event loop that feeds the cameras spends a bounded time on them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from stats.exporter import make_registry
from stats.history import check_bucket, read_history
from stats.listener import IDLE_TIMEOUT_SECONDS, Listener
from stats.outage import OutageLog
from stats.redis_store import read_counts
from stats.snapshot import clean_counts
from stats.status import CHART_MINUTES, PAGE, PAGE_POLICY, camera_status, status_json
from stats.today import TodayPeople

log = logging.getLogger(__name__)
BAD_LOGGED_MAX = 1000  # distinct bad Redis fields logged (each once); the counter counts them all
RENDER_EVERY_SECONDS = 1.0  # /metrics and /api/status: a copy younger than this is served as it is


@dataclass(frozen=True)
class Rendered:
    """A response's parts, kept to answer the requests of the next second."""

    status: int
    body: bytes
    content_type: str

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, headers={"Content-Type": self.content_type})


class CountsWeb:
    """``not_ready()`` returns a reason while the process is not ready (besides Redis), else None;
    ``idle_timeout`` closes connections that send no whole request for that long; ``local()`` says what only this
    process knows of the cameras it runs (camera -> redacted url, detector, model), ``preview_url`` where its setup
    view is (None: off), ``refused()`` the batches Redis refused by key, ``peers()`` what its helper processes
    report of themselves (:meth:`binarycop.ingesters.HelperIngesters.reports`). An ingester also gives
    ``local_counts()`` (its own gauges, as Redis would hold them) and ``local_history()`` (minute -> its counts not
    yet in Redis):
    ``/metrics`` and ``/api/status`` fall back to them while Redis is away, the latter marked ``"source": "local"``."""

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
        local_counts: Callable[[], dict] | None = None,
        local_history: Callable[[], dict] = dict,
        refused: Callable[[], dict[str, int]] = dict,
        peers: Callable[[], dict[str, dict]] = dict,
        render_every: float = RENDER_EVERY_SECONDS,
    ):
        self.local_counts = local_counts
        self.local_history = local_history
        self.local = local
        self.preview_url = preview_url
        self.client = client
        self.counts_in_metrics = counts_in_metrics
        self.redis_display = redis_display
        self.not_ready = not_ready
        self.idle_timeout = idle_timeout
        self.registry, self.collector = make_registry(pending, local_counts, refused, peers)
        self._outage = OutageLog(log, f"status page and /metrics ({redis_display})")
        self.listener = Listener()
        self._bad_logged: set[tuple[str, str]] = set()
        self.today = TodayPeople()
        self.render_every = render_every
        self._rendered: dict[str, tuple[float, Rendered]] = {}
        self._rendering: dict[str, asyncio.Future] = {}

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
            self._outage.failed(type(error).__name__)
            return None
        self._outage.recovered()
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

    async def _cached(self, name: str, render: Callable[[], Awaitable[Rendered]]) -> web.Response:
        """The copy of ``name`` made less than :attr:`render_every` ago, or the one being made now, or a new one."""
        loop = asyncio.get_running_loop()
        made = self._rendered.get(name)
        if made is not None and loop.time() - made[0] < self.render_every:
            return made[1].response()
        if name not in self._rendering:
            self._rendering[name] = asyncio.ensure_future(render())
            self._rendering[name].add_done_callback(lambda done: self._made(name, done, loop.time()))
        return (await asyncio.shield(self._rendering[name])).response()

    def _made(self, name: str, done: asyncio.Future, when: float) -> None:
        self._rendering.pop(name, None)
        if not done.cancelled() and done.exception() is None:
            self._rendered[name] = (when, done.result())

    async def _status(self, request: web.Request) -> web.Response:
        return await self._cached("status", self._render_status)

    async def _render_status(self) -> Rendered:
        counts = await self._counts()
        now = time.time()
        history, skipped, source, today = [], 0, "redis", None
        if counts is not None:
            try:
                history, skipped = await read_history(self.client, now, CHART_MINUTES)
                day_start, day, _ = await self.today.read(self.client, now)
                today = (day_start, day)
            except (RedisError, OSError):
                counts = None
        if counts is None:
            if self.local_counts is None:
                return Rendered(503, b'{"error": "Redis unreachable"}', "application/json")
            counts, history, source = clean_counts(self.local_counts())[0], self._local_buckets(now), "local"
        self.collector.bad_values += skipped
        local = self.local()
        text = await asyncio.to_thread(self._status_text, counts, history, now, local, today, source)
        return Rendered(200, text.encode(), "application/json; charset=utf-8")

    def _status_text(self, counts: dict, history, now: float, local: dict, today, source: str) -> str:
        status = camera_status(counts, history, now, local, today)
        status["preview"] = self.preview_url
        status["source"] = source  # "local": Redis is away, these are this process's own figures
        return status_json(status)

    def _local_buckets(self, now: float) -> list:
        """The last hour's minutes as :func:`stats.history.read_history` gives them, of the counts not in Redis yet."""
        pending = self.local_history()
        this_minute = int(now // 60)
        minutes = range(this_minute - CHART_MINUTES + 1, this_minute + 1)
        return [
            (minute, check_bucket({k: str(v) for k, v in pending.get(minute, {}).items()})[0]) for minute in minutes
        ]

    async def _metrics(self, request: web.Request) -> web.Response:
        return await self._cached("metrics", self._render_metrics)

    async def _render_metrics(self) -> Rendered:
        """Totals from Redis (unless a separate exporter serves them); while Redis is away, only this
        process's own gauges (pending counts)."""
        if self.counts_in_metrics:
            counts = await self._counts()
        else:
            counts = {} if await self._ping() else None
        self.collector.redis_up = counts is not None
        self.collector.counts = counts or {}
        return Rendered(200, await asyncio.to_thread(generate_latest, self.registry), CONTENT_TYPE_LATEST)

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
