"""Counts to Redis and back, under the keys of :mod:`stats.schema`. Only counts, gauges and heartbeats are
written; never a frame, a face, a crop, a track id or a camera URL.

Exactly once: counts are sealed into numbered batches (:mod:`stats.batches`); a Lua script applies a batch whole or
not at all, only if Redis has not applied it before, and records its number in the same atomic step. A flush whose
reply was lost is retried with the same number and applied once; a batch refused because Redis holds something
else at one of its keys stays pending (logged by key, counted) until the key is fixed.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stats.batches import Batch, BatchRefused, apply_batch, empty_counts
from stats.outage import OutageLog
from stats.schema import (
    BUILD_KEY,
    CAMERA_ERROR_KEY,
    CAMERA_LATENCY_KEY,
    CAMERA_SEEN_KEY,
    CAMERA_UP_KEY,
    COUNTED_KEYS,
    CROPS_KEY,
    DEFAULT_ZONE,
    FACES_KEY,
    FRAME_OUTCOMES,
    FRAMES_KEY,
    INGESTERS_KEY,
    LAST_FRAME_KEY,
    MAX_INGESTERS,
    NO_SITE,
    PEOPLE_KEY,
    RECONNECTS_KEY,
    REMOVED_KEY,
    SITE_KEY,
    STAGE_BUCKETS,
    STAGES_KEY,
    VISIBLE_KEY,
    field,
    ingester_key,
    sequence_key,
)

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30


def new_ingester_id() -> str:
    """Host, process and a random suffix: unique across restarts and machines, and says where it runs."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _observe(pending: Counter, label: str, seconds: float) -> None:
    bucket = bisect.bisect_left(STAGE_BUCKETS, seconds)  # == len(STAGE_BUCKETS) for +Inf
    pending[field(label, str(bucket))] += 1
    pending[field(label, "sum_us")] += int(round(seconds * 1e6))
    pending[field(label, "count")] += 1


class CountRecorder:
    """Accumulates counts in memory and writes them to Redis exactly once, in pipelined batches.

    While Redis is unreachable, counts keep accumulating (memory is bounded: one counter per configured
    camera, zone and class, whatever the outage's length) and ``pending`` says how many wait. A batch that
    may or may not have reached Redis is retried under its own number until Redis confirms it.
    """

    def __init__(
        self, client: aioredis.Redis, ingester: str | None = None, heartbeat_extra: dict[str, str] | None = None
    ):
        """``heartbeat_extra``: fields added to this ingester's heartbeat (what ``binarycop status`` shows)."""
        self.client = client
        self.ingester = ingester or new_ingester_id()
        self.started = time.time()
        self.cameras: list[str] = []
        self._open = empty_counts()
        self._history: dict[int, Counter] = {}
        self._sealed: Batch | None = None
        self._seq = 0
        self._gauges: dict[str, dict[str, str]] = {
            CAMERA_UP_KEY: {},
            CAMERA_SEEN_KEY: {},
            BUILD_KEY: {},
            VISIBLE_KEY: {},
            SITE_KEY: {},
            CAMERA_ERROR_KEY: {},
            LAST_FRAME_KEY: {},
        }
        self._build: dict[str, str] = {}
        self._removed: dict[str, list[str]] = {}  # camera -> its gauge fields still to delete from Redis
        self.heartbeat_extra = dict(heartbeat_extra or {})
        self.refused: Counter = Counter()  # batch refusals by key (a metric): Redis held something else there
        self._refusal_logged: tuple[str, str] | None = None
        self._lock = asyncio.Lock()
        self._outage = OutageLog(log, "counts")

    def set_cameras(self, cameras: list[str]) -> None:
        """The cameras this ingester runs now (its heartbeat lists them)."""
        self.cameras = sorted(cameras)

    def add_faces(self, camera: str, class_names: list[str], zones: list[str] | None = None) -> None:
        """Faces classified in one frame; ``zones`` gives each face's zone (default: the camera's only zone)."""
        zones = zones or [DEFAULT_ZONE] * len(class_names)
        self.add_face_counts(camera, Counter(zip(zones, class_names)))

    def add_face_counts(self, camera: str, counts: Mapping[tuple[str, str], int]) -> None:
        """Faces classified in one frame, counted by (zone, mask_class)."""
        history = self._history_now()
        for (zone, name), count in counts.items():
            self._open[FACES_KEY][field(camera, zone, name)] += count
            history[field("faces", camera, zone, name)] += count

    def observe(self, stage: str, seconds: float, camera: str | None = None) -> None:
        """One duration of a pipeline stage, into a histogram (bucket counts, sum in microseconds, count); an
        ``end_to_end`` one of ``camera`` also into that camera's latency histogram."""
        _observe(self._open[STAGES_KEY], stage, seconds)
        if camera is not None and stage == "end_to_end":
            _observe(self._open[CAMERA_LATENCY_KEY], camera, seconds)

    def add_crops(self, backend: str, count: int) -> None:
        if count:
            self._open[CROPS_KEY][backend] += count

    def add_people(self, camera: str, people: list[tuple[str, str]]) -> None:
        """People confirmed by the tracker, as (zone, mask_class) pairs: each counted once."""
        history = self._history_now() if people else None
        for zone, name in people:
            self._open[PEOPLE_KEY][field(camera, zone, name)] += 1
            history[field("people", camera, zone, name)] += 1

    def set_visible(self, camera: str, zones: list[str], classes: tuple[str, ...], visible: Counter) -> None:
        """Faces in view now, a full snapshot for the camera (zeros included)."""
        for zone in zones:
            for name in classes:
                self._gauges[VISIBLE_KEY][field(camera, zone, name)] = str(visible.get((zone, name), 0))

    def add_frames(self, camera: str, outcome: str, count: int = 1) -> None:
        if outcome not in FRAME_OUTCOMES:
            raise ValueError(f"frame outcome {outcome!r} is not one of {FRAME_OUTCOMES}")
        if count:
            self._open[FRAMES_KEY][field(camera, outcome)] += count
            self._history_now()[field("frames", camera, outcome)] += count

    def add_reconnects(self, camera: str, count: int) -> None:
        if count:
            self._open[RECONNECTS_KEY][camera] += count
            self._history_now()[field("reconnects", camera)] += count

    def release_camera(self, camera: str) -> list[str]:
        """This ingester no longer runs the camera (handed over, removed, restarted): its gauges are not written
        from here any more (another ingester's would be overwritten by stale ones); returns the fields dropped."""
        dropped = []
        for values in self._gauges.values():
            for name in [name for name in values if name == camera or name.startswith(f"{camera}|")]:
                del values[name]
                dropped.append(name)
        return dropped

    def forget_camera(self, camera: str) -> None:
        """The camera left the config: its gauges leave Redis at the next flush and it is marked removed there, so
        ``/metrics``, the page and the alerts drop it at once (its counters stay, hidden, until it runs again)."""
        self._removed.setdefault(camera, [camera]).extend(self.release_camera(camera))

    def set_camera_up(self, camera: str, up: bool) -> None:
        self._removed.pop(camera, None)  # running (again): not removed
        self._gauges[CAMERA_UP_KEY][camera] = "1" if up else "0"
        self._gauges[CAMERA_SEEN_KEY][camera] = f"{time.time():.3f}"

    def set_camera_error(self, camera: str, error: dict | None) -> None:
        """Why the camera gives no frames now ({"reason", "message", "since"}), or None: it has no error."""
        self._gauges[CAMERA_ERROR_KEY][camera] = json.dumps(error, separators=(",", ":")) if error else ""

    def set_last_frame(self, camera: str, at: float) -> None:
        """The camera delivered a frame at ``at`` (unix time)."""
        self._gauges[LAST_FRAME_KEY][camera] = f"{at:.3f}"

    def set_site(self, camera: str, site: str | None) -> None:
        self._gauges[SITE_KEY][camera] = site or NO_SITE

    def set_build_info(self, version: str, backend: str, model: str) -> None:
        self._build = {"version": version, "backend": backend, "model": model}
        self._gauges[BUILD_KEY][field(version, backend, model)] = f"{time.time():.3f}"

    def _history_now(self) -> Counter:
        return self._history.setdefault(int(time.time() // 60), Counter())

    @property
    def pending(self) -> int:
        """Counts (faces, people, frames, reconnects) not yet confirmed by Redis; timings are not counted."""
        batches = [self._open] + ([self._sealed.counts] if self._sealed else [])
        return sum(sum(batch[key].values()) for batch in batches for key in COUNTED_KEYS)

    def _seal(self) -> None:
        if self._sealed is None and (any(self._open.values()) or self._history):
            self._seq += 1
            self._sealed = Batch(self._seq, self._open, self._history)
            self._open, self._history = empty_counts(), {}

    async def flush(self) -> bool:
        """Write what is pending and the latest gauges and heartbeat; False (everything kept) if Redis is away or
        refuses the batch."""
        async with self._lock:
            try:
                for _ in range(2):  # the batch left from an outage, then what came in meanwhile
                    self._seal()
                    if self._sealed is None:
                        break
                    await self._apply(self._sealed)
                    self._sealed = None
                await self._write_gauges()
            except BatchRefused as refusal:
                self._refusal(refusal)
                await self._write_gauges_quietly()
                return False
            except ValueError as error:  # a count this version would never make: kept, said, never sent
                log.error("batch %d not written, it is not binarycop's schema: %s", self._sealed.seq, error)
                return False
            except (RedisError, OSError) as error:
                self._outage.failed(f"{self.pending} counts wait in memory: {error}")
                return False
            self._outage.recovered("the counts that waited are written")
            self._refusal_logged = None
            return True

    async def _apply(self, batch: Batch) -> None:
        """Apply this process's batch: the first send always writes (nothing of it can be in Redis yet), a retry
        is skipped if Redis applied it before its reply was lost. A sequence key that held anything but the
        previous batch's number was written by someone else: said, and the counts applied all the same."""
        result = await apply_batch(self.client, self.ingester, batch, "retry" if batch.sent else "first")
        if result.applied and result.last not in (0, batch.seq - 1):
            key = sequence_key(self.ingester)
            last = batch.seq - 1
            log.error("Redis key %s held %d, not this ingester's last batch %d: overwritten", key, result.last, last)
            self.refused[key] += 1

    def _refusal(self, refusal: BatchRefused) -> None:
        self.refused[refusal.label] += 1
        if self._refusal_logged != (refusal.key, refusal.why):  # once per cause, not every second
            self._refusal_logged = (refusal.key, refusal.why)
            log.error(
                "%s: batch %d not written (nothing of it applied), %d counts pending until the key is fixed",
                refusal,
                self._sealed.seq,
                self.pending,
            )

    async def _write_gauges_quietly(self) -> None:
        try:
            await self._write_gauges()
        except (RedisError, OSError) as error:
            log.warning("Redis refused the gauges and heartbeat: %s", error)

    def take_unflushed(self) -> list[Batch]:
        """Every count not confirmed by Redis, as numbered batches (the one in flight, then what came after),
        handed over for keeping elsewhere (:mod:`stats.spool`); ``pending`` is 0 afterwards."""
        batches = [self._sealed] if self._sealed else []
        self._sealed = None
        self._seal()
        batches += [self._sealed] if self._sealed else []
        self._sealed = None
        return batches

    def _report_cameras(self, now: float) -> None:
        """Every camera this ingester runs is reported as seen now, one whose file has ended too."""
        for camera in self.cameras:
            if camera in self._gauges[CAMERA_UP_KEY]:
                self._gauges[CAMERA_SEEN_KEY][camera] = f"{now:.3f}"

    def local_counts(self) -> dict[str, dict[str, str]]:
        """This process's own gauges (its cameras' up, errors, last frames, sites) in the form of
        :func:`read_counts`, for ``/metrics`` and the page while Redis is away; counters are not in it."""
        now = time.time()
        self._report_cameras(now)
        counts = {key: dict(values) for key, values in self._gauges.items() if key != BUILD_KEY}
        counts[INGESTERS_KEY] = {self.ingester: f"{now:.3f}"}
        return counts

    def pending_history(self) -> dict[int, Counter]:
        """The minute buckets not yet in Redis (what was counted during an outage), minute -> field -> count."""
        history: dict[int, Counter] = {}
        for batch in ([self._sealed.history] if self._sealed else []) + [self._history]:
            for minute, counter in batch.items():
                history.setdefault(minute, Counter()).update(counter)
        return history

    async def _write_gauges(self) -> None:
        now = time.time()
        self._report_cameras(now)
        pipe = self.client.pipeline(transaction=True)
        for key, values in self._gauges.items():
            if values:
                pipe.hset(key, mapping=dict(values))
        heartbeat = {
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "started": f"{self.started:.3f}",
            "seen": f"{now:.3f}",
            "pending": str(self.pending),
            "cameras": ",".join(sorted(self.cameras)),
            **self._build,
            **self.heartbeat_extra,
        }
        removed = dict(self._removed)
        for camera, fields in removed.items():
            for key in self._gauges:
                pipe.hdel(key, *fields)
            pipe.hset(REMOVED_KEY, camera, f"{now:.3f}")
        if self._gauges[CAMERA_UP_KEY]:
            pipe.hdel(REMOVED_KEY, *self._gauges[CAMERA_UP_KEY])  # cameras running here are not removed
        pipe.hset(ingester_key(self.ingester), mapping=heartbeat)
        pipe.expire(ingester_key(self.ingester), HEARTBEAT_SECONDS * 10)
        pipe.zadd(INGESTERS_KEY, {self.ingester: now})
        pipe.zremrangebyscore(INGESTERS_KEY, "-inf", now - HEARTBEAT_SECONDS * 10)
        pipe.zremrangebyrank(INGESTERS_KEY, 0, -MAX_INGESTERS - 1)  # bounded, whatever others add
        await pipe.execute()
        for camera in removed:
            if self._removed.get(camera) is removed[camera]:
                del self._removed[camera]

    async def say_goodbye(self) -> None:
        """A clean shutdown: this ingester leaves the list at once (its counts were flushed before)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(INGESTERS_KEY, self.ingester)
        pipe.delete(ingester_key(self.ingester))
        await pipe.execute()


async def read_counts(client: aioredis.Redis) -> dict[str, dict[str, str]]:
    """Every count hash, as stored (field -> value), and the ingesters' heartbeats (id -> unix time)."""
    pipe = client.pipeline(transaction=False)
    keys = (
        FACES_KEY,
        FRAMES_KEY,
        CAMERA_UP_KEY,
        CAMERA_SEEN_KEY,
        RECONNECTS_KEY,
        PEOPLE_KEY,
        VISIBLE_KEY,
        STAGES_KEY,
        CAMERA_LATENCY_KEY,
        CROPS_KEY,
        BUILD_KEY,
        SITE_KEY,
        REMOVED_KEY,
        CAMERA_ERROR_KEY,
        LAST_FRAME_KEY,
    )
    for key in keys:
        pipe.hgetall(key)
    pipe.zrange(INGESTERS_KEY, 0, -1, withscores=True)
    *values, ingesters = await pipe.execute()
    counts = {key: {text(k): text(v) for k, v in value.items()} for key, value in zip(keys, values)}
    counts[INGESTERS_KEY] = {text(name): repr(score) for name, score in ingesters}
    return counts


def text(value) -> str:
    """A Redis reply (bytes) as str."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)  # bad bytes: checked later
