"""Live sources against real servers on loopback (HTTP MJPEG, RTSP): counts, dying cameras, damaged frames, USB."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from binarycop.config import CameraConfig, Config, HttpConfig, RedisConfig
from binarycop.democlip import CLIP, TRUTH, expected_people
from binarycop.loopback_camera import MjpegCamera
from binarycop.server import Server
from ingest import FileSource, SourceError, StreamSource, open_source
from ingest.streams import device_index
from tests.conftest import free_port, redis_dump, wait_until


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(f"binarycop:{key}").items()}


def test_sources_chosen_by_url():
    stream = open_source(CameraConfig(name="a", url="rtsp://u:p@10.0.0.5/s"))
    usb = open_source(CameraConfig(name="b", url="usb:0"))
    clip = open_source(CameraConfig(name="c", url=str(CLIP)))
    assert isinstance(stream, StreamSource) and stream.display_url == "rtsp://u:***@10.0.0.5/s"
    assert isinstance(usb, StreamSource) and isinstance(clip, FileSource)


@pytest.mark.parametrize(
    "url, index",
    [("usb:0", 0), ("usb:12", 12), ("/dev/video3", 3), ("usb:", None), ("/dev/video", None), ("a.mp4", None)],
)
def test_device_numbers_parsed(url, index):
    assert device_index(url) == index


def test_malformed_usb_url_is_a_clear_error():
    with pytest.raises(SourceError, match=r"usb:N or /dev/videoN"):
        open_source(CameraConfig(name="cam", url="usb:front"))


def test_absent_usb_camera_is_down_and_retried_while_others_count(redis_server, caplog):
    """No V4L2 device can exist here (no /dev/video*, no kernel modules for v4l2loopback in this container):
    this runs the USB path up to opening the device, which is absent."""
    import logging

    index = next(i for i in range(64) if not Path(f"/dev/video{i}").exists())
    cameras = [
        CameraConfig(name="desk", url=f"usb:{index}", stall_seconds=1, reconnect_max_seconds=1),
        CameraConfig(name="lobby", url=str(CLIP), detect_fps=5, loop=True),
    ]
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=cameras)
    client = redis.Redis.from_url(redis_server.url)

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        try:
            await wait_until(lambda: int(_hash(client, "camera_reconnects").get("desk", 0)) >= 2, 20, "retries")
            await wait_until(lambda: int(_hash(client, "frames").get("lobby|processed", 0)) >= 5, 30, "lobby frames")
        finally:
            await server.stop()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert _hash(client, "camera_up")["desk"] == "0"
    assert f"video device /dev/video{index} is not present" in caplog.text


def test_camera_dies_and_comes_back_while_others_keep_counting(redis_server):
    port = free_port()
    camera = MjpegCamera(port).start()
    cameras = [
        CameraConfig(name="street", url=camera.url, detect_fps=5, stall_seconds=2, reconnect_max_seconds=1),
        CameraConfig(name="lobby", url=str(CLIP), detect_fps=5, loop=True),
    ]
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=cameras)
    client = redis.Redis.from_url(redis_server.url)

    def processed(name: str) -> int:
        return int(_hash(client, "frames").get(f"{name}|processed", 0))

    def up(name: str) -> bool:
        return _hash(client, "camera_up").get(name) == "1"

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        try:
            await wait_until(lambda: processed("street") >= 10 and up("street"), 60, "frames from the stream")
            faces = _hash(client, "faces_classified")
            assert sum(int(v) for k, v in faces.items() if k.startswith("street|")) >= 10 * 4 - 4
            camera.stop()
            await wait_until(lambda: not up("street"), 15, "camera_up to drop after the server died")
            lobby_before, street_before = processed("lobby"), processed("street")
            await asyncio.sleep(3)
            assert processed("lobby") > lobby_before + 5  # the other camera is unaffected
            assert processed("street") == street_before  # nothing counted from a dead camera
            camera.start()
            await wait_until(lambda: up("street") and processed("street") > street_before + 5, 30, "reconnect")
            assert int(_hash(client, "camera_reconnects")["street"]) >= 1
        finally:
            await server.stop()
            camera.stop()

    asyncio.run(scenario())


def test_corrupt_frames_are_counted_as_failed_and_the_camera_goes_on(redis_server):
    """Every third JPEG of the stream is truncated and padded with garbage."""
    camera = MjpegCamera(free_port(), garbage_every=3).start()
    client = redis.Redis.from_url(redis_server.url)
    frames = _serve_noisy_camera(redis_server.url, camera.url, 10, processed_at_least=10, stop_camera=camera.stop)
    processed, failed = int(frames["noisy|processed"]), int(frames["noisy|failed"])
    assert processed >= 10 and failed >= 3
    assert 0.15 < failed / (processed + failed) < 0.55  # about one in three sampled frames
    assert _hash(client, "camera_up")["noisy"] == "0"  # stopped cleanly with the server


def _serve_noisy_camera(redis_url: str, url: str, detect_fps: float, processed_at_least: int, stop_camera) -> dict:
    """Serve one camera "noisy" until it has processed that many frames; its frame counts by outcome."""
    cameras = [CameraConfig(name="noisy", url=url, detect_fps=detect_fps, stall_seconds=3)]
    config = Config(redis=RedisConfig(url=redis_url), http=HttpConfig(port=0), cameras=cameras)
    client = redis.Redis.from_url(redis_url)

    def processed() -> int:
        return int(_hash(client, "frames").get("noisy|processed", 0))

    async def scenario():
        server = Server(config, redis_url)
        await server.start()
        try:
            await wait_until(lambda: processed() >= processed_at_least, 60, "frames")
        finally:
            await server.stop()
            stop_camera()

    asyncio.run(scenario())
    return _hash(client, "frames")


SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi and gst-rtsp-server live


class RtspCamera:
    """gst-rtsp-server in a subprocess serving the bundled clip's frames; stopped with SIGKILL (a crash)."""

    def __init__(self, port: int, frame_dir):
        self.port, self.frame_dir, self.process = port, frame_dir, None

    def start(self) -> RtspCamera:
        import subprocess
        from pathlib import Path

        script = Path(__file__).with_name("rtsp_server.py")
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(script), str(self.port), str(self.frame_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line.strip() == "ready", self.process.stderr.read()
        return self

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def _write_frames(
    frame_dir, lead_frames: int = 0, tail_frames: int = 0, repeat: int = 1, damage_every: int = 0
) -> None:
    """The bundled clip ``repeat`` times as numbered JPEGs for the RTSP server, between ``lead_frames`` and
    ``tail_frames`` of its empty background; every ``damage_every``-th JPEG truncated and padded with garbage."""
    import cv2

    from binarycop.democlip import clip_frames

    frame_dir.mkdir()
    frames = clip_frames()
    truth = json.loads(TRUTH.read_text())["frames"]
    background = frames[truth.index([])]
    for index, frame in enumerate([background] * lead_frames + frames * repeat + [background] * tail_frames):
        data = cv2.imencode(".jpg", frame)[1].tobytes()
        if damage_every and index % damage_every == damage_every - 1:
            data = data[: len(data) // 3] + b"\x00garbage\xff" * 50 + b"\xff\xd9"  # ends like a JPEG
        (frame_dir / f"frame{index:05d}.jpg").write_bytes(data)


def test_rtsp_camera_counts_survives_a_crash_and_never_shows_its_password(redis_server, tmp_path, caplog):
    import logging

    frame_dir = tmp_path / "frames"
    _write_frames(frame_dir, repeat=12)  # a minute at 10 fps
    port = free_port()
    camera = RtspCamera(port, frame_dir).start()
    url = f"rtsp://viewer:s3cr3t-pw@127.0.0.1:{port}/cam"
    cameras = [CameraConfig(name="gate", url=url, detect_fps=5, stall_seconds=2, reconnect_max_seconds=1)]
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=cameras)
    client = redis.Redis.from_url(redis_server.url)

    def processed() -> int:
        return int(_hash(client, "frames").get("gate|processed", 0))

    def people() -> int:
        return sum(int(v) for k, v in _hash(client, "people").items() if k.startswith("gate|"))

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        try:
            await wait_until(
                lambda: processed() >= 10 and _hash(client, "camera_up").get("gate") == "1", 60, "RTSP frames"
            )
            camera.kill()
            await wait_until(lambda: _hash(client, "camera_up").get("gate") == "0", 15, "camera_up to drop")
            before = processed()
            camera.start()
            await wait_until(lambda: processed() > before + 5, 40, "frames after the camera came back")
            await wait_until(lambda: people() >= 4, 40, "people from the stream")
        finally:
            await server.stop()
            camera.kill()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert int(_hash(client, "camera_reconnects")["gate"]) >= 1
    assert "viewer:***@127.0.0.1" in caplog.text and "s3cr3t-pw" not in caplog.text
    everything = redis_dump(client)
    assert b"s3cr3t" not in everything and b"rtsp" not in everything


def test_known_people_over_rtsp_give_exact_people_per_class(redis_server, tmp_path):
    """The clip's four face sets (one face per class each, gaps between sets) served once over real RTSP,
    after 3 s of empty background (FFmpeg reads the first second or so while opening the stream) and
    before 12 s of it: exactly the known people per class, however the stream is sampled."""
    frame_dir = tmp_path / "frames"
    _write_frames(frame_dir, lead_frames=30, tail_frames=120)
    camera = RtspCamera(free_port(), frame_dir).start()
    url = f"rtsp://127.0.0.1:{camera.port}/cam"
    cameras = [CameraConfig(name="hall", url=url, detect_fps=5, stall_seconds=5)]
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=cameras)
    client = redis.Redis.from_url(redis_server.url)
    expected = {f"hall|all|{name}": str(count) for name, count in expected_people().items()}

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        try:
            await wait_until(lambda: len(_hash(client, "people")) == len(expected), 60, "people of every class")
            try:
                await wait_until(lambda: _hash(client, "people") == expected, 20, f"exactly {expected}")
            except AssertionError as error:
                raise AssertionError(f"{error}; counted {_hash(client, 'people')}") from None
            await asyncio.sleep(3)  # still inside the empty tail: nobody more may be counted
        finally:
            await server.stop()
            camera.kill()

    asyncio.run(scenario())
    assert _hash(client, "people") == expected
    assert int(_hash(client, "frames")["hall|processed"]) >= 40


def test_damaged_frames_inside_rtsp_are_counted_as_failed(redis_server, tmp_path):
    """Every fifth JPEG of the RTSP stream is truncated and padded with garbage (still ending in EOI).
    FFmpeg through OpenCV conceals these and hands out a frame; the RTSP reader counts them as failed."""
    frame_dir = tmp_path / "frames"
    _write_frames(frame_dir, repeat=3, damage_every=5)
    camera = RtspCamera(free_port(), frame_dir).start()
    url = f"rtsp://127.0.0.1:{camera.port}/cam"
    # detect fps above the stream's 10: every frame is examined
    frames = _serve_noisy_camera(redis_server.url, url, 20, processed_at_least=40, stop_camera=camera.kill)
    processed, failed = int(frames["noisy|processed"]), int(frames.get("noisy|failed", 0))
    assert failed >= 8
    assert 0.12 < failed / (processed + failed) < 0.3  # one in five
