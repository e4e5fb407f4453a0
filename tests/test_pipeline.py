"""The whole slice on the bundled clip: file -> BlazeFace -> n-CNV (cpu) -> real Redis -> /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import redis

from binarycop.config import CameraConfig, Config, HttpConfig, RedisConfig
from binarycop.democlip import CLIP, SLOTS, demo_config, expected_counts, expected_people, sampled_frames
from binarycop.server import Server
from stats.embedded import instance_dir
from stats.schema import FACES_KEY, FRAMES_KEY
from tests.conftest import free_port, redis_dump

# Every key an ingester may write: count hashes, history buckets, heartbeats, sequence numbers, leases.
ALLOWED_KEYS = re.compile(
    rb"binarycop:(faces_classified|frames|camera_up|camera_seen|build_info|camera_reconnects|people|faces_visible"
    rb"|stage_duration|camera_latency|classifier_crops|camera_site|camera_error|camera_last_frame|camera_removed"
    rb"|ingesters|history:\d+|ingester:[\w.-]+(:seq)?|lease:[\w-]+)"
)


def _run_to_end(config: Config, redis_url: str) -> None:
    async def scenario():
        server = Server(config, redis_url)
        await server.start()
        try:
            await asyncio.wait_for(server.cameras_done(), timeout=300)
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_clip_gives_exact_counts_in_redis(redis_server):
    config = demo_config(port=0, loop=False, realtime=False)
    config = config.model_copy(update={"redis": RedisConfig(url=redis_server.url)})
    _run_to_end(config, redis_server.url)

    client = redis.Redis.from_url(redis_server.url)
    faces = {k.decode(): int(v) for k, v in client.hgetall(FACES_KEY).items()}
    frames = {k.decode(): int(v) for k, v in client.hgetall(FRAMES_KEY).items()}
    expected = expected_counts(detect_fps=5)
    assert faces == {f"demo|all|{name}": expected[name] for name in SLOTS}
    assert frames == {"demo|processed": len(sampled_frames(5))}
    people = {k.decode(): int(v) for k, v in client.hgetall("binarycop:people").items()}
    assert people == {f"demo|all|{name}": count for name, count in expected_people().items()}
    visible = {k.decode(): int(v) for k, v in client.hgetall("binarycop:faces_visible").items()}
    assert visible and set(visible.values()) == {0}  # the camera ended: nobody in view
    # privacy: only the count keys exist, and nothing in them names the source
    assert all(ALLOWED_KEYS.fullmatch(key) for key in client.keys("*")), client.keys("*")
    assert str(CLIP).encode() not in redis_dump(client) and b"mp4" not in redis_dump(client)


def test_a_blazeface_camera_counts_the_clip_people_exactly(redis_server, monkeypatch):
    """The same clip through a camera set to the other detector (``detector: {kind: blazeface}``)."""
    from detector.blazeface import BlazeFaceDetector

    frames_seen = []
    detect = BlazeFaceDetector.detect

    def counting_detect(self, frame_bgr, *args, **kwargs):
        if frame_bgr.any():  # not the start-up check's blank frame (detector.check_detector)
            frames_seen.append(frame_bgr.shape)
        return detect(self, frame_bgr, *args, **kwargs)

    monkeypatch.setattr(BlazeFaceDetector, "detect", counting_detect)
    camera = CameraConfig(name="door", url=str(CLIP), realtime=False, detector={"kind": "blazeface"})
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=[camera])
    _run_to_end(config, redis_server.url)

    client = redis.Redis.from_url(redis_server.url)
    people = {k.decode(): int(v) for k, v in client.hgetall("binarycop:people").items()}
    assert people == {f"door|all|{name}": count for name, count in expected_people().items()}
    frames = {k.decode(): int(v) for k, v in client.hgetall(FRAMES_KEY).items()}
    assert frames == {"door|processed": len(sampled_frames(5))}
    assert len(frames_seen) == len(sampled_frames(5))  # every frame went through BlazeFace, none through YuNet


def test_bad_sources_are_counted_as_failed_and_others_keep_counting(redis_server, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(50_000))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(CLIP.read_bytes()[: CLIP.stat().st_size // 3])
    cameras = [
        CameraConfig(name="garbage", url=str(garbage), realtime=False),
        CameraConfig(name="missing", url=str(tmp_path / "absent.mp4"), realtime=False),
        CameraConfig(name="truncated", url=str(truncated), realtime=False),
        CameraConfig(name="good", url=str(CLIP), realtime=False),
    ]
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=cameras)
    _run_to_end(config, redis_server.url)

    client = redis.Redis.from_url(redis_server.url)
    frames = {k.decode(): int(v) for k, v in client.hgetall(FRAMES_KEY).items()}
    assert frames["garbage|failed"] >= 1 and frames["missing|failed"] == 1
    assert frames["good|processed"] == len(sampled_frames(5))
    assert frames.get("truncated|processed", 0) < frames["good|processed"]
    assert {k: v for k, v in client.hgetall("binarycop:camera_up").items()} == {
        b"garbage": b"0",
        b"missing": b"0",
        b"truncated": b"0",
        b"good": b"0",
    }  # all ended


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_serve_end_to_end_with_embedded_redis(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"http: {{bind: 127.0.0.1, port: {port}}}\n"
        f"cameras:\n  - {{name: entrance, url: '{CLIP}', detect_fps: 5, site: hall, loop: true}}\n"
        "  - {name: gate, url: 'rtsp://admin:${GATE_PASSWORD}@127.0.0.1:9/stream'}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["GATE_PASSWORD"] = "pa55word"
    env["XDG_DATA_HOME"] = str(tmp_path)  # where serve keeps its embedded Redis's data
    server = subprocess.Popen(
        [sys.executable, "-m", "binarycop.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        counts: dict[str, float] = {}
        people = 0.0
        while time.monotonic() < deadline and (len(counts) < len(SLOTS) or not people):
            time.sleep(1)
            assert server.poll() is None, server.stderr.read()
            status, text = _get(f"{base}/metrics")
            if status != 200:
                continue
            counts = {
                s.labels["mask_class"]: s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "binarycop_faces_classified_total" and s.value > 0
            }
            people = sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "binarycop_people_total"
            )
        assert set(counts) == set(SLOTS), counts
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        for stage in ("decode", "detect", "classify", "end_to_end"):
            assert samples[("binarycop_stage_duration_seconds_count", (("stage", stage),))] > 0
        assert samples[("binarycop_classifier_crops_total", (("backend", "cpu"),))] >= 4
        assert (
            samples[("binarycop_people_total", (("camera", "entrance"), ("mask_class", "nose"), ("zone", "all")))] >= 1
        )
        assert ("binarycop_counts_pending", (("process", "main"),)) in samples
        assert samples[("binarycop_redis_up", ())] == 1
        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/readyz") == (200, "ready\n")
        page_status, page = _get(f"{base}/")
        assert page_status == 200 and "/api/status" in page
        status, body = _get(f"{base}/api/status")
        entrance = json.loads(body)["cameras"]["entrance"]
        assert entrance["up"] is True and entrance["frames"]["processed"] > 0
        assert entrance["people"]["total"] >= 1 and entrance["faces"]["total"] >= 1
        assert 0 < entrance["faces"]["compliance"] < 1
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    kept = tmp_path / "binarycop" / instance_dir(config).name / "counts.aof"  # this config's own embedded Redis
    assert kept.stat().st_size > 0  # counts kept for the next start
    assert "pa55word" not in out + err and "admin:***@127.0.0.1" in err  # credentials redacted in logs
