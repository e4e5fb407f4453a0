"""Redis that loses nothing, camera leases across ingester processes, password and TLS. All against real
redis-server processes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from binarycop.config import RedisConfig, parse_config, redis_client
from binarycop.democlip import CLIP, SLOTS, demo_config, expected_counts, expected_people, sampled_frames
from binarycop.server import Server
from stats import CountRecorder
from stats.leases import Leases, lease_key
from stats.schema import FACES_KEY, FRAMES_KEY, HISTORY_SECONDS, INGESTERS_KEY, PEOPLE_KEY
from tests.conftest import free_port, output_of, redis_server_binary, wait_until


def test_a_batch_retried_after_a_lost_reply_counts_once(redis_server):
    """The retry of a flush whose reply never came (Redis applied it) must not count twice."""

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        recorder = CountRecorder(client, ingester="test-ingester")
        recorder.add_faces("gate", ["correct", "nose"])
        recorder._seal()
        batch = recorder._sealed
        await recorder._apply(batch)  # Redis applied it ...
        await recorder._apply(batch)  # ... the reply was lost, so the same batch is sent again
        assert await recorder.flush() and recorder.pending == 0  # and once more by the normal path
        recorder.add_faces("gate", ["correct"])
        assert await recorder.flush()
        stored = await client.hgetall(FACES_KEY)
        seq = await client.get("binarycop:ingester:test-ingester:seq")
        history_ttls = [await client.ttl(key) async for key in client.scan_iter(match="binarycop:history:*")]
        await client.aclose()
        return stored, seq, history_ttls

    stored, seq, history_ttls = asyncio.run(scenario())
    assert stored == {b"gate|all|correct": b"2", b"gate|all|nose": b"1"}
    assert seq == b"2"
    assert history_ttls and all(0 < ttl <= HISTORY_SECONDS for ttl in history_ttls)  # buckets expire


def test_redis_frozen_for_30_s_mid_run_loses_and_doubles_nothing(redis_server):
    """Redis stops answering (SIGSTOP) for 30 s while the clip plays in real time; commands sent before and
    during the freeze run when it wakes up, while the ingester has already given up on their replies. The
    totals afterwards are exactly the clip's."""
    config = demo_config(port=0, loop=False, realtime=True)
    config = config.model_copy(update={"redis": RedisConfig(url=redis_server.url)})
    client = redis.Redis.from_url(redis_server.url)

    async def scenario():
        server = Server(config, redis_server.url)
        await server.start()
        frozen = False
        try:
            await wait_until(lambda: int(client.hget(FRAMES_KEY, "demo|processed") or 0) >= 5, 60, "first frames")
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            frozen = True
            await asyncio.sleep(30)
            assert server.recorder.pending > 0  # the clip went on counting meanwhile
            os.kill(redis_server.process.pid, signal.SIGCONT)
            frozen = False
            await asyncio.wait_for(server.cameras_done(), timeout=120)
            await wait_until(lambda: server.recorder.pending == 0, 30, "pending counts to reach Redis")
        finally:
            if frozen:
                os.kill(redis_server.process.pid, signal.SIGCONT)
            await server.stop()

    asyncio.run(scenario())
    faces = {k.decode(): int(v) for k, v in client.hgetall(FACES_KEY).items()}
    expected = expected_counts(detect_fps=5)
    assert faces == {f"demo|all|{name}": expected[name] for name in SLOTS}
    assert {k.decode(): int(v) for k, v in client.hgetall(FRAMES_KEY).items()} == {
        "demo|processed": len(sampled_frames(5))
    }
    assert {k.decode(): int(v) for k, v in client.hgetall(PEOPLE_KEY).items()} == {
        f"demo|all|{name}": count for name, count in expected_people().items()
    }


def test_leases_share_cameras_fairly_and_newcomers_get_work(redis_server):
    cameras = [f"cam-{i}" for i in range(5)]

    async def scenario():
        client = aioredis.from_url(redis_server.url)
        first, second = Leases(client, "first", 5), Leases(client, "second", 5)
        await client.zadd(INGESTERS_KEY, {"first": time.time()})
        plan = await first.plan(cameras, [])
        held_first = plan.start
        assert sorted(held_first) == cameras  # alone: everything
        await client.zadd(INGESTERS_KEY, {"second": time.time()})
        held_second: list[str] = []
        for _ in range(4):  # rounds: the first gives back one at a time, the second takes up to its share
            plan = await first.plan(cameras, held_first)
            held_first = [c for c in held_first if c not in plan.stop] + plan.start
            assert [await client.get(lease_key(c)) for c in plan.release] == [b"first"] * len(plan.release)
            await first.release_all(plan.release)  # the camera stopped: now its lease goes
            plan = await second.plan(cameras, held_second)
            held_second = [c for c in held_second if c not in plan.stop] + plan.start
        owners = {c: (await client.get(lease_key(c))).decode() for c in cameras}
        await second.release_all(held_second)
        after_release = await client.get(lease_key(held_second[0]))
        await client.aclose()
        return held_first, held_second, owners, after_release

    held_first, held_second, owners, after_release = asyncio.run(scenario())
    assert sorted(held_first + held_second) == cameras and not set(held_first) & set(held_second)
    assert sorted([len(held_first), len(held_second)]) == [2, 3]
    assert all(owners[c] == "first" for c in held_first) and all(owners[c] == "second" for c in held_second)
    assert after_release is None


def _ingester_cameras(client: redis.Redis, pids: set[int]) -> dict[int, list[str]]:
    """Cameras each running ingester process reports in its heartbeat, by pid."""
    cameras = {}
    for member in client.zrange(INGESTERS_KEY, 0, -1):
        beat = client.hgetall(f"binarycop:ingester:{member.decode()}")
        if beat and int(beat[b"pid"]) in pids and time.time() - float(beat[b"seen"]) < 3:
            cameras[int(beat[b"pid"])] = [c for c in beat.get(b"cameras", b"").decode().split(",") if c]
    return cameras


def _covered_once(cameras: dict[int, list[str]], names: list[str], ingesters: int) -> bool:
    """Every camera in exactly one process, shared evenly (each within one of the others)."""
    flat = [camera for held in cameras.values() for camera in held]
    sizes = [len(held) for held in cameras.values()]
    return len(cameras) == ingesters and sorted(flat) == sorted(names) and max(sizes) - min(sizes) <= 1


def test_three_ingesters_share_cameras_and_take_over_from_a_killed_one(redis_server, tmp_path):
    """Three `binarycop serve` processes, six cameras: each camera runs in exactly one process; SIGKILL one and
    its cameras move to the others within the lease time, and no camera is processed twice."""
    names = [f"cam-{i}" for i in range(6)]
    lease = 3
    config = tmp_path / "config.yaml"
    lines = [
        f"redis: {{url: '{redis_server.url}'}}",
        "http: {port: 0, metrics: local}",
        f"ingester: {{lease_seconds: {lease}, processes: 1}}",  # three separate servers, no helpers
        "cameras:",
    ]
    lines += [f"  - {{name: {name}, url: '{CLIP}', detect_fps: 2, loop: true}}" for name in names]
    config.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "binarycop.cli", "-q", "serve", "--config", str(config)]
    processes = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    pids = {process.pid for process in processes}
    client = redis.Redis.from_url(redis_server.url)

    def processed() -> dict[str, int]:
        return {n: int(client.hget(FRAMES_KEY, f"{n}|processed") or 0) for n in names}

    def rate_is_single(seconds: float = 5) -> None:
        before = processed()
        time.sleep(seconds)
        after = processed()
        for name in names:  # one process reads 2 frames/s; two would read 4
            assert after[name] - before[name] <= 2 * seconds * 1.3 + 1, (name, after[name] - before[name])

    try:

        async def until(condition, timeout, what):
            await wait_until(condition, timeout, what)

        asyncio.run(
            until(lambda: _covered_once(_ingester_cameras(client, pids), names, 3), 180, "three ingesters sharing")
        )
        rate_is_single()

        victim = processes[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        survivors = pids - {victim.pid}
        asyncio.run(
            until(lambda: _covered_once(_ingester_cameras(client, survivors), names, 2), 30, "the cameras to move")
        )
        handover = time.monotonic() - killed_at
        assert handover < 3 * lease, f"handover took {handover:.1f} s"
        rate_is_single()

        status = subprocess.run(
            [sys.executable, "-m", "binarycop.cli", "status", "--redis-url", redis_server.url, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        live = {i["pid"]: i for i in report["ingesters"] if i["seen_ago_s"] < 3}
        assert set(live) == survivors
        holders = {lease_["camera"]: lease_["holder"] for lease_ in report["leases"]}
        assert sorted(holders) == names and set(holders.values()) == {live[pid]["id"] for pid in survivors}
        assert all(0 <= lease_["expires_in_s"] <= lease for lease_ in report["leases"])
        recent = report["recent"]["cameras"]  # from the per-minute history buckets
        assert sorted(recent) == names and all(sum(entry["faces"].values()) > 0 for entry in recent.values())
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    assert [p.returncode for p in processes[1:]] == [0, 0]
    assert client.keys("binarycop:lease:*") == []  # clean shutdown gives the leases back


def _helper_config(tmp_path, redis_url: str, names: list[str], lease: float) -> Path:
    config = tmp_path / "config.yaml"
    lines = [
        f"redis: {{url: '{redis_url}'}}",
        "http: {port: 0}",
        f"ingester: {{lease_seconds: {lease}, processes: {len(names)}}}",
        "cameras:",
    ]
    lines += [f"  - {{name: {name}, url: '{CLIP}', detect_fps: 2, loop: true}}" for name in names]
    config.write_text("\n".join(lines) + "\n")
    return config


def _live_pids(client: redis.Redis) -> set[int]:
    """Pids of the ingesters whose heartbeat is under 3 s old."""
    pids = set()
    for member in client.zrange(INGESTERS_KEY, 0, -1):
        beat = client.hgetall(f"binarycop:ingester:{member.decode()}")
        if beat and time.time() - float(beat[b"seen"]) < 3:
            pids.add(int(beat[b"pid"]))
    return pids


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.startswith("Z")


def test_serve_runs_helper_processes_that_share_the_cameras_and_come_back_when_killed(redis_server, tmp_path):
    """`serve` with ``ingester.processes: 2`` runs a helper ingester process beside its own: the two cameras run
    one in each process from the start (no handover one lease round at a time); a helper killed outright is
    started again and takes its camera back; SIGTERM stops every process cleanly (exit 0, leases given back)."""
    names = ["cam-0", "cam-1"]
    lease = 3
    config = _helper_config(tmp_path, redis_server.url, names, lease)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "binarycop.cli", "serve", "--config", str(config)]
    serve = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_server.url)

    def helpers() -> set[int]:
        return _live_pids(client) - {serve.pid}

    try:

        async def until(condition, timeout, what):
            await wait_until(condition, timeout, what)

        asyncio.run(until(lambda: len(helpers()) == 1, 120, "the helper's heartbeat"))
        (helper,) = helpers()
        pids = {serve.pid, helper}
        asyncio.run(until(lambda: _covered_once(_ingester_cameras(client, pids), names, 2), 60, "a camera each"))
        before = client.hgetall(FRAMES_KEY)

        os.kill(helper, signal.SIGKILL)
        asyncio.run(until(lambda: len(helpers() - {helper}) == 1, 120, "a new helper"))
        (new_helper,) = helpers() - {helper}
        pids = {serve.pid, new_helper}
        asyncio.run(until(lambda: _covered_once(_ingester_cameras(client, pids), names, 2), 60, "a camera each again"))
        after = client.hgetall(FRAMES_KEY)
        for name in names:  # both cameras went on counting
            key = f"{name}|processed".encode()
            assert int(after[key]) > int(before.get(key, 0)), name
    finally:
        serve.send_signal(signal.SIGTERM)
        _, stderr = output_of(serve, 90)
    assert serve.returncode == 0, stderr[-3000:]
    assert f"(pid {helper}) exited with status -9: started again" in stderr
    assert _gone(new_helper)
    assert client.keys("binarycop:lease:*") == []  # every process gave its leases back


def test_a_helper_stops_with_its_server_even_when_the_server_is_killed(redis_server, tmp_path):
    """SIGKILL the `serve` process: it cannot stop its helper, but the helper's pipe from it closes, and the
    helper stops on its own (flushing its counts), rather than running on unsupervised."""
    config = _helper_config(tmp_path, redis_server.url, ["cam-0", "cam-1"], 3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "binarycop.cli", "-q", "serve", "--config", str(config)]
    serve = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(redis_server.url)
    try:
        asyncio.run(wait_until(lambda: len(_live_pids(client) - {serve.pid}) == 1, 120, "the helper's heartbeat"))
        (helper,) = _live_pids(client) - {serve.pid}
    finally:
        serve.kill()
        serve.wait(timeout=30)
    deadline = time.monotonic() + 60
    while not _gone(helper) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(helper), "the helper outlived its server"
    assert int(client.hget(FRAMES_KEY, "cam-0|processed") or 0) + int(client.hget(FRAMES_KEY, "cam-1|processed") or 0)


def test_a_server_serves_its_helpers_pending_counts_and_cameras_while_redis_is_away(redis_server, tmp_path):
    """Only the server serves /metrics, and while Redis is away no helper's heartbeat reaches Redis: each helper
    reports what it holds to its server over its stdout pipe, so `binarycop_counts_pending` shows every process's
    counts, by process, and `binarycop_camera_up` every process's cameras. The counts grow through the outage (a
    lease long enough for the cameras to go on counting in it) and fall back once Redis is back and takes them (the
    cameras keep counting, so between flushes a few are always pending)."""
    from tests.test_outage import _get, _redis_on, _samples

    port = free_port()
    config = _helper_config(tmp_path, redis_server.url, ["cam-0", "cam-1"], 30)
    config.write_text(config.read_text().replace("http: {port: 0}", f"http: {{port: {port}}}"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "binarycop.cli", "serve", "--config", str(config)]
    serve = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_server.url)
    held = 40  # counts: ten seconds or so of both cameras, far above what waits between two flushes
    restarted = None

    scraped: list[dict] = [{}]

    def pending() -> dict[str, float]:
        try:
            scraped[0] = samples = _samples(_get(f"http://127.0.0.1:{port}/metrics"))
        except OSError:
            return {}
        return {dict(labels)["process"]: value for (name, labels), value in samples.items() if name.endswith("pending")}

    def processed() -> list[int]:
        frames = client.hgetall(FRAMES_KEY)
        return [int(frames.get(f"cam-{n}|processed".encode(), 0)) for n in (0, 1)]

    try:
        asyncio.run(wait_until(lambda: len(_live_pids(client) - {serve.pid}) == 1, 120, "the helper's heartbeat"))
        pids = _live_pids(client)
        names = ["cam-0", "cam-1"]
        asyncio.run(wait_until(lambda: _covered_once(_ingester_cameras(client, pids), names, 2), 60, "a camera each"))
        asyncio.run(wait_until(lambda: min(processed()) > 0, 60, "both cameras counting"))
        healthy = pending()
        before = processed()
        redis_server.stop()
        asyncio.run(wait_until(lambda: min(pending().values(), default=0) >= held, 20, "counts held in both"))
        outage = pending()
        cameras_up = {
            dict(labels)["camera"]: value
            for (name, labels), value in scraped[0].items()
            if name == "binarycop_camera_up"
        }
        restarted = _redis_on(redis_server.port, tmp_path)
        asyncio.run(wait_until(lambda: max(pending().values(), default=held) < held, 30, "both processes flushed"))
        client = redis.Redis.from_url(redis_server.url)
        after = processed()  # Redis started empty: all it holds was counted in the outage or since
    finally:
        serve.send_signal(signal.SIGTERM)
        stdout, stderr = output_of(serve, 90)
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=10)
    assert serve.returncode == 0, stderr[-3000:]
    assert set(healthy) == {"main", "helper-1"} and max(healthy.values()) < held
    assert set(outage) == {"main", "helper-1"}
    assert cameras_up == {"cam-0": 1, "cam-1": 1}  # the helper's camera too, from its report
    assert min(after) > 0, (before, after)  # each process's camera: its outage counts went in
    assert "binarycop-helper-report" not in stdout  # the reports are the server's to read, never printed


@pytest.mark.parametrize(
    "line",
    [
        b"a library's own output\n",
        b"[1, 2]\n",
        b'{"binarycop-helper-report": {"pending": "many", "refused": {}}}\n',
        b'{"binarycop-helper-report": {"pending": 1, "refused": [1]}}\n',
        b'{"binarycop-helper-report": {"pending": 1}}\n',
        b'{"binarycop-helper-report": {"pending": 1, "refused": {}, "gauges": {"binarycop:camera_up": [1]}}}\n',
    ],
)
def test_only_a_whole_helper_report_is_read_as_one(line):
    """What else a helper prints on its stdout is passed through, never taken for its counts."""
    from binarycop.ingesters import _parse_report

    assert _parse_report(line) is None
    from binarycop.ingesters import REPORTED_GAUGES

    good = b'{"binarycop-helper-report": {"pending": 4, "refused": {"binarycop:faces": 2}, "gauges": '
    good += b'{"binarycop:camera_up": {"door": "1"}, "binarycop:elsewhere": {"x": "1"}}}}\n'
    gauges = {key: {"door": "1"} if key == "binarycop:camera_up" else {} for key in REPORTED_GAUGES}
    assert _parse_report(good) == {"pending": 4, "refused": {"binarycop:faces": 2}, "gauges": gauges}


def _tls_files(directory) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command."""
    paths = {name: str(directory / name) for name in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr")}
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=binarycop-test-ca",
        "-keyout", paths["ca.key"], "-out", paths["ca.crt"])  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", paths["server.key"], "-out", paths["server.csr"])  # fmt: skip
    run("x509", "-req", "-in", paths["server.csr"], "-CA", paths["ca.crt"], "-CAkey", paths["ca.key"],
        "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", paths["server.crt"])  # fmt: skip
    return paths


def _start_redis(tmp_path, *args: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [redis_server_binary(), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    assert process.poll() is None, "redis-server did not start"
    return process


def test_password_and_tls_are_used_and_a_wrong_password_is_named(tmp_path):
    files = _tls_files(tmp_path)
    port = free_port()
    process = _start_redis(
        tmp_path,
        "--port", "0", "--tls-port", str(port), "--requirepass", "s3cret-pass",
        "--tls-cert-file", files["server.crt"], "--tls-key-file", files["server.key"],
        "--tls-ca-cert-file", files["ca.crt"], "--tls-auth-clients", "no",
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0"
    tls = f"tls: {{ca_file: '{files['ca.crt']}'}}"
    text = f"redis: {{url: '{url}', password: '${{REDIS_PASSWORD}}', {tls}}}\ncameras: [{{name: cam, url: '{CLIP}'}}]\n"

    async def flush_with(password: str):
        config = parse_config(text, environ={"REDIS_PASSWORD": password})
        client = redis_client(config.redis)
        try:
            recorder = CountRecorder(client)
            recorder.add_faces("cam", ["correct"])
            assert await recorder.flush()
            return await client.hget(FACES_KEY, "cam|all|correct")
        finally:
            await client.aclose()

    async def server_start_with(password: str):
        config = parse_config(text, environ={"REDIS_PASSWORD": password})
        await Server(config, url)._check_redis()

    try:
        assert asyncio.run(flush_with("s3cret-pass")) == b"1"
        from binarycop.config import ConfigError

        with pytest.raises(ConfigError, match="redis.password") as refused:
            asyncio.run(server_start_with("wrong"))
        assert "wrong" not in str(refused.value) and "s3cret" not in str(refused.value)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_tls_settings_need_a_rediss_url():
    from binarycop.config import ConfigError

    text = "redis: {url: 'redis://127.0.0.1:6379', tls: {ca_file: ca.pem}}\ncameras: [{name: c, url: x.mp4}]\n"
    with pytest.raises(ConfigError, match="rediss://"):
        parse_config(text)
