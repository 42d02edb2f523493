"""A headless Chromium driven through chromedriver (Debian's ``chromium`` and
``chromium-driver``, installed by ``make system-deps``), for pages autods writes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def chromium(width: int = 1300, height: int = 1000) -> Iterator:
    """A browser session whose console messages ``driver.get_log("browser")`` returns."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.fail("chromium and chromedriver are needed: make system-deps")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_problems(driver) -> list[str]:
    """Console errors, and images that did not load, on the current page."""
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.alt || i.src.slice(0, 40));")
    return errors + [f"image did not load: {b}" for b in broken]


def load_seconds(driver) -> float:
    """From navigation start to the end of the load event, as the browser measured it."""
    return driver.execute_script(
        "const t = performance.getEntriesByType('navigation')[0];"
        "return (t.loadEventEnd - t.startTime) / 1000;")
