"""Fixtures of the SDK suite: a real kilnd (the API suite's fixture, no spare QEMU so the tests can
tell which QEMU is a sandbox's), the SDK imported from this source tree, and a client."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[1]
REPO = SDK.parents[1]
sys.path.insert(0, str(SDK))
sys.path.insert(0, str(REPO / "tests" / "api"))

from kilnd_fixture import Kilnd  # noqa: E402

from kiln import Kiln  # noqa: E402


@pytest.fixture(scope="session")
def kilnd():
    instance = Kilnd(extra_env={"KILN_KEEP_SPARE": "false"}, name="test-sdk")
    try:
        instance.create_token("alice")
        instance.create_token("bob", "sandboxes")  # a tenant: alice (admin) sees his, not he hers
        instance.start()
    except Exception:
        instance.cleanup()
        raise
    yield instance
    instance.cleanup()


@pytest.fixture(scope="session")
def k(kilnd) -> Kiln:
    return Kiln(kilnd.url, kilnd.tokens["alice"])


@pytest.fixture
def kiln_env(kilnd, monkeypatch):
    """KILN_URL and KILN_TOKEN set as a user would, for code that calls Kiln() bare."""
    monkeypatch.setenv("KILN_URL", kilnd.url)
    monkeypatch.setenv("KILN_TOKEN", kilnd.tokens["alice"])
    return kilnd


@pytest.fixture
def sb(k):
    sandbox = k.sandboxes.create(template="tiny", ttl_seconds=600, metadata={"suite": "sdk"})
    yield sandbox
    sandbox.delete()
