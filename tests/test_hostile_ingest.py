"""Strict decoding on every MJPEG path (issue 26, item 6): a multipart stream without ``boundary=`` went to OpenCV,
which conceals damage (garbled frames counted as processed, compliance 0.90 where the truth is 0.25). A real HTTP
server on loopback."""

from __future__ import annotations

import logging
import re

import numpy as np

from binarycop.democlip import CLIP
from binarycop.loopback_camera import clip_jpegs
from ingest import StreamSource
from tests.hostile import RawServer
from tests.test_ingest_faults import _garbled, _read


def _no_boundary(connection, stopping):
    """MJPEG parts, garbled ones among them, under a Content-Type that names no boundary."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace\r\n\r\n")
    jpegs = clip_jpegs()[:20]
    index = 0
    while not stopping.is_set():
        jpeg = jpegs[index % len(jpegs)]
        body = _garbled(jpeg, index) if index % 2 else jpeg
        connection.sendall(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + body + b"\r\n")
        index += 1
        stopping.wait(0.03)


def test_a_multipart_stream_without_boundary_is_refused_not_read_by_opencv(caplog):
    server = RawServer(_no_boundary)
    url = f"http://127.0.0.1:{server.port}/video.mjpg"
    source = StreamSource("gate", url, url, detect_fps=30, stall_seconds=2, reconnect_max_seconds=1)
    try:
        with caplog.at_level(logging.WARNING):
            frames = _read(source, lambda s, f: s.status.reconnects >= 2 or len(f) >= 5, what="reconnects or frames")
    finally:
        server.stop()
    assert frames == [] and source.status.reconnects >= 2
    assert caplog.text.count("sends a multipart stream without boundary=: refused") == 1


def _damaged_clip() -> bytes:
    """The demo clip with 64 random bytes every 20 KB after its first 40 KB: frames damaged, the container whole."""
    data = bytearray(CLIP.read_bytes())
    rng = np.random.default_rng(7)
    for offset in range(40_000, len(data) - 64, 20_000):
        data[offset : offset + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    return bytes(data)


def test_other_video_over_http_is_decoded_strictly():
    """Not a multipart stream (an MP4 over HTTP): FFmpeg reads it through PyAV with err_detect=explode, as RTSP, so
    damaged frames are counted failed; OpenCV's reader, used before, conceals them and hands them out."""
    video = _damaged_clip()

    def reply(connection, stopping):  # with byte ranges: FFmpeg seeks in an MP4
        wanted = re.search(rb"Range: bytes=(\d+)-", server.requests[-1])
        start = int(wanted.group(1)) if wanted else 0
        status = (
            f"206 Partial Content\r\nContent-Range: bytes {start}-{len(video) - 1}/{len(video)}" if wanted else "200 OK"
        )
        head = f"HTTP/1.1 {status}\r\nContent-Type: video/mp4\r\nContent-Length: {len(video) - start}\r\n\r\n"
        connection.sendall(head.encode() + video[start:])

    server = RawServer(reply)
    url = f"http://127.0.0.1:{server.port}/clip.mp4"
    source = StreamSource("gate", url, url, detect_fps=30, stall_seconds=5, reconnect_max_seconds=1)
    try:
        delivered = _read(source, lambda s, f: s.status.failed >= 5, timeout=60, what="failed frames")
    finally:
        server.stop()
    assert source.status.failed >= 5 and delivered  # damage counted; the intact frames still come
