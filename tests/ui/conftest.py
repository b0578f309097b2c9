"""Fixtures of the dashboard's browser tests: one real kilnd (real VMs) with GitHub statuses going
to a local recorder and public_url set to its own address, three tokens, and a headless Debian
Chromium per test (ui_harness.Browser) that saves screenshots under the test's output dir and fails
the test when the browser's console logged an error."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_harness import Api, Browser, Kilnd, gh, output_root  # noqa: E402

examples = gh.examples  # the recorded GitHub payloads, as a fixture here too

# Tokens (docs/tenants.md): alice the operator; bob a tenant with sandboxes and CI; carol may only
# queue CI jobs.
TOKENS = {"alice": "admin", "bob": "sandboxes,ci:submit", "carol": "ci:submit"}


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


@pytest.fixture(scope="session")
def api_for(ui_kilnd):
    return lambda name: Api(ui_kilnd, ui_kilnd.tokens[name])


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
