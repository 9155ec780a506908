"""A real headless Chromium (Debian's `chromium` + `chromium-driver`), driven by selenium.

Running as root needs --no-sandbox; on this closed network Chromium stalls on its
background fetches unless they are off, so every flag below is needed. Each browser gets
a fresh profile directory (removed on close). Fails loudly when Chromium is missing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1100,900",
)


@contextmanager
def chromium(*, javascript: bool = True, width: int = 1100,
             height: int = 900) -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, DRIVER):
        if not Path(path).exists():
            raise AssertionError(
                f"{path} is missing: install Debian's chromium and chromium-driver "
                "(./bootstrap.sh setup does)")
    profile = tempfile.mkdtemp(prefix="bluegreen-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile}")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(driver: webdriver.Chrome, path: Path, width: int = 1000) -> Path:
    """A PNG of the whole page at `width` CSS pixels (DevTools: works with scripts off)."""
    import base64

    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    height = min(int(size["height"]) + 16, 6000)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
