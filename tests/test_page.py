"""The built-in page: /api/status from real Redis, and the page itself in a real browser (Debian's chromium under
selenium, offline) on the demo clip run by a real server."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
import yaml

from binarycop.config import ConfigError, parse_config
from binarycop.democlip import CLIP, demo_config
from stats.redis_store import SITE_KEY, CountRecorder
from stats.status import CAMERA_MIN_FACES_PER_S, SITE_MIN_FACES_PER_S, THRESHOLD, wilson_interval
from stats.web import CountsWeb
from tests.conftest import redis_dump

ROOT = Path(__file__).resolve().parents[1]
XSS = "<img src=x onerror=alert(1)>"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _get(url: str) -> tuple[int, str, dict]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.read().decode(), dict(reply.headers)


def percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f} %"


def test_page_thresholds_are_the_alert_rules():
    """The page colours against the figures the alerts page on."""
    rules = yaml.safe_load((ROOT / "dashboards/rules/binarycop.rules.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    assert f"camera:binarycop_compliance:ratio_rate5m < {THRESHOLD}" in alerts["BinarycopComplianceLow"]
    assert f"camera:binarycop_faces_classified:rate5m > {CAMERA_MIN_FACES_PER_S}" in alerts["BinarycopComplianceLow"]
    assert f"site:binarycop_faces_classified:rate5m > {SITE_MIN_FACES_PER_S}" in alerts["BinarycopSiteComplianceLow"]


def test_wilson_interval_is_wide_on_few_faces_and_narrow_on_many():
    low_few, high_few = wilson_interval(2, 3)
    low_many, high_many = wilson_interval(200, 300)
    assert low_few < 0.25 and high_few > 0.9  # 2 of 3 says little: 21 % to 94 %
    assert 0.6 < low_many < 2 / 3 < high_many < 0.72
    assert wilson_interval(0, 0) is None


def test_status_json_now_history_health_and_sites_from_real_redis(redis_server):
    async def scenario():
        client = aioredis.Redis.from_url(redis_server.url)
        recorder = CountRecorder(client)
        recorder.set_site("gate", "hall")
        recorder.set_site("dock", "hall")
        recorder.set_camera_up("gate", True)
        recorder.set_camera_up("dock", False)
        recorder.add_faces("gate", ["correct"] * 7 + ["nose"] * 3)
        recorder.add_faces("dock", ["no_mask"] * 10)
        recorder.add_people("gate", [("all", "correct"), ("all", "nose")])
        recorder.add_frames("gate", "processed", 12)
        recorder.add_frames("gate", "dropped", 2)
        recorder.add_reconnects("dock", 1)
        assert await recorder.flush()
        local = {"gate": {"url": "rtsp://admin:***@cam/1", "detector": "yunet@1", "model": "cpu/n-cnv", "site": "hall"}}
        web = CountsWeb(client, "redis", local=lambda: local, preview_url="http://127.0.0.1:1/")
        await web.start("127.0.0.1", 0)
        try:
            return await asyncio.to_thread(_get, f"http://127.0.0.1:{web.port}/api/status")
        finally:
            await web.stop()
            await client.aclose()

    code, body, headers = asyncio.run(scenario())
    assert code == 200 and headers["Content-Type"].startswith("application/json")
    status = json.loads(body)
    gate, dock = status["cameras"]["gate"], status["cameras"]["dock"]
    assert status["threshold"] == THRESHOLD and status["preview"] == "http://127.0.0.1:1/"
    assert gate["now"]["faces_total"] == 10 and gate["now"]["compliance"] == 0.7
    assert gate["now"]["interval"] == wilson_interval(7, 10) and gate["now"]["enough"] is False  # 10 < 60 faces
    assert gate["now"]["people"]["correct"] == 1 and gate["now"]["people"]["nose"] == 1
    assert gate["now"]["frames"] == {"processed": 12, "dropped": 2, "failed": 0}
    assert gate["up"] is True and 0 <= gate["seen_ago_s"] < 30 and dock["up"] is False
    assert (gate["url"], gate["detector"], gate["model"]) == ("rtsp://admin:***@cam/1", "yunet@1", "cpu/n-cnv")
    assert dock["url"] is None and dock["now"]["reconnects"] == 1 and dock["reconnects"] == 1
    chart = gate["chart"]
    assert len(chart["faces"]) == 60 and chart["faces"][-1] == 10 and chart["correct"][-1] == 7
    assert sum(chart["faces"]) == 10 and chart["people"]["nose"][-1] == 1
    hall = status["sites"]["hall"]
    assert hall["cameras"] == ["dock", "gate"] and hall["up"] == 1
    assert hall["now"]["faces_total"] == 20 and hall["now"]["compliance"] == 0.35


def test_hostile_names_in_config_are_refused_and_markup_in_a_url_is_escaped_in_json(redis_server):
    for bad in ({"site": "<script>"}, {"zones": {XSS: [[0, 0], [1, 0], [1, 1]]}}):
        with pytest.raises(ConfigError):
            parse_config(yaml.safe_dump({"cameras": [{"name": "gate", "url": "/x.mp4", **bad}]}))
    client = redis.Redis.from_url(redis_server.url)
    client.hset(SITE_KEY, mapping={"gate": "<script>alert(1)</script>"})  # written by someone else: skipped

    async def scenario():
        aclient = aioredis.Redis.from_url(redis_server.url)
        local = {"gate": {"url": f"rtsp://cam/{XSS}&x", "detector": "yunet@1", "model": None, "site": None}}
        web = CountsWeb(aclient, "redis", local=lambda: local)
        await web.start("127.0.0.1", 0)
        try:
            return await asyncio.to_thread(_get, f"http://127.0.0.1:{web.port}/api/status")
        finally:
            await web.stop()
            await aclient.aclose()

    _, body, _ = asyncio.run(scenario())
    assert "<" not in body and ">" not in body and "&" not in body  # as \u003c, \u003e, \u0026
    gate = json.loads(body)["cameras"]["gate"]
    assert gate["url"] == f"rtsp://cam/{XSS}&x" and gate["site"] == "none"


# --- in a real browser -------------------------------------------------------------------------------------------


def _browser_problem() -> str | None:
    if shutil.which("chromium") is None or not Path(CHROMEDRIVER).is_file():
        return "Debian's chromium and chromium-driver are not installed (.ci/run installs them as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra)"
    return None


@pytest.fixture
def browser(tmp_path):
    problem = _browser_problem()
    if problem:
        pytest.skip(problem)
    from binarycop.screenshots import open_browser

    driver = open_browser(tmp_path / "chromium")
    yield driver
    driver.quit()


class LoopThread:
    """An event loop on a thread of its own: real servers serve while the (synchronous) browser drives the page."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class RunningServer(LoopThread):
    """A real :class:`binarycop.server.Server` on its own loop thread."""

    def __init__(self, config, redis_url: str):
        from binarycop.server import Server

        super().__init__()
        self.server = Server(config, redis_url)
        self.call(self.server.start(), 300)

    def stop(self) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self.close()


@pytest.fixture
def counts_web(redis_server):
    """A bare :class:`CountsWeb` over the test's Redis, serving from its own loop thread."""
    thread = LoopThread()

    async def start():
        web = CountsWeb(aioredis.Redis.from_url(redis_server.url), "redis")
        await web.start("127.0.0.1", 0)
        return web

    web = thread.call(start())
    yield f"http://127.0.0.1:{web.port}"
    thread.call(_stop(web))
    thread.close()


@pytest.fixture
def demo_run(redis_server, tmp_path):
    """The demo clip played once to its end, under a file name holding markup (a config may name any file)."""
    clip = Path(tempfile.mkdtemp(dir=tmp_path)) / f"{XSS}.mp4"
    shutil.copy(CLIP, clip)
    config = demo_config("127.0.0.1", 0, loop=False, realtime=False)
    camera = config.cameras[0].model_copy(update={"url": str(clip)})
    http = config.http.model_copy(update={"preview": True, "preview_port": 0})
    config = config.model_copy(update={"cameras": [camera], "http": http})
    running = RunningServer(config, redis_server.url)
    try:
        running.call(running.server.cameras_done(), 300)
        running.call(running.server.recorder.flush())
        yield running, clip
    finally:
        running.stop()


def _wait(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_page_in_a_browser_shows_the_demo_as_api_status_says(browser, demo_run):
    from selenium.webdriver.common.by import By

    running, clip = demo_run
    base = running.server.base_url
    browser.get(base + "/")
    card = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'article.camera[data-camera="demo"]'))
    status = json.loads(_get(base + "/api/status")[1])
    demo = status["cameras"]["demo"]
    assert demo["now"]["faces_total"] > 0 and 0 < demo["now"]["compliance"] < 1  # the clip has every class
    figure = card.find_element(By.CSS_SELECTOR, ".figure")
    assert figure.text == percent(demo["now"]["compliance"])
    assert ("good" if demo["now"]["compliance"] >= THRESHOLD else "bad") in figure.get_attribute("class").split()
    basis = card.find_element(By.CSS_SELECTOR, ".basis").text
    low, high = demo["now"]["interval"]
    assert f"{demo['now']['faces_total']} faces" in basis and f"{percent(low)} – {percent(high)}" in basis
    table = {row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[1].text
             for row in card.find_elements(By.TAG_NAME, "tr")}  # fmt: skip
    processed = demo["now"]["frames"]["processed"]
    assert processed > 0 and table["frames, last 5 min"].startswith(f"{processed} processed")
    assert table["source"] == str(clip) and table["detector"] == "yunet@1" and table["model"] == demo["model"]
    assert table["people, last 5 min"] == str(sum(demo["now"]["people"].values()))
    minutes_with_faces = sum(1 for faces in demo["chart"]["faces"] if faces)
    points = card.find_elements(By.CSS_SELECTOR, "circle.point")
    assert len(points) == minutes_with_faces >= 1
    assert card.find_elements(By.CSS_SELECTOR, "rect.bar")  # people per minute
    site = browser.find_element(By.CSS_SELECTOR, 'article.site[data-site="demo"]')
    assert site.find_element(By.CSS_SELECTOR, ".figure").text == percent(status["sites"]["demo"]["now"]["compliance"])
    # The markup in the file name is text on the page: no element made of it, no script run.
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []
    assert browser.execute_script("return document.body.innerHTML.includes('&lt;img src=x')")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert [entry for entry in errors if "favicon.ico" not in entry["message"]] == []  # no CSP refusal, no JS error


def test_page_script_shows_hostile_names_as_text_in_a_browser(browser, counts_web):
    """Names the server would never serve (it checks them), fed to the page's own script in place of the server's
    reply: still text, never markup."""
    from selenium.webdriver.common.by import By

    browser.get(counts_web + "/")
    _wait(browser, lambda d: "cameras up" in d.find_element(By.ID, "summary").text)
    status = json.loads(_get(counts_web + "/api/status")[1])
    window = {"minutes": 5, "faces": {}, "faces_total": 0, "compliance": None, "interval": None, "enough": False,
              "people": dict.fromkeys(["correct", "nose", "nose_mouth", "chin", "no_mask"], 0),
              "frames": {"processed": 0, "dropped": 0, "failed": 0}, "reconnects": 0}  # fmt: skip
    chart = {"start_minute": 0, "faces": [0], "correct": [0], "people": {k: [0] for k in window["people"]}}
    camera = {"up": True, "site": XSS, "seen_ago_s": 1, "url": XSS, "detector": XSS, "model": XSS,
              "frames": window["frames"], "reconnects": 0, "now": window, "chart": chart}  # fmt: skip
    status.update(cameras={XSS: camera}, sites={XSS: {"cameras": [XSS], "up": 1, "now": window, "chart": chart}})
    browser.execute_script("render(arguments[0])", status)
    card = browser.find_element(By.CSS_SELECTOR, "article.camera")
    assert card.get_attribute("data-camera") == XSS and card.find_element(By.TAG_NAME, "h3").text.startswith(XSS)
    assert browser.find_element(By.CSS_SELECTOR, "article.site h3").text == XSS
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []


async def _stop(web: CountsWeb) -> None:
    await web.stop()
    await web.client.aclose()


def test_page_refuses_scripts_it_did_not_bring(browser, counts_web):
    """The policy lets only the page's own script run: one injected into the page is refused by the browser."""
    browser.get(counts_web + "/")
    ran = browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        "document.body.appendChild(s); return new Promise(r => setTimeout(() => r(window.injected ?? 0), 300));"
    )
    assert ran == 0
    assert browser.execute_script("return typeof render") == "function"  # while its own script did run


def test_page_script_never_parses_markup():
    from stats.status import PAGE, SCRIPT

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in SCRIPT
    assert SCRIPT in PAGE and "http://" not in PAGE.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


# --- the setup view ----------------------------------------------------------------------------------------------


def _fine_detail(region: np.ndarray) -> np.ndarray:
    """What a coarse blur of the region would not keep: the grey image less its Gaussian blur."""
    grey = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return grey - cv2.GaussianBlur(grey, (0, 0), sigmaX=max(1.0, grey.shape[1] / 24))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-9))


def _demo_frame_with_faces() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from binarycop.config import DetectorConfig
    from detector import make_detector

    detector = make_detector(DetectorConfig())
    capture = cv2.VideoCapture(str(CLIP))
    try:
        while True:
            ok, frame = capture.read()
            assert ok, "no frame of the demo clip has two faces the detector finds"
            faces = detector.detect(frame, False, None)
            if len(faces) >= 2:
                return frame, faces.boxes, ["correct"] * len(faces)
    finally:
        capture.release()
        detector.close()


def _median_block_spread(picture: np.ndarray, region: tuple[int, int, int, int]) -> float:
    """The median standard deviation of the pixels inside each mosaic block of a face region (3 px in from each
    block's edges): near 0 where a face was pixelated, that of the face's own detail where it was not."""
    from stats.preview import PIXEL_BLOCKS

    left, top, right, bottom = region
    width, height = right - left, bottom - top
    across = max(1, round(PIXEL_BLOCKS * width / max(width, height)))
    down = max(1, round(PIXEL_BLOCKS * height / max(width, height)))
    spreads = []
    for row in range(down):
        for column in range(across):
            y0, y1 = top + row * height // down + 3, top + (row + 1) * height // down - 3
            x0, x1 = left + column * width // across + 3, left + (column + 1) * width // across - 3
            spreads.append(float(picture[y0:y1, x0:x1].reshape(-1, 3).std(axis=0).mean()))  # per colour
    return float(np.median(spreads))


def _served_picture(store) -> tuple[bytes, dict]:
    from stats.preview import PreviewWeb

    thread = LoopThread()
    preview = PreviewWeb(store)
    thread.call(preview.start("127.0.0.1", 0))
    try:
        base = f"http://127.0.0.1:{preview.port}"
        with urllib.request.urlopen(base + "/preview/gate.jpg", timeout=10) as reply:
            assert reply.headers["Content-Type"] == "image/jpeg"
            jpeg = reply.read()
        return jpeg, json.loads(_get(base + "/api/preview")[1])
    finally:
        thread.call(preview.stop())
        thread.close()


def test_setup_picture_served_keeps_no_more_of_a_face_than_a_coarse_blur():
    """The served JPEG's face regions, against the original frame's: the faces' fine detail (eyes, mouth, edges)
    is gone; the same measure on a picture made without pixelation finds it (the test can fail)."""
    from stats.preview import PreviewStore, face_regions

    frame, boxes, classes = _demo_frame_with_faces()
    store = PreviewStore()
    store.offer("gate", frame, boxes, classes, {"door": [(0.1, 0.1), (0.5, 0.1), (0.5, 0.9)]})
    jpeg, listing = _served_picture(store)
    served = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert served.shape == frame.shape  # 640 wide: not scaled
    assert len(listing["cameras"]["gate"]["faces"]) == len(boxes) and listing["cameras"]["gate"]["zones"]["door"]
    unblurred = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_COLOR)
    for x1, y1, x2, y2 in boxes.astype(int):
        inner = (slice(y1 + 4, y2 - 4), slice(x1 + 4, x2 - 4))  # inside the drawn box's lines
        original = _fine_detail(frame[inner])
        assert original.std() > 3  # a face has detail to lose
        assert abs(_correlation(original, _fine_detail(served[inner]))) < 0.15
        assert _correlation(original, _fine_detail(unblurred[inner])) > 0.8
    for region in face_regions(boxes, frame.shape[1], frame.shape[0]):
        assert (region[2] - region[0]) // 6 >= 8  # each mosaic block spans at least 8 pixels of the face region
        assert _median_block_spread(served, region) < 4 < 10 < _median_block_spread(frame, region)
    # Away from faces, zones and boxes, the picture is the frame (the installer sees the scene).
    clear = np.ones(frame.shape[:2], bool)
    for left, top, right, bottom in face_regions(boxes, frame.shape[1], frame.shape[0]):
        clear[max(0, top - 20) : bottom + 4, max(0, left - 4) : right + 4] = False
    clear[: frame.shape[0] * 95 // 100, : frame.shape[1] * 55 // 100] = False  # the zone and its name
    assert np.abs(served.astype(int) - frame.astype(int))[clear].mean() < 4


def test_setup_view_is_off_by_default_and_on_loopback_when_on():
    from binarycop.config import HttpConfig

    assert HttpConfig().preview is False and HttpConfig().preview_bind == "127.0.0.1"


def test_setup_view_in_a_browser_shows_the_demo_frame_with_its_faces_listed(browser, demo_run):
    from selenium.webdriver.common.by import By

    from stats.preview import face_regions

    running, _ = demo_run
    status = json.loads(_get(running.server.base_url + "/api/status")[1])
    url = status["preview"]
    assert url.startswith("http://127.0.0.1:")  # loopback: this machine only
    listing = json.loads(_get(url + "api/preview")[1])["cameras"]["demo"]
    assert listing["faces"] and all(0 <= v <= 1 for face in listing["faces"] for v in face["box"])
    browser.get(url)
    image = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'article.preview[data-camera="demo"] img'))
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 640
    counts = {}
    for face in listing["faces"]:
        counts[face["class"]] = counts.get(face["class"], 0) + 1
    caption = browser.find_element(By.TAG_NAME, "figcaption").text
    assert all(f"{n} {name}" in caption for name, n in counts.items())
    with urllib.request.urlopen(url + "preview/demo.jpg", timeout=10) as reply:
        served = cv2.imdecode(np.frombuffer(reply.read(), np.uint8), cv2.IMREAD_COLOR)
    assert served.shape[:2] == (listing["height"], listing["width"])
    boxes = np.array([face["box"] for face in listing["faces"]]) * [640, 360, 640, 360]
    for region in face_regions(boxes, 640, 360):
        assert _median_block_spread(served, region) < 4  # every face a mosaic of flat blocks (a face: > 10)
    assert b"\xff\xd8\xff" not in redis_dump(redis.Redis.from_url(running.server.redis_url))  # no JPEG in Redis
    browser.get(running.server.base_url + "/")  # the page links to it
    link = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#preview a"))
    assert link.get_attribute("href") == url


def test_screenshots_of_the_page_and_the_setup_view_are_real_pictures(browser, demo_run, tmp_path):
    """What ``binarycop demo --screenshot`` saves: PNGs of the page (desktop and phone width) and the setup view."""
    from binarycop.screenshots import take_screenshots

    running, _ = demo_run
    setup = json.loads(_get(running.server.base_url + "/api/status")[1])["preview"]
    saved = take_screenshots(running.server.base_url + "/", setup, tmp_path / "shots")
    assert [path.name for path in saved] == ["page.png", "page-phone.png", "setup.png"]
    widths = []
    for path in saved:
        picture = cv2.imread(str(path))
        assert picture is not None and picture.shape[0] > 300 and picture.std() > 10  # drawn, not blank
        widths.append(picture.shape[1])
    assert widths[1] < widths[0]  # the phone's width


def test_no_picture_is_served_without_the_setup_view(counts_web):
    """Off by default: the page's server has no picture route, and its status names no setup view."""
    assert json.loads(_get(counts_web + "/api/status")[1])["preview"] is None
    for path in ("/preview/demo.jpg", "/api/preview"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(counts_web + path)
        assert refused.value.code == 404


def test_setup_view_listing_escapes_names_it_is_given():
    """Zone names are checked by the config; were one to hold markup, the setup view's JSON still carries it inert."""
    from stats.preview import PreviewStore, PreviewWeb

    store = PreviewStore()
    frame = np.full((120, 160, 3), 90, np.uint8)
    store.offer("gate", frame, np.empty((0, 4)), [], {XSS: [(0.1, 0.1), (0.9, 0.1), (0.5, 0.9)]})
    thread = LoopThread()
    preview = PreviewWeb(store)
    thread.call(preview.start("127.0.0.1", 0))
    try:
        _, body, _ = _get(f"http://127.0.0.1:{preview.port}/api/preview")
        _, page, headers = _get(f"http://127.0.0.1:{preview.port}/")
    finally:
        thread.call(preview.stop())
        thread.close()
    assert "<" not in body and XSS in json.loads(body)["cameras"]["gate"]["zones"]
    assert "script-src 'sha256-" in headers["Content-Security-Policy"] and "innerHTML" not in page


@pytest.fixture(params=["tiled", "min-face-400"])
def hostile_detector_run(request, redis_server):
    """The demo clip played once with the detector settings under which faces came out in the clear."""
    from binarycop.config import DetectorConfig
    from tests.test_preview_privacy import HOSTILE_DETECTORS

    config = demo_config("127.0.0.1", 0, loop=False, realtime=False)
    http = config.http.model_copy(update={"preview": True, "preview_port": 0})
    detector = DetectorConfig(**HOSTILE_DETECTORS[request.param])
    running = RunningServer(config.model_copy(update={"http": http, "detector": detector}), redis_server.url)
    try:
        running.call(running.server.cameras_done(), 300)
        yield running
    finally:
        running.stop()


def test_setup_view_in_a_browser_shows_no_face_in_the_clear(browser, hostile_detector_run):
    """Tiles examined one per frame (faces the tracker holds), faces all below min_face_px: the picture the browser
    shows holds no face YuNet can find at scales 1 and 2 (before: 4 in 8 pictures, and 24 of 24)."""
    from selenium.webdriver.common.by import By

    from tests.test_preview_privacy import _faces_in

    url = json.loads(_get(hostile_detector_run.server.base_url + "/api/status")[1])["preview"]
    browser.get(url)
    image = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'article.preview[data-camera="demo"] img'))
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    shown = browser.execute_script(
        "const c = document.createElement('canvas'); const i = arguments[0]; c.width = i.naturalWidth;"
        "c.height = i.naturalHeight; c.getContext('2d').drawImage(i, 0, 0); return c.toDataURL('image/png');",
        image,
    )
    png = base64.b64decode(shown.split(",", 1)[1])
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == (360, 640) and picture.std() > 10  # the scene, drawn
    assert _faces_in([cv2.imencode(".png", picture)[1].tobytes()]) == 0
