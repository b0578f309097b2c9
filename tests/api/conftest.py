"""Fixtures of the API suite: one real kilnd for the session (fresh data dir, two tokens), the
spec recorder every client reports to, and a factory for extra kilnd instances with other config."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_client import ApiClient  # noqa: E402
from kilnd_fixture import Kilnd  # noqa: E402
from openapi_check import OpenApiSpec, SpecRecorder  # noqa: E402


@pytest.fixture(scope="session")
def recorder() -> SpecRecorder:
    return SpecRecorder(OpenApiSpec.load())


# Scopes of the suite's tokens (docs/tenants.md): alice is the operator (admin, as every token was
# before scopes); bob an ordinary tenant, so that what is alice's stays 404 to him.
TOKEN_SCOPES = {"bob": "sandboxes,ci:submit"}


def _start(instance: Kilnd, tokens: tuple[str, ...]) -> Kilnd:
    try:
        for name in tokens:
            instance.create_token(name, TOKEN_SCOPES.get(name, "admin"))
        instance.start()
    except Exception:
        instance.cleanup()
        raise
    return instance


@pytest.fixture(scope="session")
def kilnd():
    """The session's kilnd (default config but for ci_repos) with tokens 'alice' and 'bob'.
    ci_repos names a dead loopback port, where test_tenants' jobs of tokens without admin go."""
    instance = _start(Kilnd(name="test", extra_env={"KILN_CI_REPOS": "http://127.0.0.1:9/"}), ("alice", "bob"))
    yield instance
    leftover = instance.cleanup()
    if leftover:
        print(f"\nkilnd left QEMU processes behind after SIGTERM: {leftover}", file=sys.stderr)


@pytest.fixture(scope="session")
def kilnd_factory():
    """Makes extra kilnd instances (own data dir and port) with config from env; all are cleaned
    up at the end of the session."""
    made: list[Kilnd] = []

    def make(extra_env: dict[str, str], tokens: tuple[str, ...] = ("alice",), name: str = "test") -> Kilnd:
        instance = Kilnd(extra_env=extra_env, name=name)
        made.append(instance)
        return _start(instance, tokens)

    yield make
    for instance in made:
        instance.cleanup()


@pytest.fixture(scope="session")
def api(kilnd, recorder) -> ApiClient:
    """alice's client."""
    return ApiClient(kilnd.port, kilnd.tokens["alice"], recorder)


@pytest.fixture(scope="session")
def api_bob(kilnd, recorder) -> ApiClient:
    return ApiClient(kilnd.port, kilnd.tokens["bob"], recorder)


@pytest.fixture(scope="session")
def api_anon(kilnd, recorder) -> ApiClient:
    return ApiClient(kilnd.port, None, recorder)


@pytest.fixture
def sandbox(api):
    """A running sandbox for one test, deleted afterwards."""
    sb = api.create_sandbox(metadata={"test": os.environ.get("PYTEST_CURRENT_TEST", "?")[:200]})
    yield sb
    api.delete(f"/v1/sandboxes/{sb['id']}")
