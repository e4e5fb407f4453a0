"""Counts survive a stop while Redis is away (issue 19, item 2): bounded wait, spool file, exactly-once replay.
Real redis-server processes, real `binarycop serve` processes stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter

import redis
import redis.asyncio as aioredis

from binarycop.config import CameraConfig, Config, HttpConfig, IngesterConfig, RedisConfig
from binarycop.democlip import CLIP, SLOTS, expected_counts, expected_people, sampled_frames
from binarycop.server import Server
from stats.redis_store import Batch, apply_batch, empty_counts
from stats.schema import FACES_KEY, FRAMES_KEY, PEOPLE_KEY
from stats.spool import replay_spool, write_spool
from tests.conftest import free_port, wait_until


def _batch(seq: int, faces: int) -> Batch:
    counts = empty_counts()
    counts[FACES_KEY]["gate|all|correct"] = faces
    return Batch(seq, counts, {29000000: Counter({"faces|gate|all|correct": faces})})


def test_spooled_batches_are_replayed_exactly_once(redis_server, tmp_path):
    """Batch 1 reached Redis before the stop (its reply was lost); batch 2 did not. Replaying applies 2 only,
    and a second replay (another ingester starting) finds nothing."""

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        await apply_batch(client, "old-ingester", _batch(1, 3))
        path = write_spool(tmp_path / "spool", "old-ingester", [_batch(1, 3), _batch(2, 4)])
        assert path.exists()
        first = await replay_spool(client, tmp_path / "spool")
        second = await replay_spool(client, tmp_path / "spool")
        stored = await client.hgetall(FACES_KEY)
        await client.aclose()
        return first, second, stored

    first, second, stored = asyncio.run(scenario())
    assert (first, second) == (4, 0)
    assert stored == {b"gate|all|correct": b"7"}
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_damaged_spool_file_is_named_and_kept_aside(redis_server, tmp_path, caplog):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "old.jsonl").write_text('{"ingester": "old", "seq": 1, "counts": {"binarycop:faces_cl')

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        applied = await replay_spool(client, spool)
        await client.aclose()
        return applied

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) == 0
    assert f"spool file {spool / 'old.jsonl'} is damaged" in caplog.text
    assert [path.name for path in spool.iterdir()] == ["old.damaged"]


def test_a_stop_that_cannot_keep_its_counts_says_so_and_fails(tmp_path, caplog):
    """Redis refuses connections and the spool folder cannot be made (a file is in the way): the stop names
    what was lost and why, and the server's exit status is 1."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    ingester = IngesterConfig(stop_wait_seconds=0.5, spool_dir=blocker / "spool")
    cameras = [CameraConfig(name="gate", url=str(CLIP))]
    config = Config(redis=RedisConfig(url=url), http=HttpConfig(port=0), ingester=ingester, cameras=cameras)

    async def scenario():
        server = Server(config, url)
        await server.start()
        server.recorder.add_faces("gate", ["correct", "nose", "chin"])  # three faces counted, never flushed
        await server.stop()
        return server.exit_status

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) == 1
    assert "3 counts LOST: Redis did not take them within 0.5 s of the stop" in caplog.text
    assert f"cannot write the spool file {blocker / 'spool'}" in caplog.text


class _Serve:
    """`binarycop serve` in a subprocess, its log lines collected as they come."""

    def __init__(self, config_path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "binarycop.cli", "serve", "--config", str(config_path)]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _config(path, redis_url: str, spool, camera: str) -> None:
    path.write_text(
        f"redis: {{url: '{redis_url}'}}\n"
        "http: {port: 0, metrics: local}\n"
        f"ingester: {{stop_wait_seconds: 1, spool_dir: '{spool}'}}\n"
        f"cameras:\n  - {camera}\n"
    )


def test_sigterm_during_a_redis_outage_keeps_the_counts_for_the_next_start(redis_server, tmp_path):
    """Redis stops answering (SIGSTOP) as soon as the camera is leased; the clip (14 s, at its own pace) is
    counted meanwhile and `serve` gets SIGTERM. It waits 1 s, keeps the counts in the spool and exits 0. Redis
    wakes and runs the flush it had received unanswered (the first second's counts); the next `serve` replays
    the spool, that batch skipped, the rest applied: exactly the clip's totals."""
    spool = tmp_path / "spool"
    client = redis.Redis.from_url(redis_server.url)
    first_config, second_config = tmp_path / "first.yaml", tmp_path / "second.yaml"
    _config(first_config, redis_server.url, spool, f"{{name: clip, url: '{CLIP}', detect_fps: 5}}")
    _config(second_config, redis_server.url, spool, f"{{name: other, url: '{tmp_path / 'absent.mp4'}'}}")

    async def until(condition, timeout, what):
        await wait_until(condition, timeout, what)

    first = _Serve(first_config)
    frozen = False
    try:
        asyncio.run(until(lambda: client.exists("binarycop:lease:clip"), 120, "the camera to be leased"))
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        frozen = True
        asyncio.run(until(lambda: "camera clip: stopped" in first.log, 120, "the clip to end"))
        assert first.stop() == 0, first.log
    finally:
        if frozen:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        first.stop()
    assert "of the stop: kept in" in first.log, first.log
    assert [path.suffix for path in spool.iterdir()] == [".jsonl"]

    expected = expected_counts(detect_fps=5)
    faces_wanted = {f"clip|all|{name}": expected[name] for name in SLOTS}

    def faces() -> dict[str, int]:
        return {k.decode(): int(v) for k, v in client.hgetall(FACES_KEY).items()}

    second = _Serve(second_config)
    try:
        asyncio.run(until(lambda: not any(spool.iterdir()), 120, "the spool to be replayed"))
    finally:
        assert second.stop() == 0, second.log
    applied = re.search(r"replayed: (\d+) counts applied", second.log)
    assert applied and int(applied.group(1)) > 0, second.log  # the spool held counts Redis never had
    assert faces() == faces_wanted
    assert int(client.hget(FRAMES_KEY, "clip|processed")) == len(sampled_frames(5))
    people = {k.decode(): int(v) for k, v in client.hgetall(PEOPLE_KEY).items()}
    assert people == {f"clip|all|{name}": count for name, count in expected_people().items()}


def test_serve_that_cannot_keep_its_counts_at_a_stop_exits_1(redis_server, tmp_path):
    """The same stop, with a file where the spool folder should be: the log names the lost counts and the
    reason, and `serve` exits with status 1 (it exited 0 with the counts gone)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    client = redis.Redis.from_url(redis_server.url)
    config = tmp_path / "config.yaml"
    _config(config, redis_server.url, blocker / "spool", f"{{name: clip, url: '{CLIP}', realtime: false}}")

    async def until(condition, timeout, what):
        await wait_until(condition, timeout, what)

    serve = _Serve(config)
    frozen = False
    try:
        asyncio.run(until(lambda: client.exists("binarycop:lease:clip"), 120, "the camera to be leased"))
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        frozen = True
        asyncio.run(until(lambda: "camera clip: stopped" in serve.log, 120, "the clip to end"))
        status = serve.stop()
    finally:
        if frozen:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        serve.stop()
    assert status == 1, serve.log
    assert re.search(r"\d+ counts LOST: Redis did not take them within 1 s of the stop, and cannot write", serve.log)
