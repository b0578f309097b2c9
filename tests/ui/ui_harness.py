"""What the dashboard's browser tests share besides fixtures (conftest.py): the API as the test
sees it, a headless Debian Chromium on kilnd's pages, waiting. A module of its own so that the test
files import it by name (tests/api has a conftest too)."""
from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))
sys.path.insert(0, str(REPO / "tests" / "ci"))

from kilnd_fixture import Kilnd, wait_until  # noqa: E402
import test_github_webhook as gh  # noqa: E402,F401  (its status recorder and webhook signing)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def output_root() -> Path:
    build = Path(os.environ.get("KILN_BUILD", "build/release"))
    if not build.is_absolute():
        build = REPO / build
    return Path(os.environ.get("KILN_UI_OUTPUT", build / "test-output" / "ui"))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    got = wait_until(predicate, timeout, interval=interval)
    assert got, f"timed out after {timeout} s waiting for {what}"
    return got


class Api:
    """Bearer-token calls (the test's own view, not the page's)."""

    def __init__(self, kilnd: Kilnd, token: str | None = None, cookie: str | None = None):
        self.base = kilnd.url
        self.token = token
        self.cookie = cookie

    def call(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, bytes, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def json(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict]:
        status, raw, _ = self.call(method, path, body, headers)
        return status, (json.loads(raw) if raw else {})


class Browser:
    """A headless Chromium on kilnd's pages."""

    def __init__(self, kilnd: Kilnd, shots: Path, downloads: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.kilnd = kilnd
        self.shots = shots
        self.downloads = downloads
        self.allowed_console: list[re.Pattern] = []
        self.logged: list[dict] = []
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})

    def open(self, path: str) -> None:
        self.driver.get(path if path.startswith("http") else self.kilnd.url + path)

    def find(self, css: str, timeout: float = 20):
        from selenium.webdriver.common.by import By

        found = wait_until(lambda: self.driver.find_elements(By.CSS_SELECTOR, css) or None, timeout, interval=0.1)
        assert found, f"no {css} on {self.driver.current_url} within {timeout} s"
        return found[0]

    def all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def read(self, fn, tries: int = 20):
        """fn() again when the page redrew what it was reading (pages refresh every few seconds)."""
        from selenium.common.exceptions import StaleElementReferenceException

        for attempt in range(tries):
            try:
                return fn()
            except StaleElementReferenceException:
                if attempt == tries - 1:
                    raise

    def text(self, css: str, timeout: float = 20) -> str:
        return self.read(lambda: self.find(css, timeout).text)

    def click(self, css: str, timeout: float = 20) -> None:
        self.read(lambda: self.find(css, timeout).click())

    def open_as(self, path: str, who: str) -> None:
        """Opens a page, which asks to sign in first, and signs in with `who`'s token."""
        self.open(path)
        self.sign_in(self.kilnd.tokens[who])

    def sign_in(self, token: str) -> None:
        self.find("#token").send_keys(token)
        self.find("#signin-submit").click()
        self.find("#signout")

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def allow_console(self, pattern: str) -> None:
        """An error the test itself provokes (a refused sign-in is a 401 the console reports)."""
        self.allowed_console.append(re.compile(pattern))

    def console_errors(self) -> list[dict]:
        self.logged += self.driver.get_log("browser")
        return [e for e in self.logged if e["level"] == "SEVERE"
                and not any(p.search(e["message"]) for p in self.allowed_console)]

    def quit(self) -> None:
        self.driver.quit()
