"""Counts to Redis and back. Only counts, gauges and heartbeats are written; never a frame,
a face, a crop, a track id or a camera URL.

Keys (hashes; field names are '|'-joined label values, which config names cannot contain):
- ``binarycop:faces_classified`` camera|zone|mask_class -> count
- ``binarycop:frames`` camera|outcome -> count
- ``binarycop:camera_up`` camera -> 0 or 1; ``binarycop:camera_seen`` camera -> unix time
- ``binarycop:camera_reconnects`` camera -> count
- ``binarycop:people`` camera|zone|mask_class -> people counted once each
- ``binarycop:faces_visible`` camera|zone|mask_class -> faces in view now (gauge)
- ``binarycop:stage_duration`` stage|bucket-index (observations in that bucket), stage|sum_us, stage|count
- ``binarycop:classifier_crops`` backend -> crops classified
- ``binarycop:build_info`` version|backend|model -> unix time of the last report
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import Counter
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "binarycop"
FACES_KEY = f"{PREFIX}:faces_classified"
FRAMES_KEY = f"{PREFIX}:frames"
CAMERA_UP_KEY = f"{PREFIX}:camera_up"
CAMERA_SEEN_KEY = f"{PREFIX}:camera_seen"
RECONNECTS_KEY = f"{PREFIX}:camera_reconnects"
PEOPLE_KEY = f"{PREFIX}:people"
VISIBLE_KEY = f"{PREFIX}:faces_visible"
STAGES_KEY = f"{PREFIX}:stage_duration"
CROPS_KEY = f"{PREFIX}:classifier_crops"
STAGES = ("decode", "detect", "classify", "end_to_end")
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BUILD_KEY = f"{PREFIX}:build_info"
FRAME_OUTCOMES = ("processed", "dropped", "failed")
DEFAULT_ZONE = "all"


def field(*labels: str) -> str:
    return "|".join(labels)


@dataclass
class CountRecorder:
    """Accumulates counts in memory and flushes them to Redis in one pipelined round trip.

    What a failed flush could not write stays pending and goes out with the next one.
    """

    client: aioredis.Redis

    def __post_init__(self):
        self._pending: dict[str, Counter] = {
            FACES_KEY: Counter(),
            FRAMES_KEY: Counter(),
            RECONNECTS_KEY: Counter(),
            PEOPLE_KEY: Counter(),
            STAGES_KEY: Counter(),
            CROPS_KEY: Counter(),
        }
        self._gauges: dict[str, dict[str, str]] = {
            CAMERA_UP_KEY: {},
            CAMERA_SEEN_KEY: {},
            BUILD_KEY: {},
            VISIBLE_KEY: {},
        }
        self._lock = asyncio.Lock()

    def add_faces(self, camera: str, class_names: list[str], zones: list[str] | None = None) -> None:
        """Faces classified in one frame; ``zones`` gives each face's zone (default: the camera's only zone)."""
        zones = zones or [DEFAULT_ZONE] * len(class_names)
        for (zone, name), count in Counter(zip(zones, class_names)).items():
            self._pending[FACES_KEY][field(camera, zone, name)] += count

    def observe(self, stage: str, seconds: float) -> None:
        """One duration of a pipeline stage, into a histogram (bucket counts, sum in microseconds, count)."""
        bucket = bisect.bisect_left(STAGE_BUCKETS, seconds)  # == len(STAGE_BUCKETS) for +Inf
        pending = self._pending[STAGES_KEY]
        pending[field(stage, str(bucket))] += 1
        pending[field(stage, "sum_us")] += int(round(seconds * 1e6))
        pending[field(stage, "count")] += 1

    def add_crops(self, backend: str, count: int) -> None:
        if count:
            self._pending[CROPS_KEY][backend] += count

    def add_people(self, camera: str, people: list[tuple[str, str]]) -> None:
        """People confirmed by the tracker, as (zone, mask_class) pairs: each counted once."""
        for zone, name in people:
            self._pending[PEOPLE_KEY][field(camera, zone, name)] += 1

    def set_visible(self, camera: str, zones: list[str], classes: tuple[str, ...], visible: Counter) -> None:
        """Faces in view now, a full snapshot for the camera (zeros included)."""
        for zone in zones:
            for name in classes:
                self._gauges[VISIBLE_KEY][field(camera, zone, name)] = str(visible.get((zone, name), 0))

    def add_frames(self, camera: str, outcome: str, count: int = 1) -> None:
        if outcome not in FRAME_OUTCOMES:
            raise ValueError(f"frame outcome {outcome!r} is not one of {FRAME_OUTCOMES}")
        if count:
            self._pending[FRAMES_KEY][field(camera, outcome)] += count

    def add_reconnects(self, camera: str, count: int) -> None:
        if count:
            self._pending[RECONNECTS_KEY][camera] += count

    def set_camera_up(self, camera: str, up: bool) -> None:
        self._gauges[CAMERA_UP_KEY][camera] = "1" if up else "0"
        self._gauges[CAMERA_SEEN_KEY][camera] = f"{time.time():.3f}"

    def set_build_info(self, version: str, backend: str, model: str) -> None:
        self._gauges[BUILD_KEY][field(version, backend, model)] = f"{time.time():.3f}"

    @property
    def pending(self) -> int:
        """Counts (faces, people, frames, reconnects) waiting to be written; timings are not counted."""
        keys = (FACES_KEY, FRAMES_KEY, RECONNECTS_KEY, PEOPLE_KEY)
        return sum(sum(self._pending[key].values()) for key in keys)

    async def flush(self) -> bool:
        """Write what is pending; False (and everything kept) if Redis cannot be reached."""
        async with self._lock:
            taken = {key: counter.copy() for key, counter in self._pending.items()}
            gauges = {key: dict(values) for key, values in self._gauges.items() if values}
            pipe = self.client.pipeline(transaction=True)
            for key, counter in taken.items():
                for name, count in counter.items():
                    pipe.hincrby(key, name, count)
            for key, values in gauges.items():
                pipe.hset(key, mapping=values)
            try:
                await pipe.execute()
            except (RedisError, OSError) as error:
                log.warning("Redis unreachable, %d counts pending: %s", self.pending, error)
                return False
            for key, counter in taken.items():
                self._pending[key].subtract(counter)
                self._pending[key] = +self._pending[key]
            return True


async def read_counts(client: aioredis.Redis) -> dict[str, dict[str, str]]:
    """Every count hash, as stored (field -> value)."""
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
        CROPS_KEY,
        BUILD_KEY,
    )
    for key in keys:
        pipe.hgetall(key)
    values = await pipe.execute()
    return {key: {_text(k): _text(v) for k, v in value.items()} for key, value in zip(keys, values)}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
