"""Frames in: a reader thread per camera, sampled at the detect fps, into a drop-oldest buffer.

Decoding happens off the event loop. When the pipeline falls behind a live
source, the oldest waiting frame is dropped (and counted), so latency never
builds up. A file read with ``realtime: false`` blocks instead of dropping, so
every sampled frame is processed (tests, batch jobs).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)
BUFFER_FRAMES = 2


@dataclass
class Frame:
    """One decoded frame: camera name, when it was captured (seconds), BGR pixels."""

    camera: str
    timestamp: float
    pixels: np.ndarray


class SourceError(RuntimeError):
    """A source that cannot be opened (the message never contains credentials)."""


class FrameOutcomes:
    """Thread-safe tallies of frames dropped and failed before they reach the pipeline."""

    def __init__(self):
        self._lock = threading.Lock()
        self.dropped = 0
        self.failed = 0

    def take(self) -> tuple[int, int]:
        with self._lock:
            taken = self.dropped, self.failed
            self.dropped = self.failed = 0
            return taken

    def add(self, dropped: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.dropped += dropped
            self.failed += failed


class FileSource:
    """A video file read by OpenCV, sampled at ``detect_fps`` by the clip's own timestamps."""

    def __init__(self, camera: str, path: str, detect_fps: float, loop: bool = False, realtime: bool = True):
        self.camera = camera
        self.path = path
        self.detect_fps = detect_fps
        self.loop = loop
        self.realtime = realtime
        self.outcomes = FrameOutcomes()
        self._buffer: deque[Frame] = deque()
        self._ready = threading.Condition()
        self._stopped = threading.Event()
        self._finished = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not Path(self.path).is_file():
            raise SourceError(f"camera {self.camera}: video file not found: {self.path}")
        self._thread = threading.Thread(target=self._run, name=f"read-{self.camera}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._ready:
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def frames(self):
        """Async iterator of sampled frames; ends when the file ends (without ``loop``) or on stop."""
        while True:
            frame = await asyncio.to_thread(self._next_frame)
            if frame is None:
                return
            yield frame

    def _next_frame(self) -> Frame | None:
        with self._ready:
            while not self._buffer and not self._finished and not self._stopped.is_set():
                self._ready.wait(0.5)
            if self._buffer:
                frame = self._buffer.popleft()
                self._ready.notify_all()
                return frame
            return None

    def _put(self, frame: Frame) -> None:
        with self._ready:
            while not self.realtime and len(self._buffer) >= BUFFER_FRAMES and not self._stopped.is_set():
                self._ready.wait(0.5)
            if len(self._buffer) >= BUFFER_FRAMES:
                self._buffer.popleft()
                self.outcomes.add(dropped=1)
            self._buffer.append(frame)
            self._ready.notify_all()

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                self._read_once()
                if not self.loop:
                    break
        except Exception:  # noqa: BLE001 - a reader must never take the server down
            log.exception("camera %s: reader stopped", self.camera)
        finally:
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _read_once(self) -> None:
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            self.outcomes.add(failed=1)
            raise SourceError(f"camera {self.camera}: cannot open video file {self.path}")
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
                ok, pixels = capture.retrieve()
                if not ok or pixels is None or pixels.size == 0:
                    self.outcomes.add(failed=1)
                    continue
                if self.realtime:
                    delay = started + position - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self._put(Frame(self.camera, time.time(), pixels))
        finally:
            capture.release()


def open_source(camera) -> FileSource:
    """The source for a camera config; this release reads video files."""
    url = camera.url
    if "://" in url and not url.startswith("file://"):
        raise SourceError(f"camera {camera.name}: source {camera.display_url} is not supported yet (files only)")
    path = url.removeprefix("file://")
    return FileSource(camera.name, path, camera.detect_fps, loop=camera.loop, realtime=camera.realtime)
