"""Why a camera delivers no frames, in a short fixed vocabulary: the log line, ``/api/status``, the page and the
``binarycop_camera_error_info{camera,reason}`` metric all say the same word.

The message is ours, built from the reason and at most a status code: never an exception's text (it may quote the
camera's URL with its password, or bytes the camera sent).

Example:
    >>> describe(ConnectionRefusedError(111, "Connection refused"))
    ('refused', 'connection refused')
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
from dataclasses import dataclass

# reason -> what the page and the log say (the metric's `reason` label is the word)
REASONS = {
    "refused": "connection refused",
    "timed_out": "connection timed out",
    "unreachable": "host not found or unreachable",
    "unauthorized": "401 unauthorized: check the user and password",
    "forbidden": "403 forbidden: this user may not read the stream",
    "not_found": "404 not found: check the path",
    "http_error": "the server answered with an error",
    "not_video": "not a video stream",
    "too_large": "frames larger than max_frame_pixels",
    "decode_failed": "frames do not decode",
    "stalled": "no frame within stall_seconds",
    "no_device": "video device not present",
    "file_not_found": "video file not found",
    "file_ended": "the video file ended (loop: false)",
    "no_frames": "connected, but no frame came",
    "failed": "reading failed",
}


@dataclass(frozen=True)
class CameraError:
    """The last reason a camera gave no frames: a word of :data:`REASONS`, our message, since when (unix s)."""

    reason: str
    message: str
    since: float

    def as_json(self) -> dict:
        return {"reason": self.reason, "message": self.message, "since": round(self.since, 3)}


def reason_message(reason: str, detail: str = "") -> str:
    if reason not in REASONS:
        raise ValueError(f"camera error reason {reason!r} is not one of {sorted(REASONS)}")
    return f"{REASONS[reason]} ({detail})" if detail else REASONS[reason]


def describe(error: BaseException) -> tuple[str, str]:
    """(reason, message) for an exception from opening or reading a stream (urllib, PyAV, sockets)."""
    reason, detail = _reason(error)
    return reason, reason_message(reason, detail)


def _reason(error: BaseException) -> tuple[str, str]:
    status = _status_code(error)
    if status is not None:  # the reason's own text names 401, 403 and 404
        reason = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(status, "http_error")
        return reason, f"status {status}" if reason == "http_error" else ""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        return _reason(error.reason)
    if isinstance(error, ConnectionRefusedError):
        return "refused", ""
    if isinstance(error, TimeoutError):
        return "timed_out", ""
    if isinstance(error, socket.gaierror) or getattr(error, "errno", None) in (101, 113):  # ENETUNREACH, EHOSTUNREACH
        return "unreachable", ""
    name = type(error).__name__  # PyAV's FFmpeg errors, without importing av here
    if name in ("InvalidDataError", "DemuxerNotFoundError", "DecoderNotFoundError"):
        return "not_video", ""
    return "failed", name


def _status_code(error: BaseException) -> int | None:
    """The HTTP or RTSP status a server answered with, if the error says (urllib's HTTPError, PyAV's HTTP* errors)."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code
    by_name = {
        "HTTPBadRequestError": 400,
        "HTTPUnauthorizedError": 401,
        "HTTPForbiddenError": 403,
        "HTTPNotFoundError": 404,
        "HTTPTooManyRequestsError": 429,
        "HTTPOtherClientError": 400,
        "HTTPServerError": 500,
    }
    return by_name.get(type(error).__name__)


class ErrorState:
    """A camera's current error, set by its reader thread, read by the event loop; cleared when frames come."""

    def __init__(self):
        self._lock = threading.Lock()
        self._error: CameraError | None = None

    def set(self, reason: str, message: str | None = None) -> CameraError:
        """Record ``reason`` (``since`` kept while the reason stays the same); returns the error."""
        message = message or reason_message(reason)
        with self._lock:
            since = self._error.since if self._error is not None and self._error.reason == reason else time.time()
            self._error = CameraError(reason, message, since)
            return self._error

    def clear(self) -> None:
        with self._lock:
            self._error = None

    @property
    def current(self) -> CameraError | None:
        with self._lock:
            return self._error
