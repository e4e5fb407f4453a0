"""Server wiring: cameras -> pipeline -> Redis; HTTP: status page, /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from accel import make_classifier
from binarycop import __version__
from binarycop.config import Config, redact_url
from binarycop.pipeline import SharedClassifier, run_camera
from binarycop.status import PAGE, camera_status
from stats import CountRecorder, make_registry, read_counts

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0


class Server:
    """Runs every configured camera and serves what Redis holds."""

    def __init__(self, config: Config, redis_url: str):
        self.config = config
        self.redis_url = redis_url
        self.client = aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.recorder = CountRecorder(self.client)
        self.registry, self.collector = make_registry()
        self.tasks: list[asyncio.Task] = []
        self.classifier: SharedClassifier | None = None
        self.site: web.TCPSite | None = None
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        classifier_config = self.config.classifier
        classifier = await asyncio.to_thread(make_classifier, classifier_config.backend, classifier_config.model)
        await asyncio.to_thread(_warm_up, classifier)
        self.classifier = SharedClassifier(classifier)
        self.recorder.set_build_info(__version__, classifier.backend, classifier.model_name)
        await self._start_http()
        for camera in self.config.cameras:
            task = asyncio.create_task(
                run_camera(camera, self.config.detector, self.classifier, self.recorder), name=f"camera-{camera.name}"
            )
            self.tasks.append(task)
        self.tasks.append(asyncio.create_task(self._flush_forever(), name="flush"))

    @property
    def port(self) -> int:
        return self.site._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.config.http.bind}:{self.port}"

    async def cameras_done(self) -> None:
        """Wait until every camera's source has ended (files without ``loop``)."""
        await asyncio.gather(*[t for t in self.tasks if t.get_name().startswith("camera-")])

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.recorder.flush()
        if self.classifier is not None:
            self.classifier.close()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.client.aclose()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.recorder.flush()
            if self.classifier is not None:
                self.recorder.set_build_info(
                    __version__, self.classifier.classifier.backend, self.classifier.classifier.model_name
                )

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, self.config.http.bind, self.config.http.port)
        await self.site.start()

    async def _counts(self) -> dict | None:
        try:
            return await read_counts(self.client)
        except (RedisError, OSError) as error:
            log.warning("Redis unreachable at %s: %s", redact_url(self.redis_url), type(error).__name__)
            return None

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def _status(self, request: web.Request) -> web.Response:
        counts = await self._counts()
        if counts is None:
            return web.json_response({"error": "Redis unreachable"}, status=503)
        return web.json_response(camera_status(counts))

    async def _metrics(self, request: web.Request) -> web.Response:
        counts = await self._counts()
        if counts is None:
            return web.Response(status=503, text="Redis unreachable\n")
        self.collector.counts = counts
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            await self.client.ping()
        except (RedisError, OSError):
            return web.Response(status=503, text="not ready: Redis unreachable\n")
        if self.classifier is None:
            return web.Response(status=503, text="not ready: classifier loading\n")
        return web.Response(text="ready\n")


def _warm_up(classifier) -> None:
    """Compile (or load cached) kernels before the first frame arrives."""
    import numpy as np

    classifier.classify(np.zeros((1, 32, 32, 3), np.uint8))
