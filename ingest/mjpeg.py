"""HTTP MJPEG (multipart/x-mixed-replace) read by hand, so that every damaged JPEG is seen and counted.

FFmpeg's decoder conceals a truncated or garbled JPEG and hands out a frame anyway; reading the
parts ourselves lets a sampled part that is not a whole JPEG (no SOI/EOI markers) or does not
decode count as a failed frame.
"""

from __future__ import annotations

import base64
import struct
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

import cv2
import numpy as np

from ingest.buffer import BadFrame, too_large

CHUNK = 64 * 1024
MAX_PART_BYTES = 16 * 1024 * 1024


def open_stream(url: str, timeout: float):
    """An open HTTP response (credentials from the URL sent as Basic auth, never logged and never to another
    origin), or raise OSError."""
    parts = urlsplit(url)
    request_url = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    request = urllib.request.Request(request_url)
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")  # %23 in the URL is '#'
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return _OPENER.open(request, timeout=timeout)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class _SameOriginAuth(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but the camera's credentials only to its own scheme, host and port: a camera (or
    whoever answers for it) redirecting to another host gets no ``Authorization`` sent there."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(req.full_url, code, "redirect to a non-HTTP URL refused", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_SameOriginAuth)


def boundary_of(content_type: str) -> bytes | None:
    """The multipart boundary, or None when the response is not an MJPEG stream."""
    if not content_type.lower().startswith("multipart/x-mixed-replace"):
        return None
    for field in content_type.split(";")[1:]:
        key, _, value = field.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"').removeprefix("--").encode()
    return None


def parts(response, boundary: bytes):
    """Yield each part's body (bytes) as it completes."""
    marker = b"--" + boundary
    buffer = b""
    while True:
        chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
        if not chunk:
            return
        buffer += chunk
        while True:
            start = buffer.find(marker)
            if start < 0:
                break
            end = buffer.find(marker, start + len(marker))
            if end < 0:
                if len(buffer) - start > MAX_PART_BYTES:  # a part without end: drop it
                    buffer = b""
                else:
                    buffer = buffer[start:]
                break
            part = buffer[start + len(marker) : end]
            buffer = buffer[end:]
            header_end = part.find(b"\r\n\r\n")
            yield part[header_end + 4 :].rstrip(b"\r\n") if header_end >= 0 else b""


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as a JPEG's frame header (SOFn) declares them, read without decoding; None if absent."""
    index = 2
    while index + 9 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in _STANDALONE_MARKERS:
            index += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack_from(">HH", data, index + 5)
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        index += 2 + struct.unpack_from(">H", data, index + 2)[0]
    return None


_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])


def decode_jpeg(body: bytes, max_pixels: int) -> np.ndarray:
    """BGR pixels of a whole JPEG; :class:`BadFrame` for anything damaged or declaring more than ``max_pixels``.

    The size is read from the frame header first: a 600-byte JPEG may declare 32000x32000 pixels (3 GB decoded).
    """
    if len(body) < 4 or not body.startswith(b"\xff\xd8") or not body.endswith(b"\xff\xd9"):
        raise BadFrame("damaged JPEG (no start or end marker)")
    size = jpeg_size(body)
    if size is None:
        raise BadFrame("damaged JPEG (no frame header)")
    refused = too_large(*size, max_pixels)
    if refused:
        raise BadFrame(refused)
    pixels = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None or not pixels.size:
        raise BadFrame("damaged JPEG (does not decode)")
    return pixels
