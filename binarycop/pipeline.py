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
STATUS_SECONDS = 1.0


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
    """Process the camera until its source ends (files) or the task is cancelled."""
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
    reporter = asyncio.create_task(_report_status(camera.name, source, recorder))
    try:
        async for frame in source.frames():
            await _process(frame, detector, detect_executor, classifier, recorder)
    finally:
        reporter.cancel()
        source.stop()
        _take_status(camera.name, source, recorder)
        recorder.set_camera_up(camera.name, False)
        detect_executor.submit(detector.close)
        detect_executor.shutdown(wait=False)
        log.info("camera %s: stopped", camera.name)


def _take_status(camera: str, source, recorder: CountRecorder) -> None:
    dropped, failed, reconnects = source.status.take()
    recorder.add_frames(camera, "dropped", dropped)
    recorder.add_frames(camera, "failed", failed)
    recorder.add_reconnects(camera, reconnects)
    recorder.set_camera_up(camera, source.status.up)


async def _report_status(camera: str, source, recorder: CountRecorder) -> None:
    """The watchdog's view, every second: up or down, frames lost, reconnects."""
    while True:
        _take_status(camera, source, recorder)
        await asyncio.sleep(STATUS_SECONDS)


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
    recorder.set_camera_up(frame.camera, True)  # a frame just arrived: up, whatever the last status report said
