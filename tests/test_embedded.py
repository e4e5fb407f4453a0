"""One embedded Redis per server instance (issue 24, item 2): real `binarycop serve` processes on one host, each
with the embedded Redis it starts itself; none ever stops, reuses or corrupts another's, and one whose Redis dies
starts it again without losing a count."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import redis

from binarycop.democlip import CLIP, SLOTS, expected_counts
from stats.embedded import EmbeddedRedis, InstanceBusy, instance_dir, socket_url
from tests.conftest import free_port, output_of, wait_until


class _Serve:
    """`binarycop serve --config PATH` in a subprocess (no REDIS_URL: it starts its own), its log collected."""

    def __init__(self, config_path: Path):
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
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


def _config(path: Path, port: int, camera: str) -> Path:
    path.write_text(f"http: {{port: {port}, metrics: all}}\ncameras:\n  - {camera}\n")
    return path


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _until(condition, timeout: float, what: str) -> None:
    asyncio.run(wait_until(condition, timeout, what))


def _redis_of(config: Path) -> redis.Redis:
    return redis.Redis.from_url(socket_url(instance_dir(config)))


def _processed(client: redis.Redis, camera: str) -> int:
    try:
        return int(client.hget("binarycop:frames", f"{camera}|processed") or 0)
    except redis.RedisError:
        return -1


def test_a_second_serve_busy_port_or_run_and_stopped_leaves_the_first_ones_redis_alone(tmp_path):
    """Before, every serve used one data folder: a second one, failing on the busy port or run and stopped, shut the
    first one's Redis down for good. Now: a second serve of the same file refuses to start (naming the holder), one
    of another file on the busy port fails on the port, one that runs and stops stops only its own Redis."""
    port = free_port()
    first = _Serve(_config(tmp_path / "a.yaml", port, f"{{name: hall, url: '{CLIP}', detect_fps: 2, loop: true}}"))
    others: list[_Serve] = []
    try:
        client = _redis_of(tmp_path / "a.yaml")
        _until(lambda: _ready(port) and _processed(client, "hall") > 0, 120, "the first serve to count")
        redis_pid = client.info("server")["process_id"]
        assert f"redis        {socket_url(instance_dir(tmp_path / 'a.yaml'))}" in first.log  # the stable URL
        report = subprocess.run(
            [sys.executable, "-m", "binarycop.cli", "status", "--config", str(tmp_path / "a.yaml"), "--json"],
            env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert report.returncode == 0, report.stderr  # `status --config` finds the embedded Redis by itself
        assert [i["pid"] for i in json.loads(report.stdout)["ingesters"]] == [first.process.pid]

        same_file = _Serve(tmp_path / "a.yaml")
        others.append(same_file)
        assert same_file.process.wait(timeout=60) == 2
        assert f"another running binarycop process (pid {first.process.pid})" in same_file.log, same_file.log

        busy_port = _Serve(_config(tmp_path / "b.yaml", port, f"{{name: b, url: '{tmp_path / 'none.mp4'}'}}"))
        others.append(busy_port)
        assert busy_port.process.wait(timeout=120) == 2
        assert "http.bind, http.port" in busy_port.log, busy_port.log

        other_port = free_port()
        runs = _Serve(_config(tmp_path / "c.yaml", other_port, f"{{name: c, url: '{tmp_path / 'none.mp4'}'}}"))
        others.append(runs)
        _until(lambda: _ready(other_port), 120, "the second serve to be ready")
        assert _redis_of(tmp_path / "c.yaml").info("server")["process_id"] != redis_pid
        assert runs.stop() == 0, runs.log

        counted = _processed(client, "hall")
        _until(lambda: _processed(client, "hall") > counted + 2, 30, "the first serve to keep counting")
        assert client.info("server")["process_id"] == redis_pid  # the same Redis, never restarted
        assert _ready(port)
        assert "embedded Redis" not in first.log.split("(Ctrl-C stops)", 1)[1]  # it never lost it
    finally:
        for serve in others:
            serve.stop()
        assert first.stop() == 0, first.log


def test_an_embedded_redis_that_dies_is_started_again_and_no_count_is_lost(tmp_path):
    """SIGKILL the embedded Redis while the clip is counted: serve starts it again in place (the same URL), the
    counts of the outage wait in memory, and after one pass Redis holds exactly the clip's faces per class (the
    append-only file is written before each write is confirmed)."""
    port = free_port()
    config = _config(tmp_path / "clip.yaml", port, f"{{name: clip, url: '{CLIP}', detect_fps: 5}}")
    serve = _Serve(config)
    try:
        client = _redis_of(config)
        _until(lambda: _processed(client, "clip") > 5, 120, "the clip to be counted")
        old_pid = client.info("server")["process_id"]
        os.kill(old_pid, signal.SIGKILL)
        _until(lambda: "embedded Redis running again" in serve.log, 30, "the Redis to be started again")
        _until(lambda: "camera clip: stopped" in serve.log, 120, "the clip to end")
        want = {f"clip|all|{name}": count for name, count in expected_counts(detect_fps=5).items() if name in SLOTS}

        def faces() -> dict[str, int]:
            return {k.decode(): int(v) for k, v in client.hgetall("binarycop:faces_classified").items()}

        _until(lambda: faces() == want, 30, f"exactly the clip's faces {want}")
        assert client.info("server")["process_id"] != old_pid
    finally:
        assert serve.stop() == 0, serve.log


def test_an_embedded_redis_folder_held_by_another_is_refused(tmp_path):
    """In-process: a second EmbeddedRedis on the same folder raises InstanceBusy and leaves the first answering."""
    first = EmbeddedRedis(tmp_path / "instance")
    try:
        try:
            EmbeddedRedis(tmp_path / "instance")
        except InstanceBusy as error:
            assert f"(pid {os.getpid()})" in str(error)
        else:
            raise AssertionError("a second embedded Redis took a folder in use")
        assert redis.Redis.from_url(first.url).ping()
    finally:
        first.close()


def test_a_redis_left_running_by_a_dead_server_is_stopped_before_its_folder_is_reused(tmp_path):
    """A serve killed with SIGKILL leaves its redis-server running on the folder's socket and files. The next one
    (the lock is free) shuts it down, so two never append to one file, and starts its own on the same data."""
    first = EmbeddedRedis(tmp_path / "instance")
    redis.Redis.from_url(first.url).hset("binarycop:frames", "gate|processed", 7)
    first._lock.close()  # the owner died: its lock went with it, its Redis did not
    second = EmbeddedRedis(tmp_path / "instance")
    try:
        first._process.wait(timeout=10)  # the orphan was shut down
        assert second.pid != first.pid
        assert redis.Redis.from_url(second.url).hget("binarycop:frames", "gate|processed") == b"7"
    finally:
        second.close()


def test_ctrl_c_stops_the_demo_with_its_embedded_redis_still_answering_until_the_last_counts(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to its whole foreground process group. The embedded Redis runs in a
    session of its own, so it is not stopped under binarycop's final flush (it used to be: the log said "Redis
    unreachable", the embedded Redis was started again, and the last counts waited for it)."""
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "binarycop.cli", "demo", "--port", str(port)]
    demo = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        asyncio.run(wait_until(ready, 120, "the demo ready"))
        children = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(demo.pid)], capture_output=True, text=True)
        (redis_pid,) = [int(line.split()[0]) for line in children.stdout.splitlines() if "redis" in line]
        assert os.getpgid(redis_pid) != os.getpgid(demo.pid)  # the terminal's SIGINT cannot reach it
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _, stderr = output_of(demo, 60)
    assert demo.returncode == 0, stderr[-2000:]
    assert "embedded Redis (pid" not in stderr and "Redis unreachable" not in stderr, stderr[-2000:]
