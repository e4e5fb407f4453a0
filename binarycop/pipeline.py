"""One camera's path: frames -> faces -> classes -> counts. Follow a frame through here."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from binarycop.config import CameraConfig, DetectorConfig
from detector import make_detector
from ingest import SourceError, open_source
from stats import CountRecorder

log = logging.getLogger(__name__)


class SharedClassifier:
    """The classifier behind one worker thread: numba's parallel kernels must not run concurrently."""

    def __init__(self, classifier):
        self.classifier = classifier
        self.classes = classifier.classes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify")

    async def classify(self, crops: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.classifier.classify, crops)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def run_camera(
    camera: CameraConfig, detector_config: DetectorConfig, classifier: SharedClassifier, recorder: CountRecorder
) -> None:
    """Process the camera until its source ends or the task is cancelled."""
    loop = asyncio.get_running_loop()
    detect_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"detect-{camera.name}")
    detector = await loop.run_in_executor(detect_executor, make_detector, detector_config)
    try:
        source = open_source(camera)
        source.start()
    except SourceError as error:
        log.error("%s", error)
        recorder.set_camera_up(camera.name, False)
        recorder.add_frames(camera.name, "failed")
        detect_executor.shutdown(wait=False)
        return
    log.info("camera %s: reading %s", camera.name, camera.display_url)
    recorder.set_camera_up(camera.name, True)
    try:
        async for frame in source.frames():
            await _process(frame, detector, detect_executor, classifier, recorder)
            dropped, failed = source.outcomes.take()
            recorder.add_frames(camera.name, "dropped", dropped)
            recorder.add_frames(camera.name, "failed", failed)
            recorder.set_camera_up(camera.name, True)
    finally:
        source.stop()
        dropped, failed = source.outcomes.take()
        recorder.add_frames(camera.name, "dropped", dropped)
        recorder.add_frames(camera.name, "failed", failed)
        recorder.set_camera_up(camera.name, False)
        detect_executor.submit(detector.close)
        detect_executor.shutdown(wait=False)
        log.info("camera %s: stopped", camera.name)


async def _process(frame, detector, detect_executor, classifier: SharedClassifier, recorder: CountRecorder) -> None:
    loop = asyncio.get_running_loop()
    try:
        faces = await loop.run_in_executor(detect_executor, detector.detect, frame.pixels)
        if len(faces):
            indices = await classifier.classify(faces.crops)
            recorder.add_faces(frame.camera, [classifier.classes[i] for i in indices])
    except Exception as error:  # noqa: BLE001 - one bad frame must not stop the camera
        log.warning("camera %s: frame failed: %s", frame.camera, type(error).__name__)
        recorder.add_frames(frame.camera, "failed")
        return
    recorder.add_frames(frame.camera, "processed")
