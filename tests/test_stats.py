"""Counts in a real Redis server, and /metrics exposition read back from it."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stats import CountRecorder, make_registry, read_counts
from stats.embedded import EmbeddedRedis
from stats.schema import CAMERA_SEEN_KEY, CAMERA_UP_KEY, FACES_KEY, FRAMES_KEY, SITE_KEY


def _samples(text: str) -> dict[tuple, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_counts_flushed_to_redis_and_exposed(redis_server):
    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client)
        recorder.add_faces("gate-1", ["correct", "correct", "nose", "no_mask"])
        recorder.add_faces("gate-2", ["chin"])
        recorder.add_frames("gate-1", "processed", 3)
        recorder.add_frames("gate-1", "dropped", 1)
        recorder.set_camera_up("gate-1", True)
        recorder.set_camera_up("gate-2", False)
        recorder.set_build_info("0.1.0", "cpu", "n-cnv")
        assert await recorder.flush() and recorder.pending == 0
        recorder.add_faces("gate-1", ["correct"])
        assert await recorder.flush()
        stored = await client.hgetall(FACES_KEY)
        registry, collector = make_registry()
        collector.counts = await read_counts(client)
        await client.aclose()
        return stored, generate_latest(registry).decode()

    stored, text = asyncio.run(scenario())
    assert stored == {
        b"gate-1|all|correct": b"3",
        b"gate-1|all|nose": b"1",
        b"gate-1|all|no_mask": b"1",
        b"gate-2|all|chin": b"1",
    }
    samples = _samples(text)
    faces = {labels: value for (name, labels), value in samples.items() if name == "binarycop_faces_classified_total"}
    for field, value in stored.items():
        camera, zone, mask_class = field.decode().split("|")
        key = tuple(sorted({"camera": camera, "zone": zone, "mask_class": mask_class}.items()))
        assert faces[key] == float(value)
    assert len(faces) == len(stored)
    assert samples[("binarycop_frames_total", (("camera", "gate-1"), ("outcome", "dropped")))] == 1
    assert samples[("binarycop_camera_up", (("camera", "gate-1"),))] == 1
    assert samples[("binarycop_camera_up", (("camera", "gate-2"),))] == 0
    assert samples[("binarycop_build_info", (("backend", "cpu"), ("model", "n-cnv"), ("version", "0.1.0")))] == 1


def test_counts_kept_while_redis_is_away(redis_server, tmp_path):
    """Counts added while Redis is down stay pending and are written once it is back."""
    from tests.conftest import RedisServer

    async def scenario():
        client = aioredis.from_url(redis_server.url, socket_connect_timeout=0.5)
        recorder = CountRecorder(client)
        recorder.add_frames("cam", "processed", 2)
        assert await recorder.flush()
        redis_server.stop()
        recorder.add_frames("cam", "processed", 5)
        assert not await recorder.flush()
        assert recorder.pending == 5
        return client, recorder

    client, recorder = asyncio.run(scenario())

    async def after_restart(port):
        client = aioredis.from_url(f"redis://127.0.0.1:{port}/0")
        recorder.client = client
        assert await recorder.flush()
        value = await client.hget(FRAMES_KEY, "cam|processed")
        await client.aclose()
        return value

    restarted = RedisServer(tmp_path)
    try:
        assert asyncio.run(after_restart(restarted.port)) == b"5"  # the new server had none; nothing lost
        assert recorder.pending == 0
    finally:
        restarted.stop()


def test_unknown_frame_outcome_refused():
    with pytest.raises(ValueError, match="frame outcome"):
        CountRecorder(client=None).add_frames("cam", "exploded")


def test_embedded_redis_is_a_real_server(tmp_path):
    embedded = EmbeddedRedis(str(tmp_path))

    async def scenario():
        client = aioredis.from_url(embedded.url)
        await client.hincrby("k", "f", 2)
        value = await client.hget("k", "f")
        info = await client.info("server")
        await client.aclose()
        return value, info

    try:
        value, info = asyncio.run(scenario())
    finally:
        embedded.close()
    assert value == b"2" and info["redis_version"].startswith("6.")


def test_metrics_while_redis_is_away_still_show_pending_counts():
    """With Redis unreachable the exposition keeps this process's own gauges, so an alert can fire."""
    registry, collector = make_registry(pending=lambda: 7)
    collector.redis_up = False
    collector.counts = {}
    samples = _samples(generate_latest(registry).decode())
    assert samples[("binarycop_counts_pending", (("process", "main"),))] == 7
    assert samples[("binarycop_redis_up", ())] == 0
    assert samples[("process_resident_memory_bytes", ())] > 0  # the process's own metrics need no Redis


def test_metrics_show_each_helper_process_pending_counts_and_refused_batches():
    """A server's /metrics serves what its helper processes report beside its own, by ``process``."""
    now = f"{time.time():.3f}"
    gauges = {CAMERA_UP_KEY: {"door": "1"}, CAMERA_SEEN_KEY: {"door": now}, SITE_KEY: {"door": "hall"}}
    peers = {
        "helper-1": {"pending": 12, "refused": {"binarycop:faces": 3}, "gauges": gauges},
        "helper-2": {"pending": 0, "refused": {}},
    }
    own = lambda: {CAMERA_UP_KEY: {"gate": "1"}, CAMERA_SEEN_KEY: {"gate": now}}  # noqa: E731
    registry, collector = make_registry(
        pending=lambda: 5, local=own, refused=lambda: {"binarycop:people": 1}, peers=lambda: peers
    )
    collector.redis_up = False
    samples = _samples(generate_latest(registry).decode())
    up = {dict(labels)["camera"]: value for (name, labels), value in samples.items() if name == "binarycop_camera_up"}
    assert up == {"gate": 1, "door": 1}  # while Redis is away, the helpers' cameras beside this process's own
    assert samples[("binarycop_camera_info", (("camera", "door"), ("site", "hall")))] == 1
    pending = {dict(labels)["process"]: value for (name, labels), value in samples.items() if name.endswith("pending")}
    assert pending == {"main": 5, "helper-1": 12, "helper-2": 0}
    refused = {labels: value for (name, labels), value in samples.items() if name.endswith("refused_batches_total")}
    assert refused == {
        (("key", "binarycop:people"), ("process", "main")): 1,
        (("key", "binarycop:faces"), ("process", "helper-1")): 3,
    }


def test_stage_histogram_from_redis_fields():
    """Durations recorded by the recorder come back as a cumulative Prometheus histogram."""
    recorder = CountRecorder(client=None)
    for seconds in (0.0004, 0.003, 0.003, 0.2, 7.0):
        recorder.observe("detect", seconds)
    stored = {key: str(value) for key, value in recorder._open["binarycop:stage_duration"].items()}
    registry, collector = make_registry()
    collector.counts = {"binarycop:stage_duration": stored}
    samples = _samples(generate_latest(registry).decode())
    bucket = "binarycop_stage_duration_seconds_bucket"
    assert samples[(bucket, (("le", "0.001"), ("stage", "detect")))] == 1
    assert samples[(bucket, (("le", "0.005"), ("stage", "detect")))] == 3
    assert samples[(bucket, (("le", "5.0"), ("stage", "detect")))] == 4
    assert samples[(bucket, (("le", "+Inf"), ("stage", "detect")))] == 5
    assert samples[("binarycop_stage_duration_seconds_count", (("stage", "detect"),))] == 5
    assert samples[("binarycop_stage_duration_seconds_sum", (("stage", "detect"),))] == pytest.approx(7.2064)


def test_camera_latency_histogram_through_a_real_redis(redis_server):
    """End-to-end durations recorded with their camera reach Redis and come back as one histogram per camera, so
    the slow camera can be found; other stages stay out of it."""

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client)
        for seconds in (0.02, 0.04, 0.3):
            recorder.observe("end_to_end", seconds, camera="slow-cam")
        recorder.observe("end_to_end", 0.004, camera="fast-cam")
        recorder.observe("detect", 9.0, camera="fast-cam")
        recorder.add_frames("slow-cam", "processed")
        assert await recorder.flush()
        registry, collector = make_registry()
        collector.counts = await read_counts(client)
        await client.aclose()
        return _samples(generate_latest(registry).decode())

    samples = asyncio.run(scenario())
    bucket = "binarycop_camera_latency_seconds_bucket"
    assert samples[(bucket, (("camera", "slow-cam"), ("le", "0.025")))] == 1
    assert samples[(bucket, (("camera", "slow-cam"), ("le", "0.25")))] == 2
    assert samples[(bucket, (("camera", "slow-cam"), ("le", "+Inf")))] == 3
    assert samples[("binarycop_camera_latency_seconds_sum", (("camera", "slow-cam"),))] == pytest.approx(0.36)
    assert samples[("binarycop_camera_latency_seconds_count", (("camera", "fast-cam"),))] == 1
    assert samples[("binarycop_stage_duration_seconds_count", (("stage", "end_to_end"),))] == 4


def test_camera_latency_fields_that_are_no_count_are_skipped():
    from stats.schema import CAMERA_LATENCY_KEY
    from stats.snapshot import clean_counts

    stored = {"gate|count": "2", "gate|3": "2", "<img>|count": "1", "gate|99": "1", "gate|sum_us": "x"}
    clean, bad = clean_counts({CAMERA_LATENCY_KEY: stored})
    assert clean[CAMERA_LATENCY_KEY] == {"gate|count": "2", "gate|3": "2"} and len(bad) == 3


def test_exporter_command_serves_what_ingesters_wrote(redis_server):
    """`binarycop exporter` (a separate process, no cameras) exposes the counts in a shared Redis."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import free_port

    async def write():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client)
        recorder.add_faces("gate-1", ["correct", "correct", "chin"])
        recorder.add_people("gate-1", [("all", "correct")])
        assert await recorder.flush()
        await client.aclose()

    asyncio.run(write())
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "binarycop.cli", "exporter", "--redis-url", redis_server.url, "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        samples = _samples(text)
        labels = (("camera", "gate-1"), ("mask_class", "correct"), ("zone", "all"))
        assert samples[("binarycop_faces_classified_total", labels)] == 2
        assert samples[("binarycop_people_total", labels)] == 1
        # prometheus_client's process and platform collectors: the exporter's own memory and CPU
        assert samples[("process_resident_memory_bytes", ())] > 10e6
        assert ("process_cpu_seconds_total", ()) in samples
        assert any(name == "python_info" for name, _ in samples)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            assert response.read() == b"ready\n"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_a_forgotten_camera_leaves_the_exposition_and_comes_back_with_its_totals(redis_server):
    """forget_camera (hot reload removed it): none of its series is served, the others are; run again, its
    counters resume from their totals (kept in Redis, so Prometheus sees no reset)."""

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client)
        for camera in ("kept", "gone"):
            recorder.set_site(camera, "hall")
            recorder.set_camera_up(camera, False)
            recorder.add_faces(camera, ["correct", "nose"])
        assert await recorder.flush()
        recorder.forget_camera("gone")
        assert await recorder.flush()
        removed = _samples(generate_latest(_registry_of(await read_counts(client))).decode())
        recorder.set_camera_up("gone", True)
        assert await recorder.flush()
        back = _samples(generate_latest(_registry_of(await read_counts(client))).decode())
        await client.aclose()
        return removed, back

    removed, back = asyncio.run(scenario())
    assert not [key for key in removed if ("camera", "gone") in key[1]]
    assert removed[("binarycop_camera_up", (("camera", "kept"),))] == 0
    assert removed[("binarycop_camera_info", (("camera", "kept"), ("site", "hall")))] == 1
    faces = ("binarycop_faces_classified_total", (("camera", "gone"), ("mask_class", "nose"), ("zone", "all")))
    assert back[faces] == 1 and back[("binarycop_camera_up", (("camera", "gone"),))] == 1


def _registry_of(counts):
    registry, collector = make_registry()
    collector.counts = counts
    return registry


def test_a_camera_handed_over_is_reported_by_its_new_ingester_only(redis_server):
    """Before, the ingester that gave a camera up kept writing its last camera_up (0) at every flush, over the new
    owner's 1: camera_up flapped. Released, only the new owner's value is written."""

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        old, new = CountRecorder(client, "old"), CountRecorder(client, "new")
        old.set_camera_up("gate", False)  # its reader stopped at the handover
        old.release_camera("gate")
        new.set_camera_up("gate", True)
        values = []
        for _ in range(3):
            assert await new.flush() and await old.flush()
            values.append(await client.hget("binarycop:camera_up", "gate"))
        await client.aclose()
        return values

    assert asyncio.run(scenario()) == [b"1", b"1", b"1"]
