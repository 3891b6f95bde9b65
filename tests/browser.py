"""A real headless browser for the inspector's tests: Debian's Chromium, driven from Python by
Selenium through Debian's matching chromedriver (no browser is downloaded). Every page's console
is read, so that a test can say the pages ran without errors; screenshots go to
`$TETHER_SCREENSHOTS` when it is set (`make screenshots` sets it to docs/inspector), else into
the test's own directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1440, 960)
T = TypeVar("T")


class Browser:
    def __init__(self, base_url: str, screenshots: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        # As root, Chromium's sandbox cannot start; /dev/shm in containers is too small for it.
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         f"--window-size={WINDOW[0]},{WINDOW[1]}"):  # fmt: skip
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.base_url = base_url.removesuffix("/v1")
        self.screenshots = Path(os.environ.get("TETHER_SCREENSHOTS") or screenshots)
        self.console: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.driver.quit()

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def log_in(self, key: str, path: str = "/inspector") -> None:
        """Through the login form, as a person does: the page asks for the key."""
        self.open(path)
        self.find("input[name=key]").send_keys(key)
        self.click("form button[type=submit]")
        self.wait(lambda: "/login" not in self.driver.current_url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        """Click `css` in the middle of the window; again if a live view moved it meanwhile."""

        def clicked() -> bool:
            element = self.find(css)
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
            element.click()
            return True

        self.wait(clicked)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, until: Callable[[], T], timeout: float = 20) -> T:
        """`until`'s first truthy answer, asked again and again (the views refresh every second)."""
        return WebDriverWait(
            self.driver, timeout, ignored_exceptions=(WebDriverException, LookupError)
        ).until(lambda _: until())

    def errors(self) -> list[dict[str, Any]]:
        """What the pages logged as errors since the last call (a failed request, a script's)."""
        self.console += self.driver.get_log("browser")
        found = [entry for entry in self.console if entry["level"] == "SEVERE"]
        self.console.clear()
        return found

    def screenshot(self, name: str, css: str | None = None) -> Path:
        """The window, scrolled to `css` when given, as `name`.png."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        if css is not None:
            self.driver.execute_script("arguments[0].scrollIntoView()", self.find(css))
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path
