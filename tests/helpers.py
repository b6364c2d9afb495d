"""
Helpers shared by the tests: sinks with injected faults, waiting for a condition
without sleeping as synchronisation, and the manual's pages.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

import asynctrack
from asynctrack import Log


class FlakySink(asynctrack.Sink):
    """
    Fails while ``failing`` is set (or for ``fail_for`` seconds after the first write),
    records every log it accepted, and refuses writes after close.
    """

    def __init__(
        self, name: str = "flaky", *, fail_for: float = 0.0, poison: set[str] | None = None
    ) -> None:
        self._name = name
        self.fail_for = fail_for
        self.failing = threading.Event()
        self.poison = poison or set()
        self.ids: list[str] = []
        self.attempts = 0
        self.closed = False
        self._first: float | None = None

    @property
    def name(self) -> str:
        return self._name

    async def write(self, logs: Sequence[Log]) -> None:
        if self.closed:
            raise AssertionError("write after close")
        self.attempts += 1
        now = time.monotonic()
        if self._first is None:
            self._first = now
        if self.failing.is_set() or now - self._first < self.fail_for:
            raise ConnectionError("injected outage")
        if any(log.id in self.poison for log in logs):
            raise ValueError("poison log")
        self.ids.extend(log.id for log in logs)

    async def close(self) -> None:
        self.closed = True


class SlowSink(asynctrack.Sink):
    """
    Takes ``delay`` seconds per batch (or blocks until ``release`` is set); ``entered``
    is set once a write has started.
    """

    def __init__(self, delay: float = 0.0, *, block: bool = False) -> None:
        self.delay = delay
        self.entered = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.count = 0

    @property
    def name(self) -> str:
        return "slow"

    async def write(self, logs: Sequence[Log]) -> None:
        self.entered.set()
        while not self.release.is_set():  # noqa: ASYNC110 - a threading.Event, set by the test
            await asyncio.sleep(0.01)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += len(logs)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """
    Poll ``predicate()`` until it is true or ``timeout`` seconds pass; return its last value.

    The one place tests wait for something another thread does: use it (or an event)
    instead of a hand-written ``deadline = time.monotonic()`` loop or a bare sleep. Poll
    for the very thing the test then asserts (a counter, not only the logs it counts).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.005
) -> bool:
    """
    :func:`wait_for` for a test running on the event loop that does the work: sleeps
    between polls yield to the loop instead of blocking it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        await anyio.sleep(interval)


DOCS = Path(__file__).resolve().parent.parent / "docs"


def docs_page(name: str) -> str:
    """
    The text of one page of the manual, ``docs/<name>``.
    """
    return (DOCS / name).read_text(encoding="utf-8")


def config_docs() -> str:
    """
    The manual's Configuration page (the documentation the config tests check).
    """
    return docs_page("configuration.md")


async def drop_tables(url: str, prefix: str) -> None:
    """
    Drop a test's ``{prefix}calls`` and ``{prefix}logs`` tables.
    """
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for name in ("calls", "logs"):
                await conn.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}{name}"))
    finally:
        await engine.dispose()
