"""Fixtures of the fleet suite: a real PostgreSQL of our own per module (pg_server.py) and the
API suite's kilnd launcher, so that several kilnd hosts can share one store."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "api"))

from pg_server import PgServer  # noqa: E402


@pytest.fixture(scope="module")
def pg():
    """One PostgreSQL per test module; each test that needs a clean store makes its own database
    with pg.create_database()."""
    with PgServer() as server:
        yield server


@pytest.fixture(scope="session")
def recorder():
    """The API suite's OpenAPI recorder, for ApiClient (its checks are the API suite's to assert)."""
    from openapi_check import OpenApiSpec, SpecRecorder

    return SpecRecorder(OpenApiSpec.load())
