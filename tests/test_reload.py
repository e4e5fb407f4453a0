"""Hot reload: editing the config file adds and removes cameras while the others keep counting."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import urllib.request
from pathlib import Path

import redis
import yaml

from binarycop.config import load_config
from binarycop.dashboard_render import Prometheus
from binarycop.democlip import CLIP
from binarycop.server import Server
from tests.conftest import free_port, wait_until

RULES = Path(__file__).resolve().parents[1] / "dashboards" / "rules" / "binarycop.rules.yml"


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


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _two_cameras(redis_url: str, refused: int, with_drop: bool) -> str:
    lines = [f"redis: {{url: '{redis_url}'}}", "http: {port: 0, metrics: all}", "cameras:"]
    lines.append(f"  - {{name: keep, url: '{CLIP}', detect_fps: 2, loop: true, site: hall}}")
    if with_drop:  # down: nothing listens on its port
        lines.append(f"  - {{name: drop, url: 'rtsp://127.0.0.1:{refused}/cam', site: hall}}")
    return "\n".join(lines) + "\n"


def test_a_removed_camera_leaves_metrics_the_page_and_a_real_prometheus_alert_at_once(redis_server, tmp_path):
    """Before, a camera removed by hot reload stayed in /metrics as camera_up 0, on the page as down, in its site's
    "N of M up", and BinarycopCameraDown paged for it. A real Prometheus (the shipped rules, 1 s scrapes) sees the
    down camera's CameraDown pending; once the edit removes it, its series and the pending alert are gone."""
    prometheus_binary = shutil.which("prometheus")
    assert prometheus_binary, "prometheus not found: .ci/run installs Debian's prometheus package"
    path, refused, prometheus_port = tmp_path / "binarycop.yaml", free_port(), free_port()
    path.write_text(_two_cameras(redis_server.url, refused, with_drop=True))
    prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}")

    def has(expr: str) -> bool:
        try:
            return bool(prometheus.instant(expr))
        except OSError:
            return False

    async def until(condition, timeout: float, what: str) -> None:
        """Poll off the event loop: the server answering the HTTP requests runs on it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not await asyncio.to_thread(condition):
            assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout} s waiting for {what}"
            await asyncio.sleep(0.2)

    async def scenario():
        server = Server(load_config(path), redis_server.url, config_path=path)
        await server.start()
        scrape = {"job_name": "binarycop-ingester", "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}
        settings = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(RULES)]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({**settings, "scrape_configs": [scrape]}))
        process = subprocess.Popen(
            [prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path}/db"]
            + [f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        metrics, status = f"{server.base_url}/metrics", f"{server.base_url}/api/status"
        try:
            pending = 'ALERTS{alertname="BinarycopCameraDown",camera="drop",alertstate="pending"}'
            await until(lambda: has(pending), 90, "CameraDown pending for the down camera")
            await until(lambda: has('binarycop_camera_up{camera="keep"} == 1'), 60, "the kept camera up")
            before = json.loads(await asyncio.to_thread(_get, status))
            assert before["sites"]["hall"]["cameras"] == ["drop", "keep"] and before["sites"]["hall"]["up"] == 1

            path.write_text(_two_cameras(redis_server.url, refused, with_drop=False))
            await until(lambda: "drop" not in server.camera_tasks, 10, "the edit to be applied")
            await until(lambda: 'camera="drop"' not in _get(metrics), 10, "every series of drop to leave")
            # /api/status serves a copy at most a second old (rendered once a second for every reader)
            await until(lambda: list(json.loads(_get(status))["cameras"]) == ["keep"], 10, "drop to leave the page")
            after = json.loads(await asyncio.to_thread(_get, status))
            assert list(after["cameras"]) == ["keep"]
            assert after["sites"]["hall"]["cameras"] == ["keep"] and after["sites"]["hall"]["up"] == 1
            await until(lambda: not has('ALERTS{camera="drop"}'), 20, "the pending alert to end")
            await until(lambda: not has('binarycop_camera_up{camera="drop"}'), 20, "drop's camera_up to go stale")
            assert not has('camera:binarycop_camera_up:max{camera="drop"}')
            assert has('binarycop_camera_up{camera="keep"} == 1')
        finally:
            process.terminate()
            process.wait(timeout=30)
            await server.stop()

    asyncio.run(scenario())
