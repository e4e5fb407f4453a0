"""Live sources: RTSP (over TCP), HTTP(S) MJPEG or video, USB/V4L2 devices, with a watchdog.

A reader thread drains the stream (grabbing every frame, decoding only those sampled at
the detect fps). No frame for ``stall_seconds`` is a stall: the stream is closed and
reopened with capped exponential backoff. A dead camera only ever blocks its own thread.

RTSP, and video over HTTP that is not a multipart MJPEG stream, is read with PyAV (FFmpeg) and
``err_detect=explode``: a damaged frame is a decode error, counted as failed, where OpenCV's FFmpeg reader
conceals it and hands out a frame (OpenCV passes its FFmpeg options to the demuxer only, not to the decoder).
A multipart stream without ``boundary=`` is refused. OpenCV reads files and USB devices, and the rest where
PyAV is not installed.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import cv2

from ingest import mjpeg
from ingest.buffer import MAX_FRAME_PIXELS, BadFrame, BufferedSource, Frame, check_size
from ingest.errors import describe, reason_message

log = logging.getLogger(__name__)
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
FIRST_BACKOFF_SECONDS = 0.5
_DEVICE = re.compile(r"^(?:usb:(\d+)|/dev/video(\d+))$")


def device_index(url: str) -> int | None:
    """The V4L2 device number of ``usb:N`` or ``/dev/videoN``, else None."""
    match = _DEVICE.match(url)
    return int(match.group(1) or match.group(2)) if match else None


class StreamSource(BufferedSource):
    def __init__(
        self,
        camera: str,
        url: str,
        display_url: str,
        detect_fps: float,
        stall_seconds: float = 10.0,
        reconnect_max_seconds: float = 30.0,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
    ):
        super().__init__(camera, block_when_full=False)
        self.max_frame_pixels = max_frame_pixels
        self._logged_failures: set[str] = set()  # reasons for failed frames logged on this connection
        self._why: tuple[str, str] | None = None  # (reason, message) the last connection gave no frames
        self._unbounded_said = False
        self.url = url
        self.display_url = display_url
        self.detect_fps = detect_fps
        self.stall_seconds = stall_seconds
        self.reconnect_max_seconds = reconnect_max_seconds

    def _open(self) -> cv2.VideoCapture:
        index = device_index(self.url)
        if index is not None:
            return cv2.VideoCapture(index, cv2.CAP_V4L2)
        timeout_ms = int(self.stall_seconds * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _read(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        attempts = 0
        while not self._stopped.is_set():
            if attempts:
                self.status.add(reconnects=1)
            attempts += 1
            self._logged_failures.clear()
            self._why = None
            try:
                delivered = self._read_once()
            except Exception as error:  # noqa: BLE001 - whatever the camera sends, the reader goes on
                self._cannot(*describe(error))  # our words: the error's text may quote the camera's bytes or URL
                delivered = False
            self.status.up = False
            if delivered:
                backoff = FIRST_BACKOFF_SECONDS
            if self._stopped.is_set():
                return
            error = self._record_why(delivered)
            log.warning(
                "camera %s: no frames from %s: %s [%s]; reconnecting in %.1f s",
                self.camera,
                self.display_url,
                error.message,
                error.reason,
                backoff,
            )
            self._stopped.wait(backoff)
            backoff = min(backoff * 2, self.reconnect_max_seconds)

    def _cannot(self, reason: str, message: str | None = None) -> None:
        """Why this connection gives no frames (the last said wins)."""
        self._why = (reason, message or reason_message(reason))

    def _record_why(self, delivered: bool):
        """The camera's error after a connection ended: its own reason, a frame failure seen on it, or a stall."""
        if self._why is None:
            current = self.status.error.current
            if current is not None:
                return current
            self._cannot("stalled" if delivered else "no_frames")
        return self.status.error.set(*self._why)

    def _read_once(self) -> bool:
        """One connection, until it ends or stalls; True if any frame arrived."""
        delivered = None
        if self.url.startswith(("http://", "https://")):
            delivered = self._read_mjpeg()
            if delivered is None:  # other video over HTTP: FFmpeg through PyAV, strictly, like RTSP
                delivered = self._read_av()
        elif self.url.startswith(("rtsp://", "rtsps://")):
            delivered = self._read_av()
        elif device_index(self.url) is not None and not self._device_present():
            delivered = False
        if delivered is None:  # not an MJPEG stream, or no PyAV: OpenCV's FFmpeg reads it
            capture = self._open()
            delivered = False
            try:
                if capture.isOpened():
                    delivered = self._pump(capture)
                else:
                    self._cannot("no_device" if device_index(self.url) is not None else "not_video")
            except cv2.error as error:  # a decoder error must not end the camera
                log.warning("camera %s: decoder error: %s", self.camera, type(error).__name__)
                self._cannot("decode_failed")
            finally:
                capture.release()
        return delivered

    def _device_present(self) -> bool:
        """A V4L2 device node exists (a USB camera may be plugged in later: the watchdog keeps looking)."""
        path = Path(f"/dev/video{device_index(self.url)}")
        if path.exists():
            return True
        log.warning("camera %s: video device %s is not present (camera unplugged or no V4L2 driver)", self.camera, path)
        self._cannot("no_device")
        return False

    def _read_mjpeg(self) -> bool | None:
        """Read an HTTP MJPEG stream part by part; None if the URL serves something else."""
        try:
            response = mjpeg.open_stream(self.url, self.stall_seconds)
        except OSError as error:  # refused, timed out, an HTTP error status (401, 404, ...)
            self._cannot(*describe(error))
            return False
        with response:
            boundary = self._boundary(response.headers.get("Content-Type", ""))
            if not boundary:
                return boundary  # None: not MJPEG; False: multipart without a boundary, refused
            sampler = _Sampler(self.detect_fps)
            delivered = False
            try:
                parts = mjpeg.Parts(
                    response,
                    boundary,
                    stall_seconds=self.stall_seconds,
                    on_dropped=self._part_dropped,
                    stopped=self._stopped.is_set,
                )
                for body in parts:
                    if self._stopped.is_set():
                        break
                    delivered = self._arrived(delivered)
                    now = time.monotonic()
                    if not sampler.due(now):
                        continue
                    try:  # markers and declared size now; decoded by whoever needs the pixels (Frame)
                        size = mjpeg.checked_size(body, self.max_frame_pixels)
                    except BadFrame as error:
                        self._failed(error)
                        continue
                    frame = Frame(self.camera, time.time(), captured=now, jpeg=body, size=size, on_failed=self._failed)
                    self._put(frame)
            except mjpeg.Stalled as error:
                log.warning("camera %s: %s from %s (bytes trickle in)", self.camera, error, self.display_url)
                self._cannot("stalled")
            except OSError as error:  # timeout (a stall) or a dropped connection
                self._cannot(*(("stalled", reason_message("stalled")) if delivered else describe(error)))
            return delivered

    def _boundary(self, content_type: str) -> bytes | bool | None:
        """The MJPEG boundary; None if the reply is not multipart; False for a multipart stream without its
        ``boundary=`` or with an empty one (refused, reconnected with backoff, said once: OpenCV would read it,
        concealing damage)."""
        boundary = mjpeg.boundary_of(content_type)
        if boundary:
            return boundary
        if not content_type.lower().startswith("multipart/"):
            return None
        if not self._unbounded_said:
            self._unbounded_said = True
            log.warning(
                "camera %s: %s sends a multipart stream without boundary=: refused, its frames cannot be read "
                "strictly (fix the camera's Content-Type, or serve its video another way)",
                self.camera,
                self.display_url,
            )
        return False

    def _part_dropped(self) -> None:
        self._failed(BadFrame(f"MJPEG part over {mjpeg.MAX_PART_BYTES} bytes or without boundary: dropped"))

    def _read_av(self) -> bool | None:
        """Read an RTSP stream (or other video over HTTP) with PyAV, damaged frames counted as failed; None if PyAV
        is not installed."""
        try:
            import av
        except ImportError:
            return None
        try:
            options = {"rtsp_transport": "tcp"} if self.url.startswith(("rtsp://", "rtsps://")) else {}
            container = av.open(self.url, options=options, timeout=(self.stall_seconds, self.stall_seconds))
        except (av.FFmpegError, OSError) as error:  # the message may hold the URL: only our reason is told
            self._cannot(*describe(error))
            return False
        with container:
            if not container.streams.video:
                self._cannot("not_video")
                return False
            stream = container.streams.video[0]
            # max_pixels: FFmpeg refuses a larger frame before allocating it (a decode error, counted as failed)
            stream.codec_context.options = {"err_detect": "explode", "max_pixels": str(self.max_frame_pixels)}
            return self._pump_av(container, stream, av)

    def _pump_av(self, container, stream, av) -> bool:
        sampler = _Sampler(self.detect_fps)
        delivered = False
        try:
            for packet in container.demux(stream):
                if self._stopped.is_set():
                    break
                if packet.size == 0:  # end of stream
                    continue
                delivered = self._arrived(delivered)
                now = time.monotonic()
                try:
                    decoded = packet.decode()
                    if decoded:
                        check_size(decoded[-1].width, decoded[-1].height, self.max_frame_pixels)
                except (av.FFmpegError, BadFrame) as error:  # damaged, or larger than max_pixels
                    if sampler.due(now):
                        self._failed(self._oversized(stream, packet) or error)
                    continue
                if decoded and sampler.due(now):
                    pixels = decoded[-1].to_ndarray(format="bgr24")
                    self._put(Frame(self.camera, time.time(), pixels, time.monotonic() - now, now))
        except (av.FFmpegError, OSError) as error:  # timeout (a stall), a dropped connection, a broken stream
            self._cannot(*(("stalled", reason_message("stalled")) if delivered else describe(error)))
        return delivered

    def _oversized(self, stream, packet) -> BadFrame | None:
        """FFmpeg's max_pixels refusal is a bare EINVAL: the size the stream declares (the decoder's, or an MJPEG
        packet's frame header) says whether it was one."""
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width * height and stream.codec_context.name == "mjpeg":
            width, height = mjpeg.jpeg_size(bytes(packet)) or (0, 0)
        try:
            check_size(width, height, self.max_frame_pixels)
        except BadFrame as error:
            return error
        return None

    def _pump(self, capture: cv2.VideoCapture) -> bool:
        """Read until the stream ends or stalls; True if any frame arrived."""
        sampler = _Sampler(self.detect_fps)
        delivered = False
        declared = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:  # the size from the stream's header, before any frame is decoded
            check_size(*declared, self.max_frame_pixels)
        except BadFrame as error:
            self._failed(error)
            return False
        while not self._stopped.is_set():
            if not capture.grab():  # returns False at end of stream or after the read timeout
                return delivered
            delivered = self._arrived(delivered)
            now = time.monotonic()
            if not sampler.due(now):
                continue
            ok, pixels = capture.retrieve()
            decode_seconds = time.monotonic() - now
            if not ok or pixels is None or pixels.size == 0:
                self.status.add(failed=1)
                continue
            try:
                check_size(pixels.shape[1], pixels.shape[0], self.max_frame_pixels)  # the size changed mid-stream
            except BadFrame as error:
                self._failed(error)
                continue
            self._put(Frame(self.camera, time.time(), pixels, decode_seconds, now))
        return delivered

    def _failed(self, error: Exception) -> None:
        """A frame counted as failed; the first of each kind per connection is logged (they may come at 30/s)."""
        self.status.add(failed=1)
        reason = str(error) if isinstance(error, BadFrame) else f"decode error {type(error).__name__}"
        self.status.error.set("too_large" if "max_frame_pixels" in reason else "decode_failed")
        if reason not in self._logged_failures:
            self._logged_failures.add(reason)
            log.warning("camera %s: %s (further ones counted as failed, not logged)", self.camera, reason)

    def _arrived(self, delivered_before: bool) -> bool:
        """A frame came in: the camera is up (logged once per connection)."""
        if not delivered_before:
            log.info("camera %s: receiving frames from %s", self.camera, self.display_url)
        self.status.up = True
        return True


class _Sampler:
    """Wall-clock sampling at the detect fps; after a pause it resumes, it does not catch up."""

    def __init__(self, fps: float):
        self.interval = 1.0 / fps
        self.next = time.monotonic()

    def due(self, now: float) -> bool:
        if now < self.next:
            return False
        self.next = max(self.next + self.interval, now - self.interval)
        return True
