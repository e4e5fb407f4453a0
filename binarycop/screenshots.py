"""Pictures of the built-in page and the setup view, taken by a real browser (Debian's chromium, headless, under
selenium from the page extra): ``binarycop demo --screenshot DIR`` and the browser tests use it. Works offline."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless, no sandbox (root in a container), nothing fetched from the network behind the page's back.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class BrowserMissing(RuntimeError):
    """No chromium, chromedriver or selenium here; the message says which and how to install it."""


def open_browser(profile: Path, width: int = 1280, height: int = 900):
    """A headless chromium with a fresh profile in ``profile``, driven by selenium; ``quit()`` it when done."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise BrowserMissing("selenium is not installed: pip install 'binarycop[page]'") from None
    binary = shutil.which("chromium")
    if binary is None or not Path(CHROMEDRIVER).is_file():
        raise BrowserMissing("chromium and chromedriver are not installed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _full_page(driver, path: Path, width: int) -> None:
    driver.set_window_size(width, 400)
    time.sleep(0.3)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 140, 400), 4000))
    time.sleep(0.3)
    driver.save_screenshot(str(path))


def take_screenshots(page_url: str, setup_url: str | None, out: Path) -> list[Path]:
    """page.png (desktop), page-phone.png (a phone's width) and, with a setup view, setup.png, into ``out``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with tempfile.TemporaryDirectory(prefix="binarycop-chromium-") as profile:
        driver = open_browser(Path(profile))
        try:
            driver.get(page_url)
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "article.camera"))
            for name, width in (("page.png", 1280), ("page-phone.png", 390)):
                _full_page(driver, out / name, width)
                saved.append(out / name)
            if setup_url:
                driver.get(setup_url)
                WebDriverWait(driver, 30).until(
                    lambda d: d.execute_script("const i = document.querySelector('img'); return i && i.naturalWidth")
                )
                _full_page(driver, out / "setup.png", 1000)
                saved.append(out / "setup.png")
        finally:
            driver.quit()
    return saved


def _shown_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies under it (the pictures then show
    ``binarycop/assets/demo_clip.mp4``, not where a developer keeps the checkout), else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


async def demo_screenshots(out: Path, wait_seconds: float) -> list[Path]:
    """Run the demo (embedded Redis, setup view on, free ports) for ``wait_seconds`` so the last hour's chart has
    points, then photograph the page and the setup view into ``out``."""
    import asyncio

    from binarycop.democlip import demo_config
    from binarycop.server import Server
    from stats.embedded import EmbeddedRedis

    config = demo_config("127.0.0.1", 0)
    zones = {"queue": [(0.0, 0.55), (0.5, 0.55), (0.5, 1.0), (0.0, 1.0)], "door": [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0)]}
    url = _shown_path(Path(config.cameras[0].url))  # no machine's folder in the pictures
    camera = config.cameras[0].model_copy(update={"zones": zones, "url": url})  # zones: drawn in the setup view
    http = config.http.model_copy(update={"preview": True, "preview_port": 0})
    config = config.model_copy(update={"http": http, "cameras": [camera]})
    embedded = EmbeddedRedis(None)
    server = Server(config, embedded.url)
    try:
        await server.start()
        await asyncio.sleep(wait_seconds)
        setup = f"http://127.0.0.1:{server.preview_web.port}/"
        return await asyncio.to_thread(take_screenshots, server.base_url + "/", setup, out)
    finally:
        await server.stop()
        embedded.close()
