"""Hostile and careless cameras (issue 19), each against a real server on loopback: decompression bombs,
replies that are not HTTP, redirects to other hosts, streams without boundaries, trickling stalls."""

from __future__ import annotations

import asyncio
import logging

from binarycop.config import CameraConfig
from binarycop.democlip import CLIP
from binarycop.mjpeg import MjpegCamera, clip_jpegs
from ingest import FileSource, StreamSource, open_source
from tests.conftest import free_port, wait_until
from tests.hostile import bomb_jpeg
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


def test_rtsp_frames_larger_than_the_limit_are_refused_by_ffmpeg(tmp_path):
    """The PyAV path: FFmpeg's max_pixels refuses each frame before allocating it; each counts as failed."""
    frame_dir = tmp_path / "frames"
    _write_frames(frame_dir)
    camera = RtspCamera(free_port(), frame_dir).start()
    url = f"rtsp://127.0.0.1:{camera.port}/cam"
    source = StreamSource("gate", url, url, detect_fps=30, stall_seconds=5, max_frame_pixels=SMALL_LIMIT)
    try:
        delivered = _read(source, lambda s, f: s.status.failed >= 10 or f, timeout=30)
    finally:
        camera.kill()
    assert delivered == [] and source.status.failed >= 10
