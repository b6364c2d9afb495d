"""
Shared fixtures: anyio backends, a clean asynctrack state per test, database servers.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from hypothesis import settings

import asynctrack
from asynctrack._core.runtime import RUNTIME

POSTGRES_URL = os.environ.get(
    "ASYNCTRACK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("ASYNCTRACK_TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306/test")
REQUIRE_SERVERS = os.environ.get("ASYNCTRACK_REQUIRE_SERVERS") == "1"

# No property test has a time limit per example: speed is checked by benchmarks/, never by
# timed tests, and Hypothesis's default 200 ms deadline failed examples on a loaded CI
# machine (tests/core/test_runtime.py). A test's own @settings still applies on top.
settings.register_profile("asynctrack", deadline=None)
settings.load_profile("asynctrack")


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """
    Run every ``@pytest.mark.anyio`` test on asyncio and on trio.
    """
    return str(request.param)


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """
    Reset the registry's levels, the pipeline, limits and ContextVars around each test.
    """
    _reset()
    yield
    _reset()


class Configure:
    """
    ``configured(*sinks, **options)``: :func:`asynctrack.configure` for one test.

    The sinks are given positionally and the spill directory defaults to the test's
    ``tmp_path``, so a failing sink never leaves spill files in the working directory.
    The autouse reset shuts the pipeline down after the test.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.spill_dir = tmp_path

    def __call__(self, *sinks: asynctrack.Sink, **options: Any) -> None:
        options.setdefault("spill_dir", self.spill_dir)
        asynctrack.configure(sinks=list(sinks), **options)


@pytest.fixture
def configured(tmp_path: Path) -> Configure:
    """
    Configure asynctrack for this test (see :class:`Configure`).
    """
    return Configure(tmp_path)


def _reset() -> None:
    RUNTIME.reset()


def _reachable(url: str) -> bool:
    parsed = urlparse(url.replace("+asyncpg", "").replace("+asyncmy", "").replace("+aiomysql", ""))
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (5432 if parsed.scheme.startswith("postgres") else 3306)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _server_url(url: str, what: str) -> str:
    if not _reachable(url):
        if REQUIRE_SERVERS:
            pytest.fail(f"{what} at {url} is not reachable and ASYNCTRACK_REQUIRE_SERVERS=1")
        pytest.skip(f"{what} at {url} is not reachable (set ASYNCTRACK_TEST_*_URL)")
    return url


@pytest.fixture
def postgres_url() -> str:
    """
    URL of the test PostgreSQL server (skips, or fails under ASYNCTRACK_REQUIRE_SERVERS=1).
    """
    return _server_url(POSTGRES_URL, "PostgreSQL")


@pytest.fixture
def mysql_url() -> str:
    """
    URL of the test MariaDB/MySQL server (skips, or fails under ASYNCTRACK_REQUIRE_SERVERS=1).
    """
    return _server_url(MYSQL_URL, "MariaDB")


@pytest.fixture
def table_prefix() -> str:
    """
    A table prefix unique to this test, so tests never share tables.
    """
    return f"t{uuid.uuid4().hex[:10]}_"
