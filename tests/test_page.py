"""The built-in page: /api/status from real Redis, and the page itself in a real browser (Debian's chromium under
selenium, offline) on the demo clip run by a real server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
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
from names import CLASS_LABELS, CLASSES
from stats.redis_store import SITE_KEY, CountRecorder
from stats.status import CAMERA_MIN_PEOPLE_PER_MINUTE, SITE_MIN_PEOPLE_PER_MINUTE, THRESHOLD, wilson_interval
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
    """The page colours against the figures the alerts page on: compliance of people, with people a minute."""
    rules = yaml.safe_load((ROOT / "dashboards/rules/binarycop.rules.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    camera, site = alerts["BinarycopComplianceLow"], alerts["BinarycopSiteComplianceLow"]
    assert f"camera:binarycop_people_compliance:ratio5m < {THRESHOLD}" in camera
    assert f"camera:binarycop_people:per_minute >= {CAMERA_MIN_PEOPLE_PER_MINUTE}" in camera
    assert f"site:binarycop_people_compliance:ratio5m < {THRESHOLD}" in site
    assert f"site:binarycop_people:per_minute >= {SITE_MIN_PEOPLE_PER_MINUTE}" in site
    assert "faces" not in camera + site  # the per-frame face rate weighs dwell time: never what pages


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
        recorder.add_people("gate", [("all", "correct")] * 3 + [("all", "nose")])
        recorder.add_people("dock", [("all", "no_mask")] * 6)
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
    people = gate["now"]["people"]  # the headline: people, each counted once
    assert people["classes"]["correct"] == 3 and people["classes"]["nose"] == 1 and people["total"] == 4
    assert people["compliance"] == 0.75 and people["interval"] == wilson_interval(3, 4)
    assert people["enough"] is False  # 4 people in 5 minutes: under the alert's 1 a minute
    faces = gate["now"]["faces"]  # secondary: every face in every frame
    assert faces["total"] == 10 and faces["compliance"] == 0.7 and faces["classes"]["nose"] == 3
    assert gate["people"]["total"] == 4 and gate["people"]["compliance"] == 0.75 and gate["faces"]["total"] == 10
    assert gate["now"]["frames"] == {"processed": 12, "dropped": 2, "failed": 0}
    assert gate["up"] is True and 0 <= gate["seen_ago_s"] < 30 and dock["up"] is False
    assert (gate["url"], gate["detector"], gate["model"]) == ("rtsp://admin:***@cam/1", "yunet@1", "cpu/n-cnv")
    assert dock["url"] is None and dock["now"]["reconnects"] == 1 and dock["reconnects"] == 1
    chart = gate["chart"]
    assert len(chart["faces"]) == 60 and chart["faces"][-1] == 10 and sum(chart["faces"]) == 10
    people_chart = chart["people"]
    assert people_chart["correct"][-1] == 3 and people_chart["nose"][-1] == 1 and sum(people_chart["nose"]) == 1
    hall = status["sites"]["hall"]
    assert hall["cameras"] == ["dock", "gate"] and hall["up"] == 1
    assert hall["now"]["people"]["total"] == 10 and hall["now"]["people"]["compliance"] == 0.3
    assert hall["now"]["people"]["enough"] is True and hall["now"]["faces"]["compliance"] == 0.35  # 10 >= 2 x 5
    venue = status["venue"]
    assert (venue["cameras"], venue["up"], venue["people_last_hour"]) == (2, 1, 10)
    assert venue["now"]["compliance"] == 0.3 and venue["today"]["compliance"] == 0.3 and venue["today"]["total"] == 10
    assert venue["today"]["since"] <= status["now"] < venue["today"]["since"] + 25 * 3600  # local midnight


def test_today_counts_the_people_since_local_midnight_and_sees_new_minutes(redis_server):
    """Today's figure from real Redis history buckets: the minute before midnight is yesterday's; past minutes are
    kept between reads, the current ones read again."""
    from stats.schema import history_key
    from stats.today import TodayPeople, local_midnight

    client = redis.Redis.from_url(redis_server.url)
    midnight = local_midnight(1_800_000_000)
    now = midnight + 30 * 60 + 5
    first = int(midnight // 60)
    client.hset(history_key(first - 1), mapping={"people|gate|all|no_mask": 7})  # yesterday, 23:59
    client.hset(history_key(first), mapping={"people|gate|all|correct": 2, "faces|gate|all|correct": 40})
    client.hset(history_key(first + 20), mapping={"people|gate|all|nose": 1, "people|<b>|all|nose": 1})

    async def read(at: float, today: TodayPeople):
        aclient = aioredis.Redis.from_url(redis_server.url)
        try:
            return await today.read(aclient, at)
        finally:
            await aclient.aclose()

    today = TodayPeople()
    start, buckets, skipped = asyncio.run(read(now, today))
    assert start == midnight and skipped == 1 and len(buckets) == 31  # 00:00 to 00:30, the markup field skipped
    people = {key: n for _, bucket in buckets for key, n in bucket.items()}
    assert people == {("people", "gate", "all", "correct"): 2, ("people", "gate", "all", "nose"): 1}  # no faces
    client.hincrby(history_key(first + 30), "people|gate|all|correct", 5)  # this minute, written since
    _, buckets, _ = asyncio.run(read(now + 1, today))
    assert sum(n for _, bucket in buckets for n in bucket.values()) == 8


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
    people = demo["now"]["people"]
    assert people["total"] == 16 and people["compliance"] == 0.25  # the clip's truth: 4 people of each of 4 classes
    figure = card.find_element(By.CSS_SELECTOR, ".figure")
    assert figure.text == percent(people["compliance"]) + "✗ below the alert line"  # a mark and words beside colour
    assert browser.execute_script("return arguments[0].firstChild.textContent", figure) == "25.0\u00a0%"  # unbroken
    assert ("good" if people["compliance"] >= THRESHOLD else "bad") in figure.get_attribute("class").split()
    basis = card.find_element(By.CSS_SELECTOR, ".basis").text
    low, high = people["interval"]
    assert f"of {people['total']} people" in basis and f"{percent(low)} – {percent(high)}" in basis
    faces = card.find_element(By.CSS_SELECTOR, ".basis.faces").text
    face_share, face_total = percent(demo["now"]["faces"]["compliance"]), demo["now"]["faces"]["total"]
    assert faces == f"faces, each frame counted: {face_share} of {face_total}"  # secondary, named as such
    table = {row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[1].text
             for row in card.find_elements(By.TAG_NAME, "tr")}  # fmt: skip
    processed = demo["now"]["frames"]["processed"]
    assert processed > 0 and table["frames, last 5 min"].startswith(f"{processed} processed")
    assert table["source"] == str(clip) and table["detector"] == "yunet@1" and table["model"] == demo["model"]
    assert table["people, last 5 min"] == str(people["total"]) and table["people, all time"] == "16"
    minutes_with_people = sum(1 for i in range(60) if sum(demo["chart"]["people"][k][i] for k in CLASSES))
    points = card.find_elements(By.CSS_SELECTOR, ".point")
    assert len(points) == minutes_with_people >= 1
    assert card.find_elements(By.CSS_SELECTOR, "rect.bar")  # people per minute
    site = browser.find_element(By.CSS_SELECTOR, 'article.site[data-site="demo"]')
    assert site.find_element(By.CSS_SELECTOR, ".figure").text.startswith(
        percent(status["sites"]["demo"]["now"]["people"]["compliance"])
    )
    venue = browser.find_element(By.ID, "venue").text
    assert percent(status["venue"]["now"]["compliance"]) in venue and "cameras up\n0 of 1" in venue  # the clip ended
    assert f"of {status['venue']['today']['total']} people" in venue and "people in the last hour\n16" in venue
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
    _wait(browser, lambda d: "updated" in d.find_element(By.ID, "summary").text)
    status = json.loads(_get(counts_web + "/api/status")[1])
    window = _window_of({})
    chart = {"start_minute": 0, "faces": [0], "people": {k: [0] for k in CLASSES}}
    camera = _camera_of(window, chart, site=XSS, url=XSS, detector=XSS, model=XSS)
    status.update(cameras={XSS: camera}, sites={XSS: {"cameras": [XSS], "up": 1, "now": window, "chart": chart}})
    browser.execute_script("render(arguments[0])", status)
    card = browser.find_element(By.CSS_SELECTOR, "article.camera")
    assert card.get_attribute("data-camera") == XSS and card.find_element(By.TAG_NAME, "h3").text.startswith(XSS)
    assert browser.find_element(By.CSS_SELECTOR, "article.site h3").text == XSS
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []


def _window_of(people: dict[str, int]) -> dict:
    """A ``now`` window as /api/status writes it, with these people by class and no faces."""
    classes = {name: people.get(name, 0) for name in CLASSES}
    total = sum(classes.values())
    share = classes["correct"] / total if total else None
    return {
        "minutes": 5,
        "people": {"classes": classes, "total": total, "compliance": share, "interval": None, "enough": total >= 5},
        "faces": {"classes": dict.fromkeys(CLASSES, 0), "total": 0, "compliance": None},
        "frames": {"processed": 0, "dropped": 0, "failed": 0},
        "reconnects": 0,
    }


def _camera_of(window: dict, chart: dict, **fields) -> dict:
    totals = {"classes": window["people"]["classes"], "total": window["people"]["total"], "compliance": None}
    camera = {"up": True, "site": "hall", "seen_ago_s": 0.4, "url": None, "detector": None, "model": None}
    camera.update(frames=window["frames"], reconnects=0, now=window, chart=chart, people=totals, faces=totals)
    return {**camera, **fields}


def _render(browser, status: dict) -> None:
    browser.execute_script("render(arguments[0])", status)


def _texts_by_camera(browser, selector: str) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    return {e.get_attribute("data-camera"): e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)}


def test_page_says_why_a_camera_is_down_and_marks_local_figures_when_the_server_sends_them(browser, counts_web):
    """The fields the server adds for camera errors and Redis outages (last_error, last_frame_age_s, source), fed to
    the page's own script: the reason beside the red badge, "no frame yet" rather than an age, a "local figures"
    marker; without them, the page says what it knows (the last report's age), not a frame's."""
    from selenium.webdriver.common.by import By

    browser.get(counts_web + "/")
    _wait(browser, lambda d: "updated" in d.find_element(By.ID, "summary").text)
    status = json.loads(_get(counts_web + "/api/status")[1])
    chart = {"start_minute": 29_000_000, "faces": [0] * 60, "people": {k: [0] * 60 for k in CLASSES}}
    window = _window_of({"correct": 3, "nose_mouth": 1})
    error = {"reason": "unauthorized", "message": "rtsp://admin:***@10.0.0.5/stream2: 401", "since": 1_700_000_000}
    cameras = {
        "gate": _camera_of(window, chart, up=False, last_error=error, last_frame_age_s=None),
        "lobby": _camera_of(window, chart, last_error=None, last_frame_age_s=2.5),
        "old": _camera_of(window, chart, up=False),  # from a server that sends neither field
    }
    status.update(cameras=cameras, sites={}, source="local")
    _render(browser, status)
    glance = _texts_by_camera(browser, "#glance li")
    assert glance["gate"].startswith("✕ down · unauthorized") and "401" in glance["gate"]
    assert "75.0 %" in glance["gate"] and glance["lobby"].startswith("● up") and "2.5 s ago" in glance["lobby"]
    assert "last report 0.4 s ago" in glance["old"] and "last frame" not in glance["old"]
    gate = browser.find_element(By.CSS_SELECTOR, 'article.camera[data-camera="gate"]')
    rows = {tr.find_elements(By.TAG_NAME, "td")[0].text: tr.find_elements(By.TAG_NAME, "td")[1].text
            for tr in gate.find_elements(By.TAG_NAME, "tr")}  # fmt: skip
    assert rows["last frame"] == "no frame yet" and rows["last error"].startswith("unauthorized since ")
    assert re.search(r"since \d\d:\d\d:\d\d: rtsp://admin:\*\*\*@", rows["last error"])  # 24 h; redacted as sent
    summary = browser.find_element(By.ID, "summary")
    assert "local figures" in summary.text and "local" in summary.get_attribute("class").split()
    del status["source"]
    _render(browser, status)
    assert "local figures" not in summary.text


def test_page_has_one_legend_titled_charts_the_right_class_words_and_one_clock(browser, demo_run):
    """What the operator walk found confusing: the legend once, every chart titled with its unit, the class words of
    names.CLASS_LABELS (the page's script, the setup view's and the docs agree), no 12 h clock, no figure broken."""
    from selenium.webdriver.common.by import By

    from stats.status import PAGE_DIR

    running, _ = demo_run
    browser.get(running.server.base_url + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "article.camera"))
    legends = browser.find_elements(By.CSS_SELECTOR, ".legend")
    words = [item.text for item in legends[0].find_elements(By.TAG_NAME, "li")]
    assert len(legends) == 1 and words == [CLASS_LABELS[name] for name in CLASSES]
    assert CLASS_LABELS["chin"] == "chin exposed" and "on the chin" in CLASS_LABELS["nose_mouth"]
    for script in ("page.js", "setup.js"):
        labels = re.search(r"const LABELS = \{(.*?)\};", (PAGE_DIR / script).read_text(), re.S).group(1)
        assert dict(re.findall(r"(\w+): '([^']*)'", labels)) == CLASS_LABELS, script
    page_md = (ROOT / "docs/page.md").read_text()
    assert all(f"| `{name}` | {label} |" in page_md for name, label in CLASS_LABELS.items())
    card = browser.find_element(By.CSS_SELECTOR, "article.camera")
    titles = [h.text for h in card.find_elements(By.CSS_SELECTOR, "h4.chart-title")]
    assert titles == ["Compliance of people, % per minute (dashed: alert line)", "People per minute, by mask position"]
    page_text = browser.find_element(By.TAG_NAME, "body").text
    assert not re.search(r"\b(AM|PM)\b", page_text) and re.search(r"updated \d\d:\d\d:\d\d", page_text)
    axis = [t.text for t in card.find_elements(By.CSS_SELECTOR, "svg text")]
    assert "now" in axis and all(re.fullmatch(r"\d\d:\d\d", t) for t in axis if ":" in t)
    figures = browser.execute_script(
        "return [...document.querySelectorAll('.figure, .headline-item .value, .figure-small')]"
        ".map(e => [e.firstChild.textContent, e.firstChild.nodeType === 3 ? 1 : 0])"
    )
    shares = [text for text, _ in figures if "%" in text]
    assert shares and all(re.fullmatch(r"\d+\.\d\u00a0%", text) for text in shares)  # no-break space: one piece


def test_on_a_phone_the_cameras_health_list_comes_first_and_is_compact(browser, demo_run):
    from selenium.webdriver.common.by import By

    running, _ = demo_run
    browser.set_window_size(390, 844)
    browser.get(running.server.base_url + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#glance li[data-camera]"))
    glance = browser.find_element(By.ID, "glance")
    first_card = browser.find_element(By.CSS_SELECTOR, "article.card")
    assert glance.rect["y"] + glance.rect["height"] <= first_card.rect["y"]  # before every card
    assert glance.rect["y"] < 844 and glance.rect["height"] < 120  # on the first screen, a line or two a camera
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390  # nothing off the side


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
    assert all(f"{n} {CLASS_LABELS[name]} ({name})" in caption for name, n in counts.items())  # the page's words
    assert re.match(r"\d\d:\d\d:\d\d · faces", caption)  # the 24 h clock
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


def test_screenshots_show_the_clip_relative_to_the_working_folder(monkeypatch):
    """The README's pictures show the demo's source as the checkout's own path, not where a developer keeps it."""
    from binarycop.screenshots import _shown_path

    monkeypatch.chdir(ROOT)
    assert _shown_path(CLIP) == "binarycop/assets/demo_clip.mp4"
    monkeypatch.chdir(ROOT / "docs")
    assert _shown_path(CLIP) == str(CLIP)  # not under the working folder: as it is


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
