"""Video files, sampled at the detect fps by the clip's own timestamps."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2

from ingest.buffer import MAX_FRAME_PIXELS, BadFrame, BufferedSource, Frame, SourceError, check_size

log = logging.getLogger(__name__)


class FileSource(BufferedSource):
    """A video file read by OpenCV; ``realtime`` paces it like a camera, else every sampled frame is kept."""

    def __init__(
        self,
        camera: str,
        path: str,
        detect_fps: float,
        loop: bool = False,
        realtime: bool = True,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
    ):
        super().__init__(camera, block_when_full=not realtime)
        self.max_frame_pixels = max_frame_pixels
        self.path = path
        self.detect_fps = detect_fps
        self.loop = loop
        self.realtime = realtime

    def start(self) -> None:
        if not Path(self.path).is_file():
            raise SourceError(f"camera {self.camera}: video file not found: {self.path}", "file_not_found")
        super().start()

    def _read(self) -> None:
        try:
            while not self._stopped.is_set():
                self._read_once()
                if not self.loop:
                    break
            if not self._stopped.is_set():
                self.status.error.set("file_ended")
                log.info("camera %s: video file %s ended (loop: false): not read again", self.camera, self.path)
        except SourceError as error:
            self.status.error.set(error.reason)
            log.error("%s", error)
        except Exception:  # noqa: BLE001 - a reader must never take the server down
            log.exception("camera %s: reader stopped", self.camera)

    def _read_once(self) -> None:
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            self.status.add(failed=1)
            raise SourceError(f"camera {self.camera}: cannot open video file {self.path}", "not_video")
        declared = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:  # the size from the file's header, before any frame is decoded
            check_size(*declared, self.max_frame_pixels)
        except BadFrame as error:
            capture.release()
            self.status.add(failed=1)
            raise SourceError(f"camera {self.camera}: video file {self.path}: {error}", "too_large") from None
        self.status.up = True
        clip_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        interval = 1.0 / self.detect_fps
        next_sample, index = 0.0, 0
        started = time.monotonic()
        try:
            while not self._stopped.is_set():
                if not capture.grab():
                    break
                position = index / clip_fps
                index += 1
                if position + 1e-9 < next_sample:
                    continue
                next_sample += interval * max(1, int((position - next_sample) // interval) + 1)
                decode_started = time.perf_counter()
                ok, pixels = capture.retrieve()
                decode_seconds = time.perf_counter() - decode_started
                if not ok or pixels is None or pixels.size == 0:
                    self.status.add(failed=1)
                    continue
                try:
                    check_size(pixels.shape[1], pixels.shape[0], self.max_frame_pixels)  # the size changed mid-file
                except BadFrame:
                    self.status.add(failed=1)
                    continue
                if self.realtime:
                    delay = started + position - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self._put(Frame(self.camera, time.time(), pixels, decode_seconds, time.monotonic()))
        finally:
            capture.release()
