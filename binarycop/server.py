"""Server wiring: cameras -> pipeline -> Redis; HTTP: status page, /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import redis.asyncio as aioredis

from accel import make_classifier
from binarycop import __version__
from binarycop.config import CameraConfig, Config, ConfigError, load_config, redact_url
from binarycop.pipeline import SharedClassifier, run_camera
from stats import CountRecorder
from stats.web import CountsWeb

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0
RELOAD_POLL_SECONDS = 1.0


class Server:
    """Runs every configured camera and serves what Redis holds."""

    def __init__(self, config: Config, redis_url: str, config_path: Path | None = None):
        self.config = config
        self.config_path = config_path
        self.redis_url = redis_url
        self.client = aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.recorder = CountRecorder(self.client)
        self.tasks: list[asyncio.Task] = []
        self.camera_tasks: dict[str, asyncio.Task] = {}
        self.classifier: SharedClassifier | None = None
        self.web: CountsWeb | None = None

    async def start(self) -> None:
        classifier_config = self.config.classifier
        classifier = await asyncio.to_thread(make_classifier, classifier_config.backend, classifier_config.model)
        await asyncio.to_thread(_warm_up, classifier)
        self.classifier = SharedClassifier(classifier, classifier_config.max_batch, classifier_config.max_wait_ms)
        self.recorder.set_build_info(__version__, classifier.backend, classifier.model_name)
        await self._start_http()
        for camera in self.config.cameras:
            self._start_camera(camera)
        self.tasks.append(asyncio.create_task(self._flush_forever(), name="flush"))
        if self.config_path is not None:
            self.tasks.append(asyncio.create_task(self._watch_config(), name="reload"))

    def _start_camera(self, camera: CameraConfig) -> None:
        self.classifier.callers = len(self.camera_tasks) + 1
        self.camera_tasks[camera.name] = asyncio.create_task(
            run_camera(camera, self.config.detector, self.config.tracking, self.classifier, self.recorder),
            name=f"camera-{camera.name}",
        )

    async def _stop_camera(self, name: str) -> None:
        task = self.camera_tasks.pop(name)
        self.classifier.callers = len(self.camera_tasks)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def apply(self, new: Config) -> list[str]:
        """Start, stop or restart cameras so they match ``new``; other sections need a restart.

        Returns what changed, as sentences for the log."""
        old = {camera.name: camera for camera in self.config.cameras}
        wanted = {camera.name: camera for camera in new.cameras}
        changes = []
        for name in sorted(old.keys() - wanted.keys()):
            await self._stop_camera(name)
            changes.append(f"camera {name} removed")
        for name in sorted(old.keys() & wanted.keys()):
            if old[name] != wanted[name]:
                await self._stop_camera(name)
                self._start_camera(wanted[name])
                changes.append(f"camera {name} restarted with its new settings")
        for name in sorted(wanted.keys() - old.keys()):
            self._start_camera(wanted[name])
            changes.append(f"camera {name} added")
        for section in ("redis", "http", "classifier", "detector", "tracking"):
            if getattr(new, section) != getattr(self.config, section):
                changes.append(f"section {section!r} changed: takes effect after a restart")
        self.config = self.config.model_copy(update={"cameras": list(new.cameras)})
        return changes

    async def _watch_config(self) -> None:
        """Hot reload: apply a valid edit of the config file; reject an invalid one, keep running."""
        last = _mtime(self.config_path)
        while True:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            current = _mtime(self.config_path)
            if current == last:
                continue
            last = current
            try:
                new = load_config(self.config_path)
            except ConfigError as error:
                log.error("config edit rejected, keeping the running config: %s", "; ".join(error.problems))
                continue
            for change in await self.apply(new):
                log.info("config reloaded: %s", change)

    @property
    def port(self) -> int:
        return self.web.port

    @property
    def base_url(self) -> str:
        return f"http://{self.config.http.bind}:{self.port}"

    async def cameras_done(self) -> None:
        """Wait until every camera's source has ended (files without ``loop``)."""
        await asyncio.gather(*self.camera_tasks.values())

    async def stop(self) -> None:
        tasks = [*self.tasks, *self.camera_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.recorder.flush()
        if self.classifier is not None:
            self.classifier.close()
        if self.web is not None:
            await self.web.stop()
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
        self.web = CountsWeb(
            self.client,
            redact_url(self.redis_url),
            pending=lambda: self.recorder.pending,
            not_ready=lambda: None if self.classifier is not None else "classifier loading",
        )
        await self.web.start(self.config.http.bind, self.config.http.port)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _warm_up(classifier) -> None:
    """Compile (or load cached) kernels before the first frame arrives: a small batch (run on the calling
    thread) and a large one (the parallel path), so no camera waits seconds for a compile mid-stream."""
    import numpy as np

    for batch in (1, 64):
        classifier.classify(np.zeros((batch, 32, 32, 3), np.uint8))
