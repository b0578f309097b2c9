"""Fixtures of the dashboard's browser tests: one real kilnd (real VMs) with GitHub statuses going
to a local recorder and public_url set to its own address, three tokens, and a headless Debian
Chromium per test (Selenium over chromedriver) that saves screenshots under the test's output dir
and fails the test when the browser's console logged an error."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))
sys.path.insert(0, str(REPO / "tests" / "ci"))

from kilnd_fixture import Kilnd, wait_until  # noqa: E402
import test_github_webhook as gh  # noqa: E402  (its status recorder and webhook signing)

examples = gh.examples  # the recorded GitHub payloads, as a fixture here too

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Tokens (docs/tenants.md): alice the operator; bob a tenant with sandboxes and CI; carol may only
# queue CI jobs.
TOKENS = {"alice": "admin", "bob": "sandboxes,ci:submit", "carol": "ci:submit"}


def output_root() -> Path:
    build = Path(os.environ.get("KILN_BUILD", "build/release"))
    if not build.is_absolute():
        build = REPO / build
    return Path(os.environ.get("KILN_UI_OUTPUT", build / "test-output" / "ui"))


@pytest.fixture(scope="session")
def statuses():
    recorder = gh.StatusRecorder()
    yield recorder
    recorder.close()


@pytest.fixture(scope="session")
def gh_repo(tmp_path_factory) -> Path:
    """The repository the GitHub webhook's jobs come from (ci_repos names it)."""
    return tmp_path_factory.mktemp("gh") / "Hello-World"


class SelfLinkingKilnd(Kilnd):
    """public_url is its own address: the links in its commit statuses can be followed."""

    def __init__(self, extra_env=None, name: str = "test"):
        super().__init__(extra_env, name)
        self.extra_env["KILN_PUBLIC_URL"] = self.url


@pytest.fixture(scope="session")
def ui_kilnd(statuses, gh_repo):
    instance = SelfLinkingKilnd.launched({
        "KILN_CI_WORKERS": "2",
        "KILN_CI_REPOS": str(gh_repo),
        "KILN_GITHUB_WEBHOOK_SECRET": gh.SECRET,
        "KILN_GITHUB_API_URL": statuses.api_url,
        "KILN_GITHUB_TOKEN": gh.GH_TOKEN,
    }, "ui", TOKENS)
    yield instance
    leftover = instance.cleanup()
    assert not leftover, f"kilnd left QEMU processes behind: {leftover}"


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


@pytest.fixture(scope="session")
def api_for(ui_kilnd):
    return lambda name: Api(ui_kilnd, ui_kilnd.tokens[name])


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

    def text(self, css: str, timeout: float = 20) -> str:
        return self.find(css, timeout).text

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


@pytest.fixture()
def browser(request, ui_kilnd):
    shots = output_root() / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    downloads = Path(tempfile.mkdtemp(prefix="kiln-ui-downloads-"))
    b = Browser(ui_kilnd, shots, downloads)
    try:
        yield b
        errors = b.console_errors()
        assert not errors, f"the browser's console logged errors: {errors}"
    finally:
        b.quit()
        shutil.rmtree(downloads, ignore_errors=True)


@pytest.fixture()
def new_browser(request, ui_kilnd):
    """More browsers in one test (other people, other tokens); each checked like `browser`."""
    made: list[Browser] = []

    def make(label: str) -> Browser:
        b = Browser(ui_kilnd, output_root() / request.node.name / label, Path(tempfile.mkdtemp(prefix="kiln-ui-dl-")))
        made.append(b)
        return b

    yield make
    try:
        for b in made:
            errors = b.console_errors()
            assert not errors, f"the browser's console logged errors: {errors}"
    finally:
        for b in made:
            b.quit()
            shutil.rmtree(b.downloads, ignore_errors=True)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    got = wait_until(predicate, timeout, interval=interval)
    assert got, f"timed out after {timeout} s waiting for {what}"
    return got


__all__ = ["Api", "Browser", "wait_for", "time"]
