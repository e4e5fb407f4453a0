"""A Redis outage under a running server (issue 24, item 5), end to end: a real redis-server stopped and started
again on its port. Meanwhile /metrics keeps the cameras' camera_up and says the ingester is alive, /api/status
answers from the process's own figures marked "source": "local", and the log says so once, not once a second."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from binarycop.config import CameraConfig, Config, HttpConfig, RedisConfig
from binarycop.democlip import CLIP
from binarycop.server import Server
from tests.conftest import redis_server_binary
from tests.test_page import browser  # noqa: F401 (the real-browser fixture)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _samples(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _redis_on(port: int, directory) -> subprocess.Popen:
    """redis-server on ``port`` again (the fixture's, once it is stopped)."""
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start again")


def _outage_lines(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and "Redis" in r.getMessage()]


def test_a_redis_outage_under_a_running_server_is_reported_right(redis_server, tmp_path, caplog, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    caplog.set_level(logging.INFO)
    camera = CameraConfig(name="keep", url=str(CLIP), detect_fps=2, loop=True, site="hall")
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0, metrics="all"), cameras=[camera])
    server = Server(config, redis_server.url)
    up = ("binarycop_camera_up", (("camera", "keep"),))
    restarted = None

    async def until(condition, timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await asyncio.to_thread(condition):
            assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout} s waiting for {what}"
            await asyncio.sleep(0.3)

    def status() -> dict:
        return json.loads(_get(f"{server.base_url}/api/status"))

    def metrics() -> dict:
        return _samples(_get(f"{server.base_url}/metrics"))

    async def scenario():
        nonlocal restarted
        await server.start()
        try:
            await until(
                lambda: metrics().get(up) == 1 and status()["cameras"]["keep"]["now"]["faces"]["total"] > 0,
                90,
                "counting",
            )
            assert (await asyncio.to_thread(status))["source"] == "redis"
            redis_server.stop()
            # /metrics and /api/status are each rendered at most once a second: wait until both have seen the outage
            await until(
                lambda: metrics()[("binarycop_redis_up", ())] == 0 and status()["source"] == "local", 20, "redis_up 0"
            )
            outage = []
            for _ in range(8):  # several seconds of outage, a scrape and a page poll each
                outage.append((await asyncio.to_thread(metrics), await asyncio.to_thread(status)))
                await asyncio.sleep(1)
            await asyncio.to_thread(browser.get, f"{server.base_url}/")
            summary = lambda: browser.find_element(By.ID, "summary")  # noqa: E731
            await until(lambda: summary().get_attribute("data-source") == "local", 20, "the page to say local")
            shown = (
                summary().text,
                browser.find_element(By.CSS_SELECTOR, 'article.camera[data-camera="keep"] .badge').text,
            )
            restarted = await asyncio.to_thread(_redis_on, redis_server.port, tmp_path)
            await until(lambda: status()["source"] == "redis" and server.recorder.pending == 0, 30, "Redis back")
            back = await asyncio.to_thread(metrics)
            return outage, back, shown
        finally:
            await server.stop()

    try:
        outage, back, shown = asyncio.run(scenario())
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=10)
    for samples, page in outage:
        assert samples[up] == 1  # kept, not vanished
        assert samples[("binarycop_ingester_up", ())] == 1 and samples[("binarycop_redis_up", ())] == 0
        assert samples[("binarycop_camera_info", (("camera", "keep"), ("site", "hall")))] == 1
        assert not [key for key in samples if key[0] == "binarycop_faces_classified_total"]  # no counter restarts at 0
        assert page["source"] == "local"
        assert page["cameras"]["keep"]["up"] is True and page["sites"]["hall"]["up"] == 1
    assert outage[-1][1]["cameras"]["keep"]["now"]["faces"]["total"] > 0  # the counts made during the outage
    assert outage[-1][0][("binarycop_counts_pending", (("process", "main"),))] > 0
    assert back[up] == 1 and back[("binarycop_redis_up", ())] == 1
    assert "local figures: Redis is away, these are this server’s own cameras and counts" in shown[0], shown
    assert shown[1] == "● up"  # not "loading…" or "no sites": the process's own figures
    counts = _outage_lines(caplog, "stats.redis_store")
    assert len([line for line in counts if "Redis unreachable" in line]) == 1, counts  # was one a second
    assert any("Redis back after" in line for line in counts), counts
    page_lines = _outage_lines(caplog, "stats.web")
    assert len([line for line in page_lines if "Redis unreachable" in line]) == 1, page_lines
