"""``binarycop bench pipeline``: how many real camera streams this machine sustains.

N HTTP MJPEG streams (1280x720, 10 fps, the bundled clip's frames in a 2x2 grid: 16 faces in
view, none between face sets, about 9 on average) are served on loopback; the whole server
reads them at detect fps 5. A count of cameras is sustained when under 1 % of the sampled
frames are dropped and the 95th percentile of capture-to-count latency is under 1 s. The
reference is decoding alone: the same streams read by the same sources, frames thrown away.

People counted are compared with the people the streams showed in the measured window: 16 per face set,
one face set every 3.5 s of stream (``people_vs_shown``). Cameras start together, so a window that is not a
multiple of 3.5 s holds a whole number of face sets more or fewer than its share (10 s: 3 sets, 105 %).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from contextlib import asynccontextmanager

import cv2
import numpy as np

from binarycop.config import (
    CameraConfig,
    ClassifierConfig,
    Config,
    DetectorConfig,
    HttpConfig,
    RedisConfig,
    detector_name,
)
from binarycop.democlip import FPS, GAP_FRAMES, SEGMENT_FRAMES, clip_frames
from binarycop.loopback_camera import MjpegCamera

DETECT_FPS = 5
MAX_DROP_RATIO = 0.01
MAX_P95_SECONDS = 1.0
WARM_UP_TIMEOUT = 30.0
PEOPLE_PER_SET = 16  # the 2x2 grid shows four copies of the clip's four faces
SET_SECONDS = (SEGMENT_FRAMES + GAP_FRAMES) / FPS  # a new face set every 3.5 s of stream


def crowd_frames() -> list[bytes]:
    """JPEGs of 1280x720 frames: the demo clip tiled 2x2."""
    jpegs = []
    for frame in clip_frames():
        grid = np.vstack([np.hstack([frame, frame[:, ::-1]]), np.hstack([frame[:, ::-1], frame])])
        jpegs.append(cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    return jpegs


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_cameras(count: int, frames: list[bytes]) -> tuple[list[MjpegCamera], list[CameraConfig]]:
    """``count`` MJPEG cameras serving ``frames`` on loopback (started), and the camera configs that read them."""
    streams = [MjpegCamera(_free_port(), frames=frames).start() for _ in range(count)]
    configs = [
        CameraConfig(name=f"cam-{i}", url=s.url, detect_fps=DETECT_FPS, stall_seconds=5) for i, s in enumerate(streams)
    ]
    return streams, configs


@asynccontextmanager
async def running_server(
    configs: list[CameraConfig], detector: DetectorConfig, classifier: ClassifierConfig | None = None
):
    """The whole server reading ``configs`` into an embedded Redis, warmed up; yields (server, embedded Redis)
    and stops both after."""
    from binarycop.server import Server
    from stats.embedded import EmbeddedRedis

    embedded = EmbeddedRedis()
    server = Server(
        Config(
            redis=RedisConfig(url=embedded.url),
            http=HttpConfig(port=0),
            cameras=configs,
            detector=detector,
            classifier=classifier or ClassifierConfig(),
        ),
        embedded.url,
    )
    try:
        await server.start()
        await _warm_up(server, len(configs))
        yield server, embedded
    finally:
        await server.stop()
        embedded.close()


async def _trial(
    cameras: int,
    seconds: float,
    decode_only: bool,
    frames: list[bytes],
    detector: DetectorConfig,
    classifier: ClassifierConfig | None = None,
) -> dict:
    from ingest import open_source
    from stats import read_counts

    streams, configs = loopback_cameras(cameras, frames)
    try:
        if decode_only:
            return await _decode_only(configs, seconds, open_source)
        async with running_server(configs, detector, classifier) as (server, _):
            await server.recorder.flush()
            before = await read_counts(server.client)
            started = time.monotonic()
            await asyncio.sleep(seconds)
            await server.recorder.flush()
            after = await read_counts(server.client)
            elapsed = time.monotonic() - started
        return _summary(before, after, elapsed, cameras)
    finally:
        for stream in streams:
            stream.stop()


async def _warm_up(server, cameras: int, timeout: float = WARM_UP_TIMEOUT) -> None:
    """Until every camera has processed a few frames (detectors built, streams connected), then 2 s more."""
    from stats import read_counts

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        await server.recorder.flush()
        frames = (await read_counts(server.client)).get("binarycop:frames", {})
        warm = sum(1 for key, value in frames.items() if key.endswith("|processed") and int(value) >= 3)
        if warm >= cameras:
            break
    await asyncio.sleep(2)


async def _decode_only(configs, seconds: float, open_source) -> dict:
    sources = [open_source(c) for c in configs]
    for source in sources:
        source.start()
    taken = [0] * len(sources)

    async def drain(index, source):
        async for _ in source.frames():
            taken[index] += 1

    tasks = [asyncio.create_task(drain(i, s)) for i, s in enumerate(sources)]
    await asyncio.sleep(3)
    for source in sources:
        source.status.take()
    start_taken = sum(taken)
    await asyncio.sleep(seconds)
    dropped = sum(source.status.take()[0] for source in sources)
    processed = sum(taken) - start_taken
    for source in sources:
        source.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    total = processed + dropped
    return {
        "processed": processed,
        "dropped": dropped,
        "drop_ratio": dropped / total if total else 1.0,
        "p95_latency_s": 0.0,
        "crops_per_s": 0.0,
    }


def processed_frames(before: dict, after: dict) -> int:
    """Frames processed between two :func:`stats.read_counts` snapshots, over every camera."""
    return _outcome_total(_delta(before, after, "binarycop:frames"), "processed")


def _outcome_total(frames: dict[str, int], outcome: str) -> int:
    """Frames of ``outcome`` over every camera, from ``camera|outcome`` counts."""
    return sum(count for key, count in frames.items() if key.endswith(f"|{outcome}"))


def _delta(before: dict, after: dict, key: str) -> dict[str, int]:
    old = before.get(key, {})
    return {name: int(value) - int(old.get(name, 0)) for name, value in after.get(key, {}).items()}


def _summary(before: dict, after: dict, elapsed: float, cameras: int) -> dict:
    from stats.schema import STAGE_BUCKETS

    frames = _delta(before, after, "binarycop:frames")
    processed, dropped = _outcome_total(frames, "processed"), _outcome_total(frames, "dropped")
    stages = _delta(before, after, "binarycop:stage_duration")
    counts = [stages.get(f"end_to_end|{i}", 0) for i in range(len(STAGE_BUCKETS) + 1)]
    total = sum(counts)
    p95 = float("inf")
    running = 0
    for bound, count in zip((*STAGE_BUCKETS, float("inf")), counts):
        running += count
        if total and running >= 0.95 * total:
            p95 = bound  # the bucket's upper bound: a conservative p95
            break
    crops = sum(_delta(before, after, "binarycop:classifier_crops").values())
    classified_by = sorted(name for name, count in after.get("binarycop:classifier_crops", {}).items() if int(count))
    people = sum(_delta(before, after, "binarycop:people").values())
    shown = cameras * PEOPLE_PER_SET * elapsed / SET_SECONDS
    seen = processed + dropped
    return {
        "classified_by": classified_by,  # the backends that classified crops since the start (warm-up included)
        "processed": processed,
        "dropped": dropped,
        "drop_ratio": dropped / seen if seen else 1.0,
        "p95_latency_s": p95,
        "crops_per_s": crops / elapsed,
        "people": people,
        "people_vs_shown": people / shown if shown else None,
    }


def _sustained(result: dict, decode_only: bool) -> bool:
    if result["processed"] == 0:
        return False
    return result["drop_ratio"] < MAX_DROP_RATIO and (decode_only or result["p95_latency_s"] < MAX_P95_SECONDS)


def search(
    decode_only: bool,
    seconds: float,
    frames: list[bytes],
    cameras: int | None,
    limit: int,
    detector: DetectorConfig | None = None,
    classifier: ClassifierConfig | None = None,
) -> tuple[int, dict]:
    """Largest camera count sustained (doubling, then bisection), with the figures of that run."""

    def run(n: int) -> dict:
        result = asyncio.run(_trial(n, seconds, decode_only, frames, detector or DetectorConfig(), classifier))
        kind = "decode only" if decode_only else "pipeline"
        people = result.get("people_vs_shown")
        print(
            f"{kind}: {n} cameras -> drop {result['drop_ratio']:.3%}, p95 {result['p95_latency_s']} s, "
            f"{result['crops_per_s']:.0f} crops/s" + (f", people {people:.0%} of shown" if people is not None else ""),
            file=sys.stderr,
        )
        return result

    if cameras is not None:
        result = run(cameras)
        return (cameras if _sustained(result, decode_only) else 0), result
    good, good_result, bad = 0, {}, None
    n = 1
    while n <= limit:
        result = run(n)
        if not _sustained(result, decode_only):
            bad = n
            break
        good, good_result = n, result
        n *= 2
    high = bad if bad is not None else limit + 1
    while high - good > 1:
        middle = (good + high) // 2
        result = run(middle)
        if _sustained(result, decode_only):
            good, good_result = middle, result
        else:
            high = middle
    return good, good_result


def bench_pipeline(
    cameras: int | None = None,
    seconds: float = 14,
    limit: int = 64,
    detectors: list[DetectorConfig] | None = None,
    classifiers: list[ClassifierConfig] | None = None,
) -> dict:
    """Cameras sustained with each detector and each classifier beside decoding alone (searched once: it is the
    same for all). Figures of the first pair at the top level; with several, each under ``detectors``."""
    pairs = [(d, c) for d in detectors or [DetectorConfig()] for c in classifiers or [ClassifierConfig()]]
    frames = crowd_frames()
    figures = []
    for detector, classifier in pairs:
        sustained, result = search(False, seconds, frames, cameras, limit, detector, classifier)
        p95 = result.get("p95_latency_s", float("inf"))
        figures.append(
            {
                "detector": detector_name(detector),
                "classifier": f"{classifier.backend}:{classifier.model}",
                "classified_by": result.get("classified_by", []),
                "cameras_sustained": sustained,
                "drop_ratio": result.get("drop_ratio", 1.0),
                "p95_latency_s": p95 if math.isfinite(p95) else None,  # None: no frame got through (JSON has no inf)
                "crops_per_s": result.get("crops_per_s", 0.0),
                "people_vs_shown": result.get("people_vs_shown"),
            }
        )
    decode_cameras, _ = search(True, seconds, frames, cameras, limit)
    first = figures[0]["cameras_sustained"]
    for figure in figures:
        figure["decode_only_cameras"] = decode_cameras
        figure["cameras_vs_first"] = figure["cameras_sustained"] / first if first else None
    result = dict(figures[0])
    if len(figures) > 1:
        result["detectors"] = figures
    return result
