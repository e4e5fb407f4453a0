"""``binarycop bench slice``: frames per second of the whole slice on the bundled clip.

The clip is read as fast as possible (every frame sampled) through the real server path
(decode, the detector, n-CNV on the chosen backend, counts into an embedded Redis);
stage times are measured on the same frames beside it. Medians of ``--repeat`` runs. Several
detectors are run alternately in one call (the first is the anchor the others are compared to).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import cv2
import numpy as np

from binarycop.config import ClassifierConfig, DetectorConfig, detector_name
from binarycop.democlip import CLIP, FPS, demo_config


async def _slice_once(backend: str, detector: DetectorConfig) -> tuple[int, float]:
    from binarycop.server import Server
    from stats.embedded import EmbeddedRedis
    from stats.schema import FRAMES_KEY

    embedded = EmbeddedRedis()
    config = demo_config(port=0, loop=False, realtime=False)
    camera = config.cameras[0].model_copy(update={"detect_fps": FPS})
    update = {"cameras": [camera], "classifier": ClassifierConfig(backend=backend), "detector": detector}
    config = config.model_copy(update=update)
    server = Server(config, embedded.url)
    try:
        await server.start()
        started = time.perf_counter()
        await server.cameras_done()
        elapsed = time.perf_counter() - started
        await server.recorder.flush()
        frames = int(await server.client.hget(FRAMES_KEY, "demo|processed") or 0)
    finally:
        await server.stop()
        embedded.close()
    return frames, elapsed


def _decoded_clip() -> tuple[list[np.ndarray], float]:
    """The clip's frames and the median milliseconds to decode one."""
    capture = cv2.VideoCapture(str(CLIP))
    decode, frames = [], []
    while True:
        started = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            break
        decode.append(time.perf_counter() - started)
        frames.append(frame)
    return frames, 1000 * statistics.median(decode)


def _stage_times(classifier, detector_config: DetectorConfig, frames: list[np.ndarray]) -> dict[str, float]:
    from detector import make_detector

    detector = make_detector(detector_config)
    detect, classify = [], []
    for frame in frames:
        started = time.perf_counter()
        faces = detector.detect(frame)
        detect.append(time.perf_counter() - started)
        started = time.perf_counter()
        classifier.classify(faces.crops if len(faces) else np.zeros((1, 32, 32, 3), np.uint8))
        classify.append(time.perf_counter() - started)
    detector.close()
    return {
        "detect_and_crop_ms": 1000 * statistics.median(detect),
        "classify_ms": 1000 * statistics.median(classify),
    }


def bench_slice(backend: str = "cpu", repeat: int = 3, detectors: list[DetectorConfig] | None = None) -> dict:
    """Figures of the first detector at the top level; with several, each under ``detectors`` with
    its frame rate as a share of the first's (runs alternate, so load changes hit all alike)."""
    detectors = detectors or [DetectorConfig()]
    rates: list[list[float]] = [[] for _ in detectors]
    frames = 0
    for _ in range(repeat):
        for index, detector in enumerate(detectors):
            frames, elapsed = asyncio.run(_slice_once(backend, detector))
            rates[index].append(frames / elapsed)
    from accel import make_classifier

    clip, decode_ms = _decoded_clip()  # decoded once: the decoder's cost does not depend on the detector
    classifier = make_classifier(backend, "n-cnv")
    figures = []
    for detector, runs in zip(detectors, rates):
        figure = {
            "detector": detector_name(detector),
            "slice_frames_per_s": statistics.median(runs),
            "runs_frames_per_s": runs,
            "decode_ms": decode_ms,
        }
        figure.update(_stage_times(classifier, detector, clip))
        figure["speed_vs_first"] = figure["slice_frames_per_s"] / statistics.median(rates[0])
        figures.append(figure)
    result = {"backend": backend, "frames": frames, "faces_per_frame": 4, **figures[0]}
    if len(detectors) > 1:
        result["detectors"] = figures
    return result
