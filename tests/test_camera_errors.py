"""Why a camera is down (issue 24, item 4), from real failures: a refused port, the real RTSP test server with a
wrong path and a wrong password, an HTTP server answering 401, 404 and a web page, a missing file and a file that
ended. Each reason is in the log line, /api/status, /metrics (binarycop_camera_error_info) and the page, with no
secret anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from binarycop.config import CameraConfig, Config, HttpConfig, RedisConfig
from binarycop.democlip import CLIP
from binarycop.server import Server
from ingest import describe
from tests.conftest import free_port, redis_dump
from tests.test_page import browser  # noqa: F401 (the real-browser fixture)

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi and gst-rtsp-server live
BAD_PASSWORD = "hunter2x"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "refused"),
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), "refused"),
        (TimeoutError("timed out"), "timed_out"),
        (socket.gaierror(-2, "Name or service not known"), "unreachable"),
        (urllib.error.HTTPError("http://u:p@h/x", 401, "Unauthorized", {}, None), "unauthorized"),
        (urllib.error.HTTPError("http://h/x", 403, "Forbidden", {}, None), "forbidden"),
        (urllib.error.HTTPError("http://h/x", 404, "Not Found", {}, None), "not_found"),
        (urllib.error.HTTPError("http://h/x", 503, "Unavailable", {}, None), "http_error"),
        (RuntimeError("rtsp://user:secret@host/ said no"), "failed"),
    ],
)
def test_errors_get_a_word_and_a_message_of_ours(error, reason):
    word, message = describe(error)
    assert word == reason
    assert "secret" not in message and "u:p" not in message and "://" not in message


class _Answers(BaseHTTPRequestHandler):
    """/401 and /404 answer so; /page is a web page, not a video."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        status = {"/401": 401, "/404": 404}.get(self.path, 200)
        body = b"<html><body>a login page</body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _rtsp_server(port: int, frame_dir: Path) -> subprocess.Popen:
    for index in range(30):
        cv2.imwrite(str(frame_dir / f"frame{index:05d}.jpg"), np.full((120, 160, 3), index * 8, np.uint8))
    script = Path(__file__).with_name("rtsp_server.py")
    process = subprocess.Popen(
        [SYSTEM_PYTHON, str(script), str(port), str(frame_dir), "viewer:s3cret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    return process


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _cameras(tmp_path: Path, rtsp: int, http: int) -> dict[str, tuple[str, str]]:
    """camera -> (url, the reason it must give)."""
    return {
        "refused": (f"rtsp://127.0.0.1:{free_port()}/cam", "refused"),
        "rtsp-path": (f"rtsp://viewer:s3cret@127.0.0.1:{rtsp}/wrong", "not_found"),
        "rtsp-login": (f"rtsp://viewer:{BAD_PASSWORD}@127.0.0.1:{rtsp}/cam", "unauthorized"),
        "http-login": (f"http://viewer:{BAD_PASSWORD}@127.0.0.1:{http}/401", "unauthorized"),
        "http-path": (f"http://127.0.0.1:{http}/404", "not_found"),
        "http-page": (f"http://127.0.0.1:{http}/page", "not_video"),
        "missing": (str(tmp_path / "absent.mp4"), "file_not_found"),
        "clip": (str(CLIP), "file_ended"),
    }


def test_every_failure_says_why_in_the_log_the_api_the_metrics_and_the_page(redis_server, tmp_path, caplog, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    caplog.set_level(logging.INFO)
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    rtsp_port = free_port()
    rtsp = _rtsp_server(rtsp_port, tmp_path)
    wanted = _cameras(tmp_path, rtsp_port, http.server_address[1])
    cameras = [
        CameraConfig(name=name, url=url, stall_seconds=2, reconnect_max_seconds=2, realtime=False, site="hall")
        for name, (url, _) in wanted.items()
    ]
    config = Config(redis=RedisConfig(url=redis_server.url), http=HttpConfig(port=0), cameras=cameras)

    async def until(condition, timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await asyncio.to_thread(condition):
            assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout} s waiting for {what}"
            await asyncio.sleep(0.3)

    def reasons() -> dict:
        status = json.loads(_get(f"{server.base_url}/api/status"))
        return {name: (camera["last_error"] or {}).get("reason") for name, camera in status["cameras"].items()}

    async def scenario():
        await server.start()
        try:
            expected = {name: reason for name, (_, reason) in wanted.items()}
            await until(lambda: reasons() == expected, 90, f"every camera's reason {expected}")
            status_text = await asyncio.to_thread(_get, f"{server.base_url}/api/status")
            metrics = await asyncio.to_thread(_get, f"{server.base_url}/metrics")
            await asyncio.to_thread(browser.get, f"{server.base_url}/")
            await until(lambda: browser.find_elements(By.CSS_SELECTOR, "article.camera .reason"), 20, "the page")
            cards = {
                card.get_attribute("data-camera"): card
                for card in await asyncio.to_thread(browser.find_elements, By.CSS_SELECTOR, "article.camera")
            }
            page = {
                name: (
                    card.find_element(By.CSS_SELECTOR, ".badge").text,
                    card.find_element(By.CSS_SELECTOR, ".reason").text,
                    {
                        row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[1].text
                        for row in card.find_elements(By.TAG_NAME, "tr")
                    }["last frame"],
                )
                for name, card in cards.items()
            }
            return json.loads(status_text), status_text, metrics, page
        finally:
            await server.stop()

    server = Server(config, redis_server.url)
    try:
        status, status_text, metrics, page = asyncio.run(scenario())
    finally:
        rtsp.kill()
        rtsp.wait()
        http.shutdown()
    for name, (_, reason) in wanted.items():
        camera = status["cameras"][name]
        assert camera["last_error"]["since"] <= status["now"]
        assert f'binarycop_camera_error_info{{camera="{name}",reason="{reason}"}} 1.0' in metrics
        badge, shown, last_frame = page[name]
        assert shown == camera["last_error"]["message"]
        assert badge == ("■ ended" if reason == "file_ended" else "✕ down")  # a shape beside the colour, and the word
        if name == "clip":  # it delivered every frame, then ended
            assert camera["last_frame_age_s"] is not None and last_frame.endswith(" s ago")
        else:  # never a frame: not the heartbeat's age
            assert camera["last_frame_age_s"] is None and last_frame == "no frame yet", (name, camera)
    assert "404 not found" in status["cameras"]["rtsp-path"]["last_error"]["message"]
    assert "401 unauthorized" in status["cameras"]["rtsp-login"]["last_error"]["message"]
    log = caplog.text
    assert f"camera refused: no frames from {wanted['refused'][0]}: connection refused [refused]" in log
    assert "camera rtsp-login: no frames from rtsp://viewer:***@" in log and "[unauthorized]" in log
    assert "camera http-page: no frames from" in log and "[not_video]" in log
    assert "video file not found" in log and "[file_not_found]" in log
    assert "camera clip: video file" in log and "ended (loop: false)" in log
    dump = redis_dump(redis.Redis.from_url(redis_server.url))
    for text in (log, status_text, metrics, dump.decode(errors="replace")):
        assert BAD_PASSWORD not in text and "s3cret" not in text
