"""HTTP MJPEG (multipart/x-mixed-replace) read by hand, so that every damaged JPEG is seen and counted.

OpenCV's FFmpeg reader conceals a truncated or garbled JPEG and hands out a frame anyway; reading the
parts ourselves lets a sampled part that is not a whole JPEG (no SOI/EOI markers), declares more pixels
than allowed, or does not decode strictly count as a failed frame. A camera cannot make the reader hold
more than one part's worth of bytes (``MAX_PART_BYTES``), search a byte twice, or keep it waiting by
trickling bytes without whole frames.
"""

from __future__ import annotations

import base64
import struct
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

import cv2
import numpy as np

from ingest.buffer import BadFrame, check_size

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


class Stalled(TimeoutError):
    """No whole part for the stall time, whatever trickled in meanwhile."""


class Parts:
    """Iterates the bodies of a multipart stream's parts, each as it completes.

    Bounded: a part (or data before the first boundary) longer than ``max_part_bytes`` is dropped and
    ``on_dropped`` called once for it; the search resumes at the next boundary. Each byte is searched for the
    boundary once (``searched`` counts them), never again on later reads. A stall is watched on whole parts:
    none for ``stall_seconds`` raises :class:`Stalled`, however many bytes trickle in. Iteration ends after
    the first read that finds ``stopped()`` true.
    """

    def __init__(
        self,
        response,
        boundary: bytes,
        max_part_bytes: int = MAX_PART_BYTES,
        stall_seconds: float = 10,
        on_dropped=None,
        stopped=None,
    ):
        self.response = response
        self.marker = b"--" + boundary
        self.max_part_bytes = max_part_bytes
        self.stall_seconds = stall_seconds
        self.on_dropped = on_dropped or (lambda: None)
        self.stopped = stopped or (lambda: False)
        self.received = self.searched = self.largest_buffer = 0

    def _read(self) -> bytes:
        read = self.response.read1 if hasattr(self.response, "read1") else self.response.read
        chunk = read(CHUNK)
        self.received += len(chunk)
        return chunk

    def __iter__(self):
        buffer = bytearray()
        searched_to = 0  # bytes before this cannot start a boundary
        in_part = dropping = False  # in_part: the buffer starts with a boundary
        last_part = time.monotonic()
        while (chunk := self._read()) and not self.stopped():
            buffer += chunk
            self.largest_buffer = max(self.largest_buffer, len(buffer))
            while True:
                found = buffer.find(self.marker, searched_to)
                self.searched += (found if found >= 0 else len(buffer)) - searched_to
                if found < 0:
                    break
                if in_part:
                    yield _body(bytes(buffer[len(self.marker) : found]))
                    last_part = time.monotonic()
                del buffer[:found]
                in_part, dropping = True, False
                searched_to = len(self.marker)
            searched_to = max(searched_to, len(buffer) - len(self.marker) + 1)
            if len(buffer) > self.max_part_bytes:  # too long for a frame: dropped, the next boundary resyncs
                if not dropping:
                    self.on_dropped()
                keep = len(self.marker) - 1
                del buffer[:-keep]
                searched_to, in_part, dropping = 0, False, True
            if time.monotonic() - last_part > self.stall_seconds:
                raise Stalled(f"no whole frame for {self.stall_seconds:g} s")


def _body(part: bytes) -> bytes:
    header_end = part.find(b"\r\n\r\n")
    return part[header_end + 4 :].rstrip(b"\r\n") if header_end >= 0 else b""


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
    Decoded strictly by FFmpeg (``err_detect=explode``), which refuses most JPEGs garbled inside their data
    (a bad Huffman code, a marker where data should be) where OpenCV's libjpeg warns and hands out the picture;
    OpenCV only where PyAV is not installed.
    """
    return decode_strictly(body, checked_size(body, max_pixels))


def checked_size(body: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) of a JPEG with both markers and a frame header declaring at most ``max_pixels``; else
    :class:`BadFrame`. What the reader checks of every sampled part before it is handed on undecoded."""
    if len(body) < 4 or not body.startswith(b"\xff\xd8") or not body.endswith(b"\xff\xd9"):
        raise BadFrame("damaged JPEG (no start or end marker)")
    size = jpeg_size(body)
    if size is None:
        raise BadFrame("damaged JPEG (no frame header)")
    check_size(*size, max_pixels)
    return size


def decode_strictly(body: bytes, size: tuple[int, int]) -> np.ndarray:
    """BGR pixels of a JPEG already checked by :func:`checked_size` (``size``: what its header declares);
    :class:`BadFrame` if it does not decode strictly to that size."""
    pixels = _decode_strictly(body)
    if pixels is None or not pixels.size:
        raise BadFrame("damaged JPEG (does not decode)")
    if (pixels.shape[1], pixels.shape[0]) != tuple(size):
        raise BadFrame(f"damaged JPEG (decodes to {pixels.shape[1]}x{pixels.shape[0]}, declares {size[0]}x{size[1]})")
    return pixels


def reduced_grey(body: bytes) -> np.ndarray | None:
    """libjpeg's 1/8 grey decode of a JPEG (each pixel an 8x8 block's mean luma: no inverse transform, no colour), at
    a fraction of a full decode's cost; None if it does not decode. Not strict: for judging motion, never for crops."""
    reduced = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    return reduced if reduced is not None and reduced.size else None


_decoders = threading.local()  # one FFmpeg decoder per reader thread


def _decode_strictly(body: bytes) -> np.ndarray | None:
    try:
        import av
    except ImportError:
        return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    context = getattr(_decoders, "context", None)
    if context is None:
        context = _decoders.context = av.CodecContext.create("mjpeg", "r")
        context.options = {"err_detect": "explode"}
    try:
        frames = context.decode(av.Packet(body))
    except av.FFmpegError:
        raise BadFrame("damaged JPEG (corrupt data)") from None
    return frames[-1].to_ndarray(format="bgr24") if frames else None
