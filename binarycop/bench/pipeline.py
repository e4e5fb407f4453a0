"""``binarycop bench pipeline``: how many real camera streams this machine sustains.

N HTTP MJPEG streams (1280x720, 10 fps, live: a frame whose moment passed while the bench's process was busy is
skipped, never late) are served on loopback and the whole server reads them at detect fps 5 (with its helper
ingester processes, ``ingester.processes``, as ``serve`` runs by default; ``--processes`` compares). What
they show is a scene of :mod:`binarycop.bench.scenes`: ``crowd`` (the worst case, the default: the bundled clip's
frames in a 2x2 grid, 16 faces in view, none between face sets) or ``venue`` (people coming and going over a still
background). A count of cameras is sustained when under 1 % of the sampled frames are dropped and the 95th percentile
of capture-to-count latency is under 1 s. The reference is decoding alone: the same streams read by the same sources,
frames thrown away.

People counted are compared with the people the streams showed in the measured window (``people_vs_shown``). Each
camera starts at its own point of its scene's loop (as independent cameras do), so the people shown are an expectation
over the cameras, close for many of them.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from binarycop.bench.scenes import SCENES, Scene, crowd_scene
from binarycop.config import (
    CameraConfig,
    ClassifierConfig,
    Config,
    DetectorConfig,
    HttpConfig,
    IngesterConfig,
    RedisConfig,
    detector_name,
)
from binarycop.loopback_camera import MjpegCamera
from ingest import BadFrame

DETECT_FPS = 5
MAX_DROP_RATIO = 0.01
MAX_P95_SECONDS = 1.0
WARM_UP_TIMEOUT = 30.0
DEFAULT_SECONDS = {"crowd": 14.0, "venue": 90.0}  # crowd: four face sets; venue: half its loop


def crowd_frames() -> list[bytes]:
    """JPEGs of 1280x720 frames: the demo clip tiled 2x2 (the crowd scene)."""
    return crowd_scene().frames


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_cameras(
    count: int, frames: list[bytes], scene: Scene | None = None
) -> tuple[list[MjpegCamera], list[CameraConfig]]:
    """``count`` MJPEG cameras serving ``frames`` on loopback (started; with a ``scene``, each from its own point of
    its loop), and the camera configs that read them."""
    start = scene.start_frame if scene is not None else (lambda _: 0)
    streams = [MjpegCamera(_free_port(), frames=frames, start_frame=start(i), live=True).start() for i in range(count)]
    configs = [
        CameraConfig(name=f"cam-{i}", url=s.url, detect_fps=DETECT_FPS, stall_seconds=5) for i, s in enumerate(streams)
    ]
    return streams, configs


@asynccontextmanager
async def running_server(
    configs: list[CameraConfig],
    detector: DetectorConfig,
    classifier: ClassifierConfig | None = None,
    processes: int | str = "auto",
):
    """The whole server reading ``configs`` into an embedded Redis, with its helper ingesters (``processes``, as
    ``ingester.processes``: by default one process per core, as ``serve`` runs), warmed up; yields (server,
    embedded Redis, helpers or None) and stops them all after."""
    from binarycop.ingesters import server_and_helpers, start_together, stop_together
    from stats.embedded import EmbeddedRedis

    embedded = EmbeddedRedis()
    config = Config(
        redis=RedisConfig(url=embedded.url),
        http=HttpConfig(port=0),
        cameras=configs,
        detector=detector,
        classifier=classifier or ClassifierConfig(),
        ingester=IngesterConfig(processes=processes),
    )
    server, helpers = server_and_helpers(config, embedded.url)
    try:
        await start_together(server, helpers)
        await _warm_up(server, len(configs))
        yield server, embedded, helpers
    finally:
        try:
            await stop_together(server, helpers)
        finally:
            embedded.close()


async def _trial(
    cameras: int,
    seconds: float,
    decode_only: bool,
    scene: Scene,
    detector: DetectorConfig,
    classifier: ClassifierConfig | None = None,
    processes: int | str = "auto",
) -> dict:
    from ingest import open_source
    from stats import read_counts

    streams, configs = loopback_cameras(cameras, scene.frames, scene)
    try:
        if decode_only:
            return await _decode_only(configs, seconds, open_source)
        async with running_server(configs, detector, classifier, processes) as (server, _, _):

            async def counts() -> dict:
                # One process: flushed now. With helpers, every process's counts as of its last flush (each
                # flushes once a second): as late at the window's end as at its start, on average.
                if server.peers == 1:
                    await server.recorder.flush()
                return await read_counts(server.client)

            before = await counts()
            started, served = time.monotonic(), sum(stream.served for stream in streams)
            await asyncio.sleep(seconds)
            after = await counts()
            elapsed = time.monotonic() - started
            served = sum(stream.served for stream in streams) - served
        return _summary(before, after, elapsed, scene.shown(cameras, elapsed)) | {
            "processes": server.peers,
            "stream_fps": served / elapsed / cameras,  # frames each camera wrote a second (live: FPS, or fewer)
        }
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
    loop = asyncio.get_running_loop()
    decoders = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="decode-only")

    async def drain(index, source):
        async for frame in source.frames():  # every sampled frame decoded in full, none examined
            if not frame.decoded:
                await loop.run_in_executor(decoders, _decode, frame)
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
    decoders.shutdown(wait=False, cancel_futures=True)
    total = processed + dropped
    return {
        "processed": processed,
        "dropped": dropped,
        "drop_ratio": dropped / total if total else 1.0,
        "p95_latency_s": 0.0,
        "crops_per_s": 0.0,
    }


def _decode(frame) -> None:
    try:
        _ = frame.pixels
    except BadFrame:  # counted by its source as failed
        pass


def processed_frames(before: dict, after: dict) -> int:
    """Frames processed between two :func:`stats.read_counts` snapshots, over every camera."""
    return _outcome_total(_delta(before, after, "binarycop:frames"), "processed")


def _outcome_total(frames: dict[str, int], outcome: str) -> int:
    """Frames of ``outcome`` over every camera, from ``camera|outcome`` counts."""
    return sum(count for key, count in frames.items() if key.endswith(f"|{outcome}"))


def _delta(before: dict, after: dict, key: str) -> dict[str, int]:
    old = before.get(key, {})
    return {name: int(value) - int(old.get(name, 0)) for name, value in after.get(key, {}).items()}


def _summary(before: dict, after: dict, elapsed: float, shown: float) -> dict:
    from stats.schema import FACES_KEY, STAGE_BUCKETS

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
    faces = sum(_delta(before, after, FACES_KEY).values())
    seen = processed + dropped
    return {
        "classified_by": classified_by,  # the backends that classified crops since the start (warm-up included)
        "processed": processed,
        "dropped": dropped,
        "drop_ratio": dropped / seen if seen else 1.0,
        "p95_latency_s": p95,
        "crops_per_s": crops / elapsed,
        "faces_per_frame": faces / processed if processed else None,  # face-frames counted per processed frame
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
    scene: Scene,
    cameras: int | None,
    limit: int,
    detector: DetectorConfig | None = None,
    classifier: ClassifierConfig | None = None,
    processes: int | str = "auto",
) -> tuple[int, dict]:
    """Largest camera count sustained (doubling, then bisection), with the figures of that run."""

    def run(n: int) -> dict:
        result = asyncio.run(
            _trial(n, seconds, decode_only, scene, detector or DetectorConfig(), classifier, processes)
        )
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
    seconds: float | None = None,
    limit: int = 64,
    detectors: list[DetectorConfig] | None = None,
    classifiers: list[ClassifierConfig] | None = None,
    scene: str = "crowd",
    decode_only: bool = True,
    processes: list[int | str] | None = None,
) -> dict:
    """Cameras sustained with each detector and each classifier beside decoding alone (searched once: it is the
    same for all; skipped when not ``decode_only``). Figures of the first pair at the top level; with several, each
    under ``detectors``. ``seconds``: the measured window of a trial (default: :data:`DEFAULT_SECONDS`)."""
    import os

    pairs = [
        (d, c, p)
        for d in detectors or [DetectorConfig()]
        for c in classifiers or [ClassifierConfig()]
        for p in processes or ["auto"]
    ]
    shown = SCENES[scene]()
    seconds = seconds or DEFAULT_SECONDS[scene]
    figures = []
    for detector, classifier, process_setting in pairs:
        load = os.getloadavg()[0]
        sustained, result = search(False, seconds, shown, cameras, limit, detector, classifier, process_setting)
        p95 = result.get("p95_latency_s", float("inf"))
        figures.append(
            {
                "detector": detector_name(detector),
                "classifier": f"{classifier.backend}:{classifier.model}",
                "classified_by": result.get("classified_by", []),
                "processes": process_setting,  # ingester.processes (auto: one per core, at most one per camera)
                "processes_run": result.get("processes"),  # what that came to at the reported camera count
                "stream_fps": result.get("stream_fps"),  # the bench's cameras: frames written a second, each
                "cameras_sustained": sustained,
                "drop_ratio": result.get("drop_ratio", 1.0),
                "p95_latency_s": p95 if math.isfinite(p95) else None,  # None: no frame got through (JSON has no inf)
                "crops_per_s": result.get("crops_per_s", 0.0),
                "faces_per_frame": result.get("faces_per_frame"),
                "people_vs_shown": result.get("people_vs_shown"),
                "scene": scene,
                "seconds": seconds,
                "load_at_start": round(load, 2),  # the 1-minute load average before this detector's search
            }
        )
    decode_cameras = search(True, seconds, shown, cameras, limit)[0] if decode_only else None
    first = figures[0]["cameras_sustained"]
    for figure in figures:
        figure["decode_only_cameras"] = decode_cameras
        figure["cameras_vs_first"] = figure["cameras_sustained"] / first if first else None
    result = dict(figures[0])
    if len(figures) > 1:
        result["detectors"] = figures
    return result
