"""Hot reload: editing the config file adds and removes cameras while the others keep counting."""

from __future__ import annotations

import asyncio
import logging

import redis

from binarycop.config import load_config
from binarycop.democlip import CLIP
from binarycop.server import Server
from tests.conftest import wait_until


def _config_text(redis_url: str, cameras: list[str], detect_fps: str = "5") -> str:
    lines = [f"redis: {{url: '{redis_url}'}}", "http: {port: 0}", "cameras:"]
    lines += [f"  - {{name: {name}, url: '{CLIP}', detect_fps: {detect_fps}, loop: true}}" for name in cameras]
    return "\n".join(lines) + "\n"


def _processed(client: redis.Redis, camera: str) -> int:
    return int(client.hget("binarycop:frames", f"{camera}|processed") or 0)


def test_edit_adds_and_removes_cameras_and_bad_edit_is_rejected(redis_server, tmp_path, caplog):
    path = tmp_path / "binarycop.yaml"
    path.write_text(_config_text(redis_server.url, ["keep", "drop"]))
    client = redis.Redis.from_url(redis_server.url)

    async def scenario():
        server = Server(load_config(path), redis_server.url, config_path=path)
        await server.start()
        try:
            await wait_until(
                lambda: _processed(client, "keep") > 3 and _processed(client, "drop") > 3, 60, "two cameras"
            )
            path.write_text(_config_text(redis_server.url, ["keep", "added"]))
            await wait_until(lambda: _processed(client, "added") > 3, 30, "the added camera to count")
            dropped_at, kept_at = _processed(client, "drop"), _processed(client, "keep")
            await asyncio.sleep(2.5)
            assert _processed(client, "drop") == dropped_at  # stopped
            assert _processed(client, "keep") > kept_at + 5  # never interrupted
            assert sorted(server.camera_tasks) == ["added", "keep"]

            with caplog.at_level(logging.ERROR, logger="binarycop.server"):
                path.write_text(_config_text(redis_server.url, ["keep", "added", "broken"], detect_fps="-1"))
                await wait_until(lambda: "config edit rejected" in caplog.text, 10, "the bad edit to be rejected")
            assert "cameras[keep].detect_fps" in caplog.text
            added_at = _processed(client, "added")
            await asyncio.sleep(2)
            assert sorted(server.camera_tasks) == ["added", "keep"]  # the running config is kept
            assert _processed(client, "added") > added_at
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_watcher_outlives_unreadable_and_exploding_edits_and_applies_the_next_good_one(redis_server, tmp_path, caplog):
    path = tmp_path / "binarycop.yaml"
    path.write_text(_config_text(redis_server.url, ["keep"], detect_fps="1"))
    bad_edits = {
        "not UTF-8 text": b"cameras: [{name: caf\xe9, url: x.mp4}]\n",
        "nested deeper than 32 levels": b"cameras: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "YAML aliases (*name) are not accepted": b"a: &a [1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a]\n"
        + b"c: &c [*b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c]\ncameras: [{name: a, url: x, zones: *d}]\n",
    }

    async def scenario():
        server = Server(load_config(path), redis_server.url, config_path=path)
        await server.start()
        try:
            with caplog.at_level(logging.ERROR, logger="binarycop.server"):
                for problem, content in bad_edits.items():  # before: the first one ended the watcher, unlogged
                    path.write_bytes(content)
                    await wait_until(lambda: problem in caplog.text, 10, f"the edit with {problem!r} to be rejected")  # noqa: B023
            assert sorted(server.camera_tasks) == ["keep"]
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 5)).endswith(b"ok\n")
            writer.close()
            path.write_text(_config_text(redis_server.url, ["keep", "added"], detect_fps="1"))
            await wait_until(lambda: "added" in server.camera_tasks, 10, "the good edit to be applied")
        finally:
            await server.stop()

    asyncio.run(scenario())
