"""Strict decoding on every MJPEG path (issue 26, item 6): a multipart stream without ``boundary=`` went to OpenCV,
which conceals damage (garbled frames counted as processed, compliance 0.90 where the truth is 0.25). A real HTTP
server on loopback."""

from __future__ import annotations

import logging

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
