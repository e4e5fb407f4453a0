"""What every source shares: the Frame value, tallies of lost frames, a drop-oldest buffer.

Decoding happens on a reader thread per camera, off the event loop. When the pipeline
falls behind a live source, the oldest waiting frame is dropped (and counted), so
latency never builds up; a source that must not lose frames blocks instead. The reader
wakes the event loop when a frame arrives: no thread is parked waiting per camera (with
asyncio's default pool of a few threads, many cameras would queue for one).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ingest.errors import ErrorState

BUFFER_FRAMES = 2
STOP_WAIT_SECONDS = 1.0  # the longest stop() holds its caller (the event loop) waiting for the reader
MAX_FRAME_PIXELS = 4096 * 2160  # 4K (DCI); the config's default


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`BadFrame` for a frame of that size if it has more than ``max_pixels``."""
    if width * height > max_pixels:
        raise BadFrame(f"frame of {width}x{height} px refused: above max_frame_pixels ({max_pixels} px)")


class Frame:
    """One frame: camera name, when it was captured (unix seconds), BGR pixels, seconds spent decoding them, and the
    monotonic clock at capture (for end-to-end latency).

    A frame may arrive undecoded (``jpeg``: an MJPEG part whose markers and size were checked): its pixels are decoded
    strictly on first use, on the thread that asks, and a frame that turns out damaged raises :class:`BadFrame`, is
    reported through ``on_failed`` (the source's tally, as if the reader had found it) and stays failed. Until then,
    :meth:`reduced_grey` gives the motion gate a 1/8 grey copy at a fraction of the cost, so a still frame with
    nobody in view is never decoded in full."""

    __slots__ = ("camera", "timestamp", "decode_seconds", "captured", "_pixels", "_jpeg", "_size", "_on_failed", "_bad")

    def __init__(
        self,
        camera: str,
        timestamp: float,
        pixels: np.ndarray | None = None,
        decode_seconds: float = 0.0,
        captured: float = 0.0,
        *,
        jpeg: bytes | None = None,
        size: tuple[int, int] | None = None,
        on_failed: Callable[[BadFrame], None] | None = None,
    ):
        if pixels is None and (jpeg is None or size is None):
            raise ValueError("a frame needs its pixels, or its JPEG and size")
        self.camera = camera
        self.timestamp = timestamp
        self.decode_seconds = decode_seconds
        self.captured = captured
        self._pixels = pixels
        self._jpeg = jpeg if pixels is None else None
        self._size = (pixels.shape[1], pixels.shape[0]) if pixels is not None else size
        self._on_failed = on_failed
        self._bad: BadFrame | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), known without decoding."""
        return self._size

    @property
    def decoded(self) -> bool:
        return self._pixels is not None

    @property
    def pixels(self) -> np.ndarray:
        """The BGR pixels, decoded strictly on first use (:class:`BadFrame` if damaged)."""
        if self._pixels is None:
            if self._bad is not None:
                raise self._bad
            from ingest.mjpeg import decode_strictly  # the reader's decoder, one per thread

            started = time.perf_counter()
            try:
                self._pixels = decode_strictly(self._jpeg, self._size)
            except BadFrame as error:
                self._bad = error
                if self._on_failed is not None:
                    self._on_failed(error)
                raise
            self.decode_seconds += time.perf_counter() - started
            self._jpeg = None
        return self._pixels

    def reduced_grey(self) -> np.ndarray | None:
        """For a frame not yet decoded: its JPEG's 1/8 grey decode (:func:`ingest.mjpeg.reduced_grey`); None if
        decoded, or if it does not decode."""
        if self._pixels is not None:
            return None
        from ingest.mjpeg import reduced_grey

        started = time.perf_counter()
        reduced = reduced_grey(self._jpeg)
        self.decode_seconds += time.perf_counter() - started
        return reduced


class BadFrame(ValueError):
    """A frame that cannot be used: damaged, or larger than allowed (the message says which); counted as failed."""


class SourceError(RuntimeError):
    """A source that cannot be used (the message never contains credentials); ``reason``: a word of
    :data:`ingest.errors.REASONS`."""

    def __init__(self, message: str, reason: str = "failed"):
        super().__init__(message)
        self.reason = reason


class SourceStatus:
    """Thread-safe state a reader thread reports: frames dropped and failed, reconnects, up or down, and why not
    (``error``: cleared by each frame handed on)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.dropped = self.failed = self.reconnects = 0
        self.up = False
        self.error = ErrorState()

    def add(self, dropped: int = 0, failed: int = 0, reconnects: int = 0) -> None:
        with self._lock:
            self.dropped += dropped
            self.failed += failed
            self.reconnects += reconnects

    def take(self) -> tuple[int, int, int]:
        """(dropped, failed, reconnects) since the last call."""
        with self._lock:
            taken = self.dropped, self.failed, self.reconnects
            self.dropped = self.failed = self.reconnects = 0
            return taken


class BufferedSource:
    """A reader thread filling a small buffer; ``frames()`` hands frames to the event loop."""

    def __init__(self, camera: str, block_when_full: bool):
        self.camera = camera
        self.status = SourceStatus()
        self._block_when_full = block_when_full
        self._buffer: deque[Frame] = deque()
        self._ready = threading.Condition()
        self._stopped = threading.Event()
        self._finished = False
        self._thread: threading.Thread | None = None
        self._wake = None  # set by frames(): tells the event loop that something arrived

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_reader, name=f"read-{self.camera}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._ready:
            self._ready.notify_all()
        self._notify_loop()
        if self._thread is not None:
            # A reader blocked in a silent camera's read ends at its timeout; it is not waited for that long
            # (the event loop renews every camera's lease), and nothing it reads after this goes anywhere.
            self._thread.join(timeout=STOP_WAIT_SECONDS)

    async def frames(self):
        """Async iterator of frames; ends when the source ends or is stopped."""
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()
        self._wake = lambda: loop.call_soon_threadsafe(arrived.set)
        try:
            while True:
                arrived.clear()  # before looking: a frame put after this sets it again
                frame = self._take()
                if frame is not None:
                    yield frame
                elif self._finished or self._stopped.is_set():
                    return
                else:
                    await arrived.wait()
        finally:
            self._wake = None

    def _read(self) -> None:
        """The reader thread's work; subclasses put frames with ``_put``."""
        raise NotImplementedError

    def _run_reader(self) -> None:
        try:
            self._read()
        finally:
            self.status.up = False
            with self._ready:
                self._finished = True
                self._ready.notify_all()
            self._notify_loop()

    def _take(self) -> Frame | None:
        with self._ready:
            if not self._buffer:
                return None
            frame = self._buffer.popleft()
            self._ready.notify_all()  # a blocked reader may go on
            return frame

    def _notify_loop(self) -> None:
        wake = self._wake
        if wake is not None:
            try:
                wake()
            except RuntimeError:  # the event loop has closed
                pass

    def _put(self, frame: Frame) -> None:
        with self._ready:
            while self._block_when_full and len(self._buffer) >= BUFFER_FRAMES and not self._stopped.is_set():
                self._ready.wait(0.5)
            if len(self._buffer) >= BUFFER_FRAMES:
                self._buffer.popleft()
                self.status.add(dropped=1)
            self._buffer.append(frame)
            self._ready.notify_all()
        self.status.error.clear()
        self._notify_loop()
