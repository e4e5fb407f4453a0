"""Hostile and careless cameras (issue 19), each against a real server on loopback: decompression bombs,
replies that are not HTTP, redirects to other hosts, streams without boundaries, trickling stalls."""

from __future__ import annotations

import asyncio
import base64
import logging
import re

import cv2
import numpy as np
import pytest

from binarycop.config import CameraConfig, ConfigError, parse_config, redact_url
from binarycop.democlip import CLIP
from binarycop.loopback_camera import MjpegCamera, clip_jpegs
from ingest import BadFrame, FileSource, StreamSource, mjpeg, open_source
from tests.conftest import free_port, wait_until
from tests.hostile import RawServer, bomb_jpeg
from tests.test_streams import RtspCamera, _write_frames

SMALL_LIMIT = 320 * 180  # below the clip's 640x360


def _read(source, until, timeout: float = 20, what: str = "the source") -> list:
    """Start ``source``, collect its frames until ``until(source, frames)``, stop it; the frames."""

    async def scenario():
        frames = []

        async def collect():
            async for frame in source.frames():
                frames.append(frame)

        source.start()
        task = asyncio.create_task(collect())
        try:
            await wait_until(lambda: until(source, frames), timeout, what)
        finally:
            source.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return frames

    return asyncio.run(scenario())


def test_mjpeg_bomb_frames_are_refused_before_decoding_and_counted_failed(caplog):
    """Every other part is a 600-byte JPEG declaring 8000x8000 px (192 MB decoded): refused from its header."""
    good = clip_jpegs()[:5]
    frames = [jpeg for pair in zip(good, [bomb_jpeg(8000, 8000)] * 5) for jpeg in pair]
    camera = MjpegCamera(free_port(), frames=frames).start()
    source = StreamSource("gate", camera.url, camera.url, detect_fps=30, stall_seconds=3)
    try:
        with caplog.at_level(logging.WARNING):
            delivered = _read(source, lambda s, f: s.status.failed >= 5 and len(f) >= 5)
    finally:
        camera.stop()
    assert all(frame.pixels.shape == (360, 640, 3) for frame in delivered)
    assert "frame of 8000x8000 px refused: above max_frame_pixels (8847360 px)" in caplog.text


def test_video_file_larger_than_the_limit_is_refused_from_its_header(caplog):
    camera = CameraConfig(name="clip", url=str(CLIP), max_frame_pixels=SMALL_LIMIT, realtime=False)
    source = open_source(camera)
    assert isinstance(source, FileSource)
    with caplog.at_level(logging.ERROR):
        delivered = _read(source, lambda s, f: s._finished)
    assert delivered == [] and source.status.failed == 1
    assert "frame of 640x360 px refused: above max_frame_pixels (57600 px)" in caplog.text
    assert source.status.error.current.reason == "too_large"  # why, for the page and the metric


def test_rtsp_frames_larger_than_the_limit_are_refused_by_ffmpeg(tmp_path):
    """The PyAV path: FFmpeg's max_pixels refuses each frame before allocating it; each counts as failed."""
    frame_dir = tmp_path / "frames"
    _write_frames(frame_dir)
    camera = RtspCamera(free_port(), frame_dir).start()
    url = f"rtsp://127.0.0.1:{camera.port}/cam"
    source = StreamSource("gate", url, url, detect_fps=30, stall_seconds=5, max_frame_pixels=SMALL_LIMIT)
    try:
        delivered = _read(source, lambda s, f: s.status.failed >= 10 or f, timeout=30)
        reason = source.status.error.current.reason
    finally:
        camera.kill()
    assert delivered == [] and source.status.failed >= 10
    assert reason == "too_large"


def _send(data: bytes):
    """A reply: ``data``, then the connection closes."""

    def reply(connection, stopping):
        connection.sendall(data)

    return reply


MJPEG_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n"
HOSTILE_REPLIES = {
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n",  # http.client: BadStatusLine
    "bad-chunk-size": MJPEG_HEADERS + b"Transfer-Encoding: chunked\r\n\r\nzz-not-hex\r\n--frame\r\n",  # IncompleteRead
    "70-kb-header-line": MJPEG_HEADERS + b"X-Padding: " + b"a" * 70_000 + b"\r\n\r\n",  # LineTooLong
}


@pytest.mark.parametrize("name", sorted(HOSTILE_REPLIES))
def test_a_reply_that_breaks_http_ends_in_the_reconnect_loop_logged_redacted(name, caplog):
    server = RawServer(_send(HOSTILE_REPLIES[name]))
    url = f"http://viewer:s3cr3t-pw@127.0.0.1:{server.port}/video.mjpg"
    source = StreamSource("gate", url, redact_url(url), detect_fps=5, stall_seconds=2, reconnect_max_seconds=1)
    try:
        with caplog.at_level(logging.WARNING):
            _read(source, lambda s, f: s.status.reconnects >= 2 and server.connections >= 3, what="reconnects")
    finally:
        server.stop()
    assert f"no frames from http://viewer:***@127.0.0.1:{server.port}/video.mjpg: reading failed (" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_a_password_with_a_hash_is_a_clear_config_error_and_never_shown():
    text = "cameras:\n  - {name: gate, url: 'http://viewer:pa#ss@10.0.0.5:8080/video.mjpg'}\n"
    with pytest.raises(ConfigError, match=r"cameras\[gate\]\.url: .*percent-encode them \(%2F, %3F, %23") as caught:
        parse_config(text)
    assert "pa#ss" not in str(caught.value) and "ss@" not in str(caught.value)
    assert redact_url("http://viewer:pa#ss@10.0.0.5:8080/video.mjpg") == "http://***@10.0.0.5:8080/video.mjpg"


def test_a_password_with_a_hash_outside_the_config_keeps_the_reader_retrying(caplog):
    """A source made without the config's check (urllib reads the host as 'viewer', the port as 'pa'):
    reconnected with backoff, never shown."""
    url = f"http://viewer:pa#ss@127.0.0.1:{free_port()}/video.mjpg"
    source = StreamSource("gate", url, redact_url(url), detect_fps=5, stall_seconds=2, reconnect_max_seconds=1)
    with caplog.at_level(logging.WARNING):
        _read(source, lambda s, f: s.status.reconnects >= 2, what="reconnects")
    assert "no frames from http://***@127.0.0.1:" in caplog.text and "pa#ss" not in caplog.text


def test_a_percent_encoded_password_is_sent_decoded():
    """'%23' in the URL is '#' in the password the camera checks."""
    seen = []

    def reply(connection, stopping):
        seen.append(True)
        connection.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")

    server = RawServer(reply)
    url = f"http://viewer:pa%23ss@127.0.0.1:{server.port}/video.mjpg"
    source = StreamSource("gate", url, redact_url(url), detect_fps=5, stall_seconds=2, reconnect_max_seconds=1)
    try:
        _read(source, lambda s, f: server.connections >= 1, what="a request")
    finally:
        server.stop()
    token = base64.b64encode(b"viewer:pa#ss")
    assert b"Authorization: Basic " + token in server.requests[0]


def _redirect_to(location: str):
    def reply(connection, stopping):
        connection.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())

    return reply


def _stream(connection, stopping):
    connection.sendall(MJPEG_HEADERS + b"\r\n")
    _stream_parts(connection, stopping)


@pytest.mark.parametrize("other_host", ["127.0.0.1", "localhost"])
def test_credentials_are_never_sent_to_another_origin_on_a_redirect(other_host):
    """The camera answers 302 to a server on another port (another origin) or another host name."""
    elsewhere = RawServer(_stream)
    camera = RawServer(_redirect_to(f"http://{other_host}:{elsewhere.port}/video.mjpg"))
    url = f"http://viewer:s3cr3t-pw@127.0.0.1:{camera.port}/video.mjpg"
    source = StreamSource("gate", url, redact_url(url), detect_fps=5, stall_seconds=2, reconnect_max_seconds=1)
    try:
        frames = _read(source, lambda s, f: len(f) >= 2, what="frames from the redirect's target")
    finally:
        camera.stop()
        elsewhere.stop()
    assert frames and b"Authorization: Basic " in camera.requests[0]
    assert all(b"authorization" not in request.lower() for request in elsewhere.requests)


def test_credentials_follow_a_redirect_within_the_camera():
    """Same scheme, host and port: the camera still gets its credentials after redirecting to another path."""

    def reply(connection, stopping):  # the first request is redirected, the next one streams
        if len(camera.requests) == 1:
            _redirect_to(f"http://127.0.0.1:{camera.port}/live.mjpg")(connection, stopping)
        else:
            _stream(connection, stopping)

    camera = RawServer(reply)
    url = f"http://viewer:s3cr3t-pw@127.0.0.1:{camera.port}/video.mjpg"
    source = StreamSource("gate", url, redact_url(url), detect_fps=5, stall_seconds=2, reconnect_max_seconds=1)
    try:
        _read(source, lambda s, f: len(f) >= 1, what="frames after the redirect")
    finally:
        camera.stop()
    assert b"GET /live.mjpg" in camera.requests[1] and b"Authorization: Basic " in camera.requests[1]


def _junk_then_frames(junk_bytes: int):
    """MJPEG headers, ``junk_bytes`` with no boundary in them, then whole parts until stopped."""

    def reply(connection, stopping):
        connection.sendall(MJPEG_HEADERS + b"\r\n")
        block = b"\x00" * 65536
        for _ in range(junk_bytes // len(block)):
            connection.sendall(block)
        _stream_parts(connection, stopping)

    return reply


def _stream_parts(connection, stopping):
    jpeg = clip_jpegs()[0]
    while not stopping.is_set():
        connection.sendall(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n")
        stopping.wait(0.1)


def test_a_stream_without_boundaries_is_bounded_searched_once_and_dropped():
    """3 MB without a boundary, with parts capped at 1 MB: dropped once, never more than 1 MB (and a read)
    buffered, each byte searched for the boundary once; the parts after it come through whole."""
    server = RawServer(_junk_then_frames(3 * 1024 * 1024))
    dropped = []
    try:
        with mjpeg.open_stream(f"http://127.0.0.1:{server.port}/video.mjpg", 5) as response:
            parts = mjpeg.Parts(response, b"frame", max_part_bytes=1024 * 1024, on_dropped=lambda: dropped.append(1))
            bodies = [body for body, _ in zip(parts, range(3))]
    finally:
        server.stop()
    assert len(dropped) == 1
    assert all(mjpeg.decode_jpeg(body, 10**7).shape == (360, 640, 3) for body in bodies)
    assert parts.largest_buffer <= 1024 * 1024 + mjpeg.CHUNK
    assert parts.searched <= parts.received


def test_a_camera_sending_no_boundary_has_its_garbage_dropped_and_counted_failed():
    """17 MB without a boundary (over the 16 MB part limit), then good frames: counted once as failed, and
    the frames after it are read."""
    server = RawServer(_junk_then_frames(17 * 1024 * 1024))
    url = f"http://127.0.0.1:{server.port}/video.mjpg"
    source = StreamSource("gate", url, url, detect_fps=30, stall_seconds=5)
    try:
        frames = _read(source, lambda s, f: len(f) >= 3, what="frames after the garbage")
    finally:
        server.stop()
    assert source.status.failed == 1 and len(frames) >= 3
    assert server.connections == 1  # read through, not reconnected


def _trickle(connection, stopping):
    """Headers and the start of a part, then one byte every 0.2 s: never a whole frame."""
    connection.sendall(MJPEG_HEADERS + b"\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8")
    while not stopping.is_set():
        connection.sendall(b"\x00")
        stopping.wait(0.2)


def test_a_trickling_stream_is_a_stall_and_reconnected(caplog):
    """Bytes keep coming (the socket never times out) but no whole frame for the stall time: reconnected."""
    server = RawServer(_trickle)
    url = f"http://127.0.0.1:{server.port}/video.mjpg"
    source = StreamSource("gate", url, url, detect_fps=5, stall_seconds=1, reconnect_max_seconds=1)
    try:
        with caplog.at_level(logging.WARNING):
            _read(source, lambda s, f: s.status.reconnects >= 2, what="reconnects after stalls")
    finally:
        server.stop()
    assert server.connections >= 3
    assert "camera gate: no whole frame for 1 s from http://127.0.0.1" in caplog.text


def _garbled(jpeg: bytes, seed: int) -> bytes:
    """400 random bytes in the middle of the JPEG's data; its markers (start, end) intact."""
    data = bytearray(jpeg)
    middle = len(data) // 2
    data[middle : middle + 400] = np.random.default_rng(seed).integers(0, 256, 400, dtype=np.uint8).tobytes()
    return bytes(data)


def test_jpegs_garbled_inside_are_counted_failed_not_decoded():
    """Every other part has 400 random bytes in its middle (SOI and EOI intact, OpenCV decodes every one of
    them): FFmpeg's strict decoding refuses most (about 96 % on the clip's frames). The reader hands MJPEG parts on
    undecoded; the strict decode happens where the pixels are first needed, and a refusal is counted by the source as
    failed, as if the reader had found it, once however often the pixels are asked for."""
    good = clip_jpegs()[:10]
    frames = [jpeg for index, clean in enumerate(good) for jpeg in (clean, _garbled(clean, index))]
    assert all(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None for jpeg in frames)
    camera = MjpegCamera(free_port(), frames=frames).start()
    source = StreamSource("gate", camera.url, camera.url, detect_fps=30, stall_seconds=3)
    try:
        delivered = _read(source, lambda s, f: s.status.failed + len(f) >= 40, what="40 parts")
    finally:
        camera.stop()
    assert not any(frame.decoded for frame in delivered) and source.status.failed == 0
    decoded = []
    for frame in delivered:
        for _ in range(2):
            try:
                decoded.append(frame.pixels)
            except BadFrame as error:
                assert "damaged JPEG" in str(error)
    failed = source.status.failed
    assert len(decoded) == 2 * (len(delivered) - failed)  # a frame that decoded once keeps its pixels
    assert all(pixels.shape == (360, 640, 3) for pixels in decoded)
    assert failed / len(delivered) > 0.4  # half the parts are garbled; OpenCV alone: 0
    assert source.status.error.current.reason == "decode_failed"


def test_a_stopped_reader_of_a_trickling_stream_ends_without_waiting_for_the_stall():
    """Stopping a camera (its lease handed over) must not wait for a 300 s stall: the reader ends at the
    next byte, so the event loop that stops it is not held (it renews the other cameras' leases)."""
    server = RawServer(_trickle)
    url = f"http://127.0.0.1:{server.port}/video.mjpg"
    source = StreamSource("gate", url, url, detect_fps=5, stall_seconds=300)
    try:
        _read(source, lambda s, f: server.connections >= 1 and s.status.up is False, what="a connection")
    finally:
        server.stop()
    assert not source._thread.is_alive()


def test_credentials_are_not_sent_elsewhere_by_ffmpeg_reading_other_video_over_http():
    """Not MJPEG (an MP4 over HTTP): after urllib's look, OpenCV's FFmpeg reads the URL and follows the
    camera's redirect itself (after a Basic challenge); the other origin gets no credentials either. (FFmpeg
    held before the fix of the MJPEG reader; this keeps it so.)"""
    video = CLIP.read_bytes()

    def serve_video(connection, stopping):  # with byte ranges: FFmpeg seeks in an MP4
        wanted = re.search(rb"Range: bytes=(\d+)-", elsewhere.requests[-1])
        start = int(wanted.group(1)) if wanted else 0
        status = (
            f"206 Partial Content\r\nContent-Range: bytes {start}-{len(video) - 1}/{len(video)}" if wanted else "200 OK"
        )
        head = f"HTTP/1.1 {status}\r\nContent-Type: video/mp4\r\nContent-Length: {len(video) - start}\r\n\r\n"
        connection.sendall(head.encode() + video[start:])

    elsewhere = RawServer(serve_video)

    def challenge_then_redirect(connection, stopping):  # FFmpeg sends Basic credentials only when challenged
        if len([request for request in camera.requests if b"Lavf" in request]) == 1:
            www = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="cam"\r\nContent-Length: 0\r\n\r\n'
            connection.sendall(www)
        else:
            _redirect_to(f"http://127.0.0.1:{elsewhere.port}/clip.mp4")(connection, stopping)

    camera = RawServer(challenge_then_redirect)
    url = f"http://viewer:s3cr3t-pw@127.0.0.1:{camera.port}/clip.mp4"
    source = StreamSource("gate", url, redact_url(url), detect_fps=5, stall_seconds=3, reconnect_max_seconds=1)
    try:
        frames = _read(source, lambda s, f: len(f) >= 2, what="frames of the redirected video")
    finally:
        camera.stop()
        elsewhere.stop()
    ffmpeg = [request for request in camera.requests if b"Lavf" in request]
    assert frames and b"Authorization: Basic " in ffmpeg[1]  # challenged, FFmpeg sent them to the camera
    assert len([request for request in elsewhere.requests if b"Lavf" in request]) >= 2
    assert all(b"authorization" not in request.lower() for request in elsewhere.requests)
