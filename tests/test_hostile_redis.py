"""Exactly once whatever Redis holds, and what comes from Redis or a spool file taken as data (issue 26, items 2, 3
and 7). Real redis-server processes on loopback; the demo clip through a real server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter

import pytest
import redis
import redis.asyncio as aioredis

from binarycop.config import RedisConfig
from binarycop.democlip import SLOTS, demo_config, expected_counts, sampled_frames
from binarycop.server import Server
from stats import CountRecorder
from stats.batches import Batch, BatchRefused, empty_counts
from stats.fleet import fleet_status
from stats.leases import Leases
from stats.schema import FACES_KEY, FRAMES_KEY, INGESTERS_KEY, MAX_INGESTERS, PEOPLE_KEY, ingester_key, sequence_key
from stats.spool import MAX_FILE_BYTES, replay_spool, write_spool
from tests.conftest import wait_until


def _batch(seq: int, faces: int, people: int = 0) -> Batch:
    counts = empty_counts()
    counts[FACES_KEY]["gate|all|correct"] = faces
    if people:
        counts[PEOPLE_KEY]["gate|all|correct"] = people
    return Batch(seq, counts, {29000000: Counter({"faces|gate|all|correct": faces})})


def _faces(client: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(FACES_KEY).items()}


def test_a_wrong_type_key_refuses_the_whole_batch_and_retries_never_double_count(redis_server, caplog):
    """`binarycop:people` a string: the batch's faces are not written either (Redis does not roll a script back,
    so nothing may be written before every key is checked), the key is named once, each refusal counted, and
    once the key is fixed the counts go in exactly once."""
    sync = redis.Redis.from_url(redis_server.url)

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client, ingester="test-ingester")
        await client.set(PEOPLE_KEY, "x")
        recorder.add_faces("gate", ["correct", "nose"])
        recorder.add_people("gate", [("all", "correct")])
        tries = [await recorder.flush() for _ in range(5)]
        held = (_faces(sync), recorder.pending, dict(recorder.refused))
        await client.delete(PEOPLE_KEY)
        fixed = await recorder.flush()
        await client.aclose()
        return tries, held, fixed

    with caplog.at_level(logging.ERROR):
        tries, (faces_held, pending, refused), fixed = asyncio.run(scenario())
    assert tries == [False] * 5 and faces_held == {} and pending == 3
    assert refused == {PEOPLE_KEY: 5}
    assert caplog.text.count(f"Redis key '{PEOPLE_KEY}' is a string, not a hash") == 1
    assert fixed and _faces(sync) == {"gate|all|correct": 1, "gate|all|nose": 1}
    assert sync.hgetall(PEOPLE_KEY) == {b"gate|all|correct": b"1"}


@pytest.mark.parametrize(
    "poison",
    [
        lambda c: c.hset(FACES_KEY, "gate|all|nose", "lots"),  # a field that is no count
        lambda c: c.hset(FACES_KEY, "gate|all|nose", "-5"),
        lambda c: c.lpush(FRAMES_KEY, "x"),  # a list
        lambda c: c.hset(sequence_key("test-ingester"), "a", "b"),  # the sequence key a hash
        lambda c: c.set(sequence_key("test-ingester"), "1e99"),
    ],
)
def test_any_bad_value_at_a_batch_key_writes_nothing(redis_server, poison):
    sync = redis.Redis.from_url(redis_server.url)
    poison(sync)
    before = {key: sync.dump(key) for key in sync.keys("*")}

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client, ingester="test-ingester")
        recorder.add_faces("gate", ["correct", "nose"])
        recorder.add_frames("gate", "processed")
        flushed = await recorder.flush()
        await client.aclose()
        return flushed, recorder.pending, sum(recorder.refused.values())

    assert asyncio.run(scenario()) == (False, 3, 1)
    heartbeat = {INGESTERS_KEY.encode(), ingester_key("test-ingester").encode()}  # written beside the batch
    assert {key: sync.dump(key) for key in sync.keys("*") if key not in heartbeat} == before


def test_a_poisoned_sequence_key_is_named_and_counting_goes_on(redis_server, caplog):
    """Someone sets this ingester's sequence key to 999999999999: its next batches were silently skipped."""
    sync = redis.Redis.from_url(redis_server.url)

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client, ingester="test-ingester")
        recorder.add_faces("gate", ["correct"])
        assert await recorder.flush()
        await client.set(sequence_key("test-ingester"), "999999999999")
        for _ in range(3):
            recorder.add_faces("gate", ["correct"])
            assert await recorder.flush()
        await client.aclose()
        return dict(recorder.refused)

    with caplog.at_level(logging.ERROR):
        refused = asyncio.run(scenario())
    assert _faces(sync) == {"gate|all|correct": 4}
    assert refused == {sequence_key("test-ingester"): 1}
    assert (
        f"Redis key {sequence_key('test-ingester')} held 999999999999, not this ingester's last batch 1" in caplog.text
    )


def test_a_wrong_type_key_during_the_clip_leaves_its_totals_exact(redis_server):
    """`SET binarycop:people x` while the clip plays (in real time), then removed: faces and frames are exactly the
    clip's (they were 3x the truth when each retry re-applied the writes before the failing one)."""
    config = demo_config(port=0, loop=False, realtime=True)
    config = config.model_copy(update={"redis": RedisConfig(url=redis_server.url)})
    client = redis.Redis.from_url(redis_server.url)

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        try:
            await wait_until(lambda: int(client.hget(FRAMES_KEY, "demo|processed") or 0) >= 5, 60, "first frames")
            client.set(PEOPLE_KEY, "x")
            await wait_until(lambda: sum(server.recorder.refused.values()) >= 5, 60, "five refused flushes")
            client.delete(PEOPLE_KEY)
            await asyncio.wait_for(server.cameras_done(), timeout=120)
            await wait_until(lambda: server.recorder.pending == 0, 30, "pending counts to reach Redis")
            return dict(server.recorder.refused)
        finally:
            await server.stop()

    refused = asyncio.run(scenario())
    assert refused[PEOPLE_KEY] >= 5
    expected = expected_counts(detect_fps=5)
    assert _faces(client) == {f"demo|all|{name}": expected[name] for name in SLOTS}
    frames = {k.decode(): int(v) for k, v in client.hgetall(FRAMES_KEY).items()}
    assert frames == {"demo|processed": len(sampled_frames(5))}


def test_a_spool_replayed_five_times_against_a_wrong_type_key_counts_once(redis_server, tmp_path):
    spool = tmp_path / "spool"
    write_spool(spool, "old-ingester", [_batch(1, 3, people=1), _batch(2, 7, people=1)])
    sync = redis.Redis.from_url(redis_server.url)
    sync.set(PEOPLE_KEY, "x")

    async def replays(times: int) -> list[int | str]:
        client = aioredis.from_url(redis_server.url)
        applied = []
        for _ in range(times):
            try:
                applied.append(await replay_spool(client, spool))
            except BatchRefused as refusal:  # the server tries again at its next flush
                applied.append(refusal.key)
        await client.aclose()
        return applied

    assert asyncio.run(replays(5)) == [PEOPLE_KEY] * 5 and _faces(sync) == {}
    assert [path.name for path in spool.iterdir()] == ["old-ingester.jsonl"]  # kept for the next try
    sync.delete(PEOPLE_KEY)
    assert asyncio.run(replays(2)) == [12, 0]
    assert _faces(sync) == {"gate|all|correct": 10} and list(spool.iterdir()) == []


def _record(**change) -> dict:
    record = {
        "ingester": "old-ingester",
        "seq": 2,
        "counts": {FACES_KEY: {"gate|all|nose": 5}},
        "history": {"29000000": {"faces|gate|all|nose": 5}},
    }
    return {**record, **change}


@pytest.mark.parametrize(
    "bad",
    [
        _record(counts={FACES_KEY: {"gate|all|correct": -1000}}),
        _record(counts={"otherapp:balance": {"alice": 1000000}}),
        _record(counts={FACES_KEY: {"gate|all|evil": 1}}),
        _record(counts={FACES_KEY: {"gate|all|correct": 1.5}}),
        _record(counts={FACES_KEY: {"gate|all|correct": True}}),
        _record(history={"29000000": {"balance|alice": 10}}),
        _record(history={"-1": {"faces|gate|all|nose": 1}}),
        _record(seq=-3),
        _record(seq=10**18),
        _record(ingester="x\n\x1b[2J"),
        {**_record(), "extra": 1},
        {key: value for key, value in _record().items() if key != "history"},
        [1, 2],
    ],
)
def test_a_spool_line_that_is_not_the_schemas_is_refused_and_the_rest_replayed(redis_server, tmp_path, bad, caplog):
    spool = tmp_path / "spool"
    spool.mkdir()
    good = _record(seq=1, counts={FACES_KEY: {"gate|all|correct": 4}}, history={})
    (spool / "old.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    sync = redis.Redis.from_url(redis_server.url)

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        applied = await replay_spool(client, spool)
        await client.aclose()
        return applied

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) == 4
    assert _faces(sync) == {"gate|all|correct": 4}
    assert sorted(key.decode() for key in sync.keys("*")) == [FACES_KEY, sequence_key("old-ingester")]
    assert [path.name for path in spool.iterdir()] == ["old.damaged"]
    assert "line 2" in caplog.text and "\x1b" not in caplog.text


def test_a_truncated_spool_replays_its_intact_batches(redis_server, tmp_path):
    spool = tmp_path / "spool"
    path = write_spool(spool, "old-ingester", [_batch(1, 3), _batch(2, 4)])
    path.write_bytes(path.read_bytes()[:-20])  # the last line cut short

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        applied = await replay_spool(client, spool)
        await client.aclose()
        return applied

    assert asyncio.run(scenario()) == 3
    assert _faces(redis.Redis.from_url(redis_server.url)) == {"gate|all|correct": 3}
    assert [p.name for p in spool.iterdir()] == ["old-ingester.damaged"]


def _fifo(path):
    os.mkfifo(path)


def _zero_link(path):
    path.symlink_to("/dev/zero")


def _folder(path):
    path.mkdir()


def _too_large(path):
    with open(path, "wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used


@pytest.mark.parametrize("make", [_fifo, _zero_link, _folder, _too_large])
def test_spool_entries_that_are_no_regular_file_of_bounded_size_are_refused_at_once(
    redis_server, tmp_path, make, caplog
):
    """A FIFO hung the start for ever; a link to /dev/zero took the server to 2.6 GB. Each is refused, named,
    and the good file beside it replayed. (The wait_for only keeps a hang from stalling the suite.)"""
    spool = tmp_path / "spool"
    write_spool(spool, "good", [_batch(1, 2)])
    make(spool / "bad.jsonl")

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        applied = await asyncio.wait_for(replay_spool(client, spool), 60)
        await client.aclose()
        return applied

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) == 2
    assert f"spool file {spool / 'bad.jsonl'}" in caplog.text and "not replayed" in caplog.text
    assert os.path.lexists(spool / "bad.jsonl") and not (spool / "good.jsonl").exists()


def test_fake_ingester_entries_cannot_move_cameras_without_end(redis_server, caplog):
    """50 fake live entries in the ingester list (refreshed every round): the one real ingester gives a camera
    back, nobody takes it, and giving back pauses for twice as long each time: a few moves in 60 rounds, not
    one every few rounds."""
    cameras = [f"cam-{i}" for i in range(4)]

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        leases = Leases(client, "real", 15)
        held: list[str] = []
        given_back = 0
        for _ in range(60):
            now = time.time()
            await client.zadd(INGESTERS_KEY, {"real": now, **{f"fake-{i}": now for i in range(50)}})
            plan = await leases.plan(cameras, held)
            await leases.release_all(list(plan.release))
            given_back += len(plan.release)
            held = [c for c in held if c not in plan.stop] + plan.start
        await client.aclose()
        return given_back, held

    with caplog.at_level(logging.WARNING):
        given_back, held = asyncio.run(scenario())
    assert sorted(held) == cameras
    assert 1 <= given_back <= 6  # pauses of 2, 4, 8, 16, 32 rounds (15 give-backs before)
    assert "none of the 50 other live ingesters took it" in caplog.text


def test_the_ingester_list_and_status_are_bounded(redis_server):
    sync = redis.Redis.from_url(redis_server.url)
    now = time.time()
    sync.zadd(INGESTERS_KEY, {f"fake-{i}": now - 1 for i in range(MAX_INGESTERS + 500)})

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client, ingester="real")
        assert await recorder.flush()
        status = await fleet_status(client)
        await client.aclose()
        return status

    status = asyncio.run(scenario())
    assert sync.zcard(INGESTERS_KEY) == MAX_INGESTERS and sync.zscore(INGESTERS_KEY, "real")
    assert len(status["ingesters"]) == MAX_INGESTERS and status["ingesters"][-1]["id"] == "real"


def test_a_camera_given_back_is_stopped_before_its_lease_is_released(redis_server):
    """The lease went first, so another ingester could read the camera while this one still did (23 ms seen)."""
    from binarycop.config import CameraConfig, Config, HttpConfig
    from binarycop.democlip import CLIP
    from stats.schema import lease_key

    cameras = [CameraConfig(name=f"cam-{i}", url=str(CLIP), loop=True) for i in range(2)]
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=cameras)
    sync = redis.Redis.from_url(redis_server.url)

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        holders_at_stop = []
        stop = server._stop_camera

        async def stopping(name):
            holders_at_stop.append(sync.get(lease_key(name)))
            await stop(name)
            holders_at_stop.append(server.camera_tasks.get(name))

        server._stop_camera = stopping
        try:
            sync.zadd(INGESTERS_KEY, {"other": time.time() + 5})  # a second live ingester: our share is one camera
            await server._lease_round()
            released = [name for name in ("cam-0", "cam-1") if sync.get(lease_key(name)) is None]
        finally:
            server._stop_camera = stop
            await server.stop()
        return holders_at_stop, released, server.recorder.ingester

    holders_at_stop, released, ingester = asyncio.run(scenario())
    assert holders_at_stop == [ingester.encode(), None]  # still ours while it stopped; stopped, then released
    assert len(released) == 1


def test_serve_replays_a_refused_spool_once_the_key_is_fixed(redis_server, tmp_path):
    """The spool is refused at the start (a wrong-type key), tried again at each flush, and applied once when the
    key is fixed, while the server runs."""
    from binarycop.config import CameraConfig, Config, HttpConfig, IngesterConfig

    spool = tmp_path / "spool"
    write_spool(spool, "old-ingester", [_batch(1, 3, people=1), _batch(2, 4, people=1)])
    sync = redis.Redis.from_url(redis_server.url)
    sync.set(PEOPLE_KEY, "x")
    config = Config(
        redis=RedisConfig(url=redis_server.url),
        http=HttpConfig(port=0),
        ingester=IngesterConfig(spool_dir=spool),
        cameras=[CameraConfig(name="other", url=str(tmp_path / "absent.mp4"))],
    )

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        try:
            await wait_until(lambda: server._spool_warned, 30, "the spool refused")
            kept = [path.name for path in spool.iterdir()]
            sync.delete(PEOPLE_KEY)
            await wait_until(lambda: not any(spool.iterdir()), 30, "the spool to be replayed")
        finally:
            await server.stop()
        return kept

    assert asyncio.run(scenario()) == ["old-ingester.jsonl"]
    assert _faces(sync) == {"gate|all|correct": 7} and sync.hget(PEOPLE_KEY, "gate|all|correct") == b"2"
