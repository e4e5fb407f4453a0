"""Server wiring: cameras -> pipeline -> Redis; HTTP: status page, /metrics, /healthz, /readyz.

Cameras run where this ingester holds their lease (:mod:`stats.leases`): one ingester alone runs them all,
several share them."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from accel import make_classifier
from binarycop import __version__
from binarycop.config import CameraConfig, Config, ConfigError, detector_name, load_config, redact_url, redis_client
from binarycop.pipeline import SharedClassifier, detector_problems, run_camera
from stats import CountRecorder
from stats.batches import BatchRefused
from stats.embedded import default_data_dir
from stats.leases import Leases
from stats.listener import ListenError
from stats.preview import PreviewStore, PreviewWeb
from stats.spool import SpoolError, counted, replay_spool, write_spool
from stats.web import CountsWeb

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0
RELOAD_POLL_SECONDS = 1.0
PEERS_WAIT_SECONDS = 120.0  # each process loads its classifier and detector first (numba compiles: seconds)


class Server:
    """Runs every configured camera and serves what Redis holds."""

    def __init__(
        self, config: Config, redis_url: str, config_path: Path | None = None, helper: bool = False, peers: int = 1
    ):
        """``helper``: one of a server's helper ingesters (:mod:`binarycop.ingesters`): no HTTP, and the spool is
        the main process's to replay. ``peers``: the ingesters started together with this one (itself included);
        its first lease round waits for their heartbeats, so that each takes its share from the start."""
        self.config = config
        self.helper = helper
        self.peers = peers
        self.config_path = config_path
        self.redis_url = redis_url
        self.client = redis_client(config.redis, redis_url)
        lease_seconds = config.ingester.lease_seconds
        self.recorder = CountRecorder(self.client, heartbeat_extra={"lease_seconds": str(lease_seconds)})
        self.leases = Leases(self.client, self.recorder.ingester, lease_seconds)
        self.tasks: list[asyncio.Task] = []
        self.camera_tasks: dict[str, asyncio.Task] = {}
        self.classifier: SharedClassifier | None = None
        self.web: CountsWeb | None = None
        self.preview = PreviewStore() if config.http.preview else None  # pictures kept in this process only
        self.preview_web: PreviewWeb | None = None
        self._cameras_lock = asyncio.Lock()
        self._stopping = False
        self._redis_warned = False
        self.spool_dir = config.ingester.spool_dir or default_data_dir() / "spool"
        self._spool_replayed = self._spool_warned = False
        self._lease_until: dict[str, float] = {}  # camera -> monotonic time by which its lease may expire
        self.exit_status = 0  # 1 when a stop lost counts (Redis away and the spool not writable)
        # What this server's helper processes report of themselves, by process (binarycop.ingesters): on /metrics
        self.peer_reports: Callable[[], dict[str, dict]] = dict
        # The file as loaded: an edit made while the server starts (the classifier loads for seconds) is seen.
        self._config_mtime = _mtime(config_path) if config_path is not None else None

    async def start(self) -> None:
        await self._check_redis()
        if self.helper:
            self._spool_replayed = True  # the main process replays the spool, once
        else:
            await self._start_http()  # first: a bad bind address or a port in use fails at once; /readyz: loading
            await self._replay_spool()
        problems = await asyncio.to_thread(detector_problems, self.config)  # never a ready server with dead cameras
        if problems:
            raise ConfigError(str(self.config_path or "config"), problems)
        classifier_config = self.config.classifier
        classifier = await asyncio.to_thread(
            make_classifier, classifier_config.backend, classifier_config.model, classifier_config.bitfile
        )
        await asyncio.to_thread(_warm_up, classifier)
        self.classifier = SharedClassifier(classifier, classifier_config.max_batch, classifier_config.max_wait_ms)
        self.recorder.set_build_info(__version__, classifier.backend, classifier.model_name)
        await self.recorder.flush()  # the first heartbeat: other ingesters count this one from now
        await self._wait_for_peers()
        await self._lease_round()
        self.tasks.append(asyncio.create_task(self._flush_forever(), name="flush"))
        self.tasks.append(asyncio.create_task(self._lease_forever(), name="leases"))
        self.tasks.append(asyncio.create_task(self._lease_watchdog(), name="lease-watchdog"))
        if self.config_path is not None:
            self.tasks.append(asyncio.create_task(self._watch_config(), name="reload"))

    async def _check_redis(self) -> None:
        """Refuse to start on settings Redis will never accept (password, TLS); start anyway while it is away
        (counts wait in memory)."""
        shown = redact_url(self.redis_url)
        try:
            await self.client.ping()
        except (AuthenticationError, ResponseError) as error:
            raise ConfigError("redis", [f"redis.password: Redis at {shown} refused the credentials: {error}"]) from None
        except (RedisError, OSError) as error:
            if "SSL" in str(error) or "certificate" in str(error).lower():
                raise ConfigError("redis", [f"redis.tls: TLS with Redis at {shown} failed: {error}"]) from None
            log.warning("Redis at %s unreachable at start, counts will wait for it: %s", shown, error)

    async def _wait_for_peers(self) -> None:
        """Until the ingesters started together with this one have all sent a heartbeat (at most
        ``PEERS_WAIT_SECONDS``): taking cameras before they are counted would take them all, and hand them over
        one lease round at a time."""
        if self.peers <= 1:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PEERS_WAIT_SECONDS
        live = 0
        while loop.time() < deadline:
            try:
                live = await self.leases.live_ingesters()
            except (RedisError, OSError):
                return  # Redis away: the lease rounds sort the cameras out once it is back
            if live >= self.peers:
                return
            await asyncio.sleep(0.5)
            await self.recorder.flush()  # keep this one's heartbeat young while waiting
        log.warning("%d of %d ingester processes up after %g s: taking cameras", live, self.peers, PEERS_WAIT_SECONDS)

    async def _replay_spool(self) -> None:
        """Counts an earlier stop kept on disk go to Redis; retried at each flush while Redis is away."""
        try:
            await replay_spool(self.client, self.spool_dir)
        except (RedisError, OSError, BatchRefused) as error:
            if not self._spool_warned:
                why = "Redis refused a batch" if isinstance(error, BatchRefused) else "Redis unreachable"
                log.warning("spool in %s not replayed yet, %s: %s", self.spool_dir, why, error)
            self._spool_warned = True  # tried again at each flush
            return
        self._spool_replayed = True

    def _start_camera(self, camera: CameraConfig) -> None:
        self.classifier.expect_callers(len(self.camera_tasks) + 1)
        self.recorder.set_site(camera.name, camera.site)
        self.camera_tasks[camera.name] = asyncio.create_task(
            run_camera(
                camera, self.config.detector, self.config.tracking, self.classifier, self.recorder, self.preview
            ),
            name=f"camera-{camera.name}",
        )
        self.recorder.set_cameras(list(self.camera_tasks))

    async def _stop_camera(self, name: str) -> None:
        task = self.camera_tasks.pop(name)
        if self.preview is not None:
            self.preview.forget(name)  # handed over or removed: no picture of it stays here
        self.classifier.expect_callers(len(self.camera_tasks))
        self.recorder.set_cameras(list(self.camera_tasks))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.recorder.release_camera(name)  # whoever runs it next reports it

    async def _lease_round(self) -> None:
        """Renew this ingester's leases, give back or take cameras (see :class:`stats.leases.Leases`)."""
        async with self._cameras_lock:
            wanted = [camera.name for camera in self.config.cameras]
            sent = time.monotonic()  # every lease renewed or taken in this round lasts at least until sent + lease
            try:
                plan = await self.leases.plan(wanted, list(self.camera_tasks))
            except (RedisError, OSError) as error:
                if not self._redis_warned:
                    log.warning("Redis unreachable, keeping cameras %s as they are: %s", list(self.camera_tasks), error)
                self._redis_warned = True
                return
            self._redis_warned = False
            by_name = {camera.name: camera for camera in self.config.cameras}
            for name in plan.stop:
                if name in self.camera_tasks:
                    log.info("camera %s: handed over (lease given back or held by another ingester)", name)
                    await self._stop_camera(name)
            for name in plan.release:  # only once its camera has stopped: never read by two ingesters at once
                await _quietly(self.leases.release(name))
            for name in plan.start:
                log.info("camera %s: lease taken by ingester %s", name, self.recorder.ingester)
                self._start_camera(by_name[name])
            self._lease_until = {name: sent + self.config.ingester.lease_seconds for name in self.camera_tasks}

    async def _lease_watchdog(self) -> None:
        """Stop a camera whose lease could not be renewed in time, a margin (a sixth of the lease) before it
        may expire: another ingester takes a lease once it expires, and two must never read one camera. An
        ingester with no other alive at its last round keeps its cameras (nobody could take them over)."""
        margin = self.config.ingester.lease_seconds / 6
        while not self._stopping:
            await asyncio.sleep(min(0.5, margin))
            if not self.leases.others_alive:
                continue
            now = time.monotonic()
            for name in [name for name in self.camera_tasks if self._lease_until.get(name, math.inf) - margin < now]:
                if name not in self.camera_tasks:  # stopped by a lease round meanwhile
                    continue
                log.warning(
                    "camera %s: lease not renewed in time (Redis unreachable or slow): stopped before it can expire, "
                    "so that another ingester can take it over",
                    name,
                )
                await self._stop_camera(name)

    async def _lease_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.ingester.lease_seconds / 3)
            await self._lease_round()

    async def apply(self, new: Config) -> list[str]:
        """Start, stop or restart cameras so they match ``new``; other sections need a restart.

        Returns what changed, as sentences for the log. Added cameras start where their lease is won."""
        changes = []
        async with self._cameras_lock:
            old = {camera.name: camera for camera in self.config.cameras}
            wanted = {camera.name: camera for camera in new.cameras}
            for name in sorted(old.keys() - wanted.keys()):
                if name in self.camera_tasks:
                    await self._stop_camera(name)
                    await _quietly(self.leases.release(name))
                self.recorder.forget_camera(name)  # leaves /metrics, the page and the alerts at the next flush
                changes.append(f"camera {name} removed")
            for name in sorted(old.keys() & wanted.keys()):
                if old[name] != wanted[name]:
                    if name in self.camera_tasks:
                        await self._stop_camera(name)
                        self._start_camera(wanted[name])
                    changes.append(f"camera {name} changed: restarted with its new settings where it runs")
            changes += [f"camera {name} added" for name in sorted(wanted.keys() - old.keys())]
            for section in ("redis", "http", "classifier", "detector", "tracking", "ingester"):
                if getattr(new, section) != getattr(self.config, section):
                    changes.append(f"section {section!r} changed: takes effect after a restart")
            self.config = self.config.model_copy(update={"cameras": list(new.cameras)})
        await self._lease_round()
        return changes

    async def _watch_config(self) -> None:
        """Hot reload: apply a valid edit of the config file; reject an invalid one, keep running."""
        last = self._config_mtime
        while not self._stopping:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            current = _mtime(self.config_path)
            if current == last:
                continue
            last = current
            await self._reload()

    async def _reload(self) -> None:
        """Read the edited file off the event loop (probes keep answering) and apply it. Whatever goes wrong is
        logged and the running config kept: the watcher outlives every edit."""
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
            problems = await asyncio.to_thread(detector_problems, new)
            if problems:
                raise ConfigError(str(self.config_path), problems)
        except ConfigError as error:
            log.error("config edit rejected, keeping the running config: %s", "; ".join(error.problems))
            return
        except Exception as error:  # noqa: BLE001 (a bug in reading must not end hot reload)
            log.error("config edit rejected, keeping the running config: cannot read it: %r", error)
            return
        try:
            changes = await self.apply(new)
        except Exception:  # noqa: BLE001
            log.exception("config edit could not be applied; cameras may be partly updated")
            return
        for change in changes:
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
        self._stopping = True  # the loops end at their next turn even if a cancellation gets lost
        pending = {*self.tasks, *self.camera_tasks.values()}
        while pending:
            # Python 3.11's timeouts can swallow a cancellation that arrives as a Redis reply does (the
            # redis client reads under one): cancel again until every task has ended.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=2)
        held = list(self.camera_tasks)
        self.camera_tasks.clear()
        if await self._flush_within(self.config.ingester.stop_wait_seconds):
            # Counts are in; hand the cameras over at once rather than after the lease time.
            await _quietly(self.leases.release_all(held))
            await _quietly(self.recorder.say_goodbye())
        else:
            self._keep_unflushed()
        if self.classifier is not None:
            self.classifier.close()
        if self.web is not None:
            await self.web.stop()
        if self.preview_web is not None:
            await self.preview_web.stop()
        await self.client.aclose()

    async def _flush_within(self, seconds: float) -> bool:
        """Flush, tried again until Redis confirms or ``seconds`` have passed; False if it never did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                if await asyncio.wait_for(self.recorder.flush(), max(deadline - loop.time(), 1.0)):
                    return True
            except TimeoutError:
                log.warning("Redis did not answer, %d counts pending", self.recorder.pending)
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(min(0.5, deadline - loop.time()))

    def _keep_unflushed(self) -> None:
        """At a stop with Redis away: what it did not take goes to the spool, or is reported lost (exit 1)."""
        batches = self.recorder.take_unflushed()
        if not batches:
            return
        waited = self.config.ingester.stop_wait_seconds
        try:
            path = write_spool(self.spool_dir, self.recorder.ingester, batches)
        except SpoolError as error:
            lost = counted(batches)
            log.error("%d counts LOST: Redis did not take them within %g s of the stop, and %s", lost, waited, error)
            self.exit_status = 1
            return
        kept = counted(batches)
        log.warning(
            "Redis did not take %d counts within %g s of the stop: kept in %s until the next start", kept, waited, path
        )

    async def _flush_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(FLUSH_SECONDS)
            if not self._spool_replayed:
                await self._replay_spool()
            await self.recorder.flush()
            if self.classifier is not None:
                self.recorder.set_build_info(
                    __version__, self.classifier.classifier.backend, self.classifier.classifier.model_name
                )

    async def _start_http(self) -> None:
        http = self.config.http
        preview_url = None
        if self.preview is not None:
            self.preview_web = PreviewWeb(self.preview)
            try:
                await self.preview_web.start(http.preview_bind, http.preview_port)
            except ListenError as error:
                error.settings = "http.preview_bind, http.preview_port"
                raise
            preview_url = f"http://{http.preview_bind}:{self.preview_web.port}/"
            log.info("setup view (faces pixelated) at %s", preview_url)
        self.web = CountsWeb(
            self.client,
            redact_url(self.redis_url),
            pending=lambda: self.recorder.pending,
            refused=lambda: self.recorder.refused,
            peers=lambda: self.peer_reports(),
            not_ready=lambda: None if self.classifier is not None else "classifier loading",
            counts_in_metrics=self.config.http.metrics == "all",
            local=self._local_cameras,
            preview_url=preview_url,
            local_counts=self.recorder.local_counts,
            local_history=self.recorder.pending_history,
        )
        bind, port = self.config.http.bind, self.config.http.port
        try:
            await self.web.start(bind, port)
        except ListenError as error:
            error.settings = "http.bind, http.port"
            raise

    def _local_cameras(self) -> dict[str, dict]:
        """What the status page shows of the cameras this process runs that Redis does not hold."""
        classifier = self.classifier.classifier if self.classifier is not None else None
        model = f"{classifier.backend}/{classifier.model_name}" if classifier is not None else None
        return {
            camera.name: {
                "url": camera.display_url,
                "detector": detector_name(camera.detector_config(self.config.detector)),
                "model": model,
                "site": camera.site,
            }
            for camera in self.config.cameras
            if camera.name in self.camera_tasks
        }


async def _quietly(step) -> None:
    """A best-effort Redis step (the lease expires by itself if Redis is away)."""
    try:
        await step
    except (RedisError, OSError) as error:
        log.warning("Redis unreachable: %s", error)


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
