"""One camera's path: frames -> faces -> classes -> zones and tracks -> counts. Follow a frame through here."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from binarycop.config import CameraConfig, Config, DetectorConfig, TrackingConfig
from detector import DetectorError, Faces, check_detector, make_detector
from detector.motion import reduced_motion_grey
from detector.tracking import FaceTracker
from detector.zones import Zones
from ingest import BadFrame, CameraError, Frame, SourceError, open_source, reason_message
from stats import CountRecorder

log = logging.getLogger(__name__)
STATUS_SECONDS = 1.0


class SharedClassifier:
    """One classifier for every camera: crops from concurrent frames are batched into one call.

    A call waits at most ``max_wait_ms`` for others to join its batch, and not at all once
    ``max_batch`` crops are waiting or every one of the ``callers`` (the running cameras, when
    known) has a call in. The classifier runs on one worker thread (numba's parallel kernels must
    not run concurrently); at most ``max_batch`` crops queue behind a running batch, so a camera that
    outpaces the classifier waits here, and its source drops its oldest frames (back-pressure).
    """

    def __init__(self, classifier, max_batch: int = 256, max_wait_ms: float = 20):
        self.classifier = classifier
        self.classes = classifier.classes
        self.framing = classifier.framing  # the detectors cut crops the way the network was trained
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.calls = 0
        self.callers: int | None = None  # set through expect_callers
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify")
        self._waiting: list[tuple[np.ndarray, asyncio.Future]] = []
        self._waiting_crops = 0
        self._space = asyncio.Condition()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def classify(self, crops: np.ndarray) -> np.ndarray:
        if self._task is None:
            self._task = asyncio.create_task(self._batches(), name="classify-batches")
        async with self._space:
            await self._space.wait_for(lambda: self._waiting_crops < self.max_batch)
            future = asyncio.get_running_loop().create_future()
            self._waiting.append((crops, future))
            self._waiting_crops += len(crops)
        self._wakeup.set()
        return await future

    async def _batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            deadline = loop.time() + self.max_wait
            while self._waiting_crops < self.max_batch and loop.time() < deadline and not self._everyone_in():
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), deadline - loop.time())
                except TimeoutError:
                    break
            async with self._space:
                batch, self._waiting = self._waiting, []
                self._waiting_crops = 0
                self._wakeup.clear()
                self._space.notify_all()
            if batch:
                await self._run(batch)

    def expect_callers(self, callers: int | None) -> None:
        """How many cameras call (None: unknown): a batch closes once each has a call waiting."""
        self.callers = callers

    def _everyone_in(self) -> bool:
        return self.callers is not None and len(self._waiting) >= self.callers

    async def _run(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        self.calls += 1
        try:
            classes = await loop.run_in_executor(
                self._executor, self.classifier.classify, np.concatenate([crops for crops, _ in batch])
            )
        except Exception as error:  # noqa: BLE001 - every waiting frame learns of the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for crops, future in batch:
            if not future.done():
                future.set_result(classes[start : start + len(crops)])
            start += len(crops)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


class CameraWorker:
    """Detector (on its own thread), zones and tracker of one camera."""

    def __init__(self, camera: CameraConfig, detector, tracking: TrackingConfig, classifier, recorder, preview=None):
        self.camera = camera
        self.preview = preview  # a stats.preview.PreviewStore when the setup view is on
        self.detector = detector
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"detect-{camera.name}")
        self.zones = Zones(camera.zones)
        max_misses = max(1, math.ceil(tracking.lost_after_seconds * camera.detect_fps))
        decide_after = max(1, math.ceil(tracking.decide_after_seconds * camera.detect_fps))
        self.tracker = FaceTracker(min_hits=tracking.min_hits, max_misses=max_misses, decide_after=decide_after)
        self.classifier = classifier
        self.recorder = recorder

    async def process(self, frame: Frame) -> None:
        loop = asyncio.get_running_loop()
        name = frame.camera
        try:
            started, decoded_before = time.perf_counter(), frame.decode_seconds
            faces = await loop.run_in_executor(self.executor, self._detect, frame, self.tracker.pending_boxes())
            if faces is None:  # damaged: the source counted it as failed when it would not decode
                return
            self.recorder.observe("detect", time.perf_counter() - started - (frame.decode_seconds - decoded_before))
            faces.class_ids = np.empty(0, np.int64)
            if len(faces):
                started = time.perf_counter()
                faces.class_ids = np.asarray(await self.classifier.classify(faces.crops), np.int64)
                self.recorder.observe("classify", time.perf_counter() - started)
                self.recorder.add_crops(self.classifier.classifier.backend, len(faces))
            width, height = frame.size
            faces.zone_ids = self.zones.indices_of_boxes(faces.boxes, width, height)
        except Exception as error:  # noqa: BLE001 - one bad frame must not stop the camera
            log.warning("camera %s: frame failed: %s", name, type(error).__name__)
            self.recorder.add_frames(name, "failed")
            return
        zones, classes = self.zones.labels, self.classifier.classes
        if self.preview is not None and self.preview.wants(name):  # faces pixelated as the picture is made
            names = [classes[class_id] for class_id in faces.class_ids]  # once a second at most: names are fine
            held = self.tracker.boxes()  # faces followed but not looked for in this pass (tiles, scales)
            await loop.run_in_executor(self.executor, self._offer_picture, frame, faces.boxes, names, held)
        self.recorder.add_face_counts(name, self._named(_pair_counts(faces.zone_ids, faces.class_ids, len(classes))))
        decided, visible = self.tracker.follow(faces)
        self._add_people(decided)
        self.recorder.set_visible(name, zones, classes, self._named(visible))
        self.recorder.add_frames(name, "processed")
        self.recorder.observe("decode", frame.decode_seconds)
        if frame.captured:
            self.recorder.observe("end_to_end", time.monotonic() - frame.captured, camera=name)
        self.recorder.set_camera_up(name, True)  # a frame just arrived: up, whatever the last report said
        self.recorder.set_last_frame(name, frame.timestamp)

    def _detect(self, frame: Frame, focus: np.ndarray) -> Faces | None:
        """On the detector's thread: the frame's faces, decoding it only if the detector needs its pixels (an MJPEG
        frame arrives undecoded: a still frame with nobody in view never is); None if it turns out damaged."""
        if not frame.decoded:
            faces = self.detector.detect_undecoded(lambda: reduced_motion_grey(frame.reduced_grey(), frame.size))
            if faces is not None:
                return faces
        try:
            pixels = frame.pixels
        except BadFrame:
            return None
        return self.detector.detect(pixels, with_crops=True, focus=focus)

    def _offer_picture(self, frame: Frame, boxes: np.ndarray, names: list[str], held: np.ndarray) -> None:
        """On the detector's thread: the setup picture, with every counted face, every face the tracker holds and
        everything the detector finds in the whole frame at any size (:meth:`FaceDetector.candidates`) pixelated.
        No picture at all if that search fails: a face could be left in the clear."""
        try:
            pixels = frame.pixels  # decoded here if the detector did not need it
            hide = np.concatenate([held, self.detector.candidates(pixels)])
        except Exception as error:  # noqa: BLE001 - the camera goes on; only the picture is skipped
            log.warning(
                "camera %s: setup picture skipped, face search failed: %s", self.camera.name, type(error).__name__
            )
            return
        self.preview.offer(self.camera.name, pixels, boxes, names, self.camera.zones, hide)

    def _named(self, counts: Counter) -> Counter:
        """Counts by (zone id, class id) as counts by (zone label, class name): Redis and metrics carry names."""
        zones, classes = self.zones.labels, self.classifier.classes
        return Counter({(zones[zone], classes[mask_class]): count for (zone, mask_class), count in counts.items()})

    def _add_people(self, decided: list[tuple[int, int]]) -> None:
        """People decided by the tracker, as (zone id, class id): each one vote over all their frames."""
        zones, classes = self.zones.labels, self.classifier.classes
        self.recorder.add_people(self.camera.name, [(zones[zone], classes[mask_class]) for zone, mask_class in decided])

    def close(self) -> None:
        self._add_people(self.tracker.finish())  # those still in view when the camera stops count too
        self.recorder.set_visible(self.camera.name, self.zones.labels, self.classifier.classes, {})
        self.executor.submit(self.detector.close)
        self.executor.shutdown(wait=False)


def _pair_counts(zone_ids: np.ndarray, class_ids: np.ndarray, classes: int) -> Counter:
    """How many faces of each (zone id, class id): one entry per pair present, however many faces."""
    counts = np.bincount(zone_ids * classes + class_ids)
    return Counter({divmod(int(pair), classes): int(counts[pair]) for pair in np.flatnonzero(counts)})


async def run_camera(
    camera: CameraConfig,
    detector_config: DetectorConfig,
    tracking: TrackingConfig,
    classifier: SharedClassifier,
    recorder: CountRecorder,
    preview=None,
) -> None:
    """Process the camera until its source ends (files) or the task is cancelled; ``preview``: a
    :class:`stats.preview.PreviewStore` given a recent frame now and then (the setup view)."""
    try:
        detector = await asyncio.to_thread(make_detector, camera.detector_config(detector_config), classifier.framing)
    except Exception as error:  # noqa: BLE001 - checked at start-up; a camera must never die unseen
        log.error("camera %s: detector failed to load (%s): camera not read", camera.name, type(error).__name__)
        recorder.set_camera_up(camera.name, False)
        recorder.add_frames(camera.name, "failed")
        return
    worker = CameraWorker(camera, detector, tracking, classifier, recorder, preview)
    try:
        source = open_source(camera)
        source.start()
    except SourceError as error:
        log.error("%s [%s]", error, error.reason)
        recorder.set_camera_error(
            camera.name, CameraError(error.reason, reason_message(error.reason), time.time()).as_json()
        )
        recorder.set_camera_up(camera.name, False)
        recorder.add_frames(camera.name, "failed")
        worker.close()
        return
    log.info("camera %s: reading %s", camera.name, camera.display_url)
    reporter = asyncio.create_task(_report_status(camera.name, source, recorder))
    try:
        async for frame in source.frames():
            await worker.process(frame)
    finally:
        reporter.cancel()
        source.stop()
        _take_status(camera.name, source, recorder)
        recorder.set_camera_up(camera.name, False)
        worker.close()
        log.info("camera %s: stopped", camera.name)


def detector_problems(config: Config) -> list[str]:
    """Each distinct detector the cameras use, built and run once (:func:`detector.check_detector`): what cannot
    load or run, as problems naming the cameras, for ``validate-config``, start-up and hot reload."""
    users: dict[str, tuple[DetectorConfig, list[str]]] = {}
    for camera in config.cameras:
        detector = camera.detector_config(config.detector)
        users.setdefault(detector.model_dump_json(), (detector, []))[1].append(camera.name)
    problems = []
    for detector, cameras in users.values():
        try:
            check_detector(detector)
        except DetectorError as error:
            shown = ", ".join(cameras[:5]) + (f" and {len(cameras) - 5} more" if len(cameras) > 5 else "")
            problems.append(f"detector (cameras {shown}): {error}")
    return problems


def _take_status(camera: str, source, recorder: CountRecorder) -> None:
    dropped, failed, reconnects = source.status.take()
    recorder.add_frames(camera, "dropped", dropped)
    recorder.add_frames(camera, "failed", failed)
    recorder.add_reconnects(camera, reconnects)
    error = source.status.error.current
    recorder.set_camera_error(camera, error.as_json() if error is not None else None)
    recorder.set_camera_up(camera, source.status.up)


async def _report_status(camera: str, source, recorder: CountRecorder) -> None:
    """The watchdog's view, every second: up or down, frames lost, reconnects."""
    while True:
        _take_status(camera, source, recorder)
        await asyncio.sleep(STATUS_SECONDS)
