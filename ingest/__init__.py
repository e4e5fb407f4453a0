"""Frames in: camera sources read off the event loop and sampled at the detect fps."""

from __future__ import annotations

from ingest.buffer import BadFrame, BufferedSource, Frame, SourceError, SourceStatus
from ingest.errors import REASONS, CameraError, describe, reason_message
from ingest.files import FileSource
from ingest.streams import StreamSource, device_index

__all__ = [
    "BadFrame",
    "BufferedSource",
    "CameraError",
    "REASONS",
    "FileSource",
    "Frame",
    "SourceError",
    "SourceStatus",
    "StreamSource",
    "describe",
    "file_path",
    "open_source",
    "reason_message",
]
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


def file_path(url: str) -> str | None:
    """The video file a camera URL names (a path or ``file://`` one); None for streams and devices."""
    if url.startswith(STREAM_SCHEMES) or device_index(url) is not None or url.startswith("usb:"):
        return None
    if "://" in url and not url.startswith("file://"):
        return None
    return url.removeprefix("file://")


def open_source(camera) -> BufferedSource:
    """The source for a camera config: a stream, a USB device, or a video file."""
    url = camera.url
    if url.startswith(STREAM_SCHEMES) or device_index(url) is not None:
        return StreamSource(
            camera.name,
            url,
            camera.display_url,
            camera.detect_fps,
            stall_seconds=camera.stall_seconds,
            reconnect_max_seconds=camera.reconnect_max_seconds,
            max_frame_pixels=camera.max_frame_pixels,
        )
    if url.startswith("usb:"):
        raise SourceError(f"camera {camera.name}: a USB camera is usb:N or /dev/videoN (N a number), not {url!r}")
    if "://" in url and not url.startswith("file://"):
        scheme = url.split("://", 1)[0]
        raise SourceError(f"camera {camera.name}: unsupported source scheme {scheme!r} in {camera.display_url}")
    path = url.removeprefix("file://")
    return FileSource(camera.name, path, camera.detect_fps, camera.loop, camera.realtime, camera.max_frame_pixels)
