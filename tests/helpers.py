"""
Helpers shared by the tests: sinks with injected faults, waiting for a condition
without sleeping as synchronisation, and the manual's pages.
"""

from __future__ import annotations

import asyncio
import gc
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


class CyclicGarbage:
    """
    Objects of asynctrack that only the garbage collector could free, made in a block.

    Inside ``with CyclicGarbage() as found:`` the collector is off and saves what it
    finds (``gc.DEBUG_SAVEALL``); on exit it collects, and ``found`` lists the garbage
    that is asynctrack's own: objects of its types, its functions, coroutines and
    frames (generated probe wrappers included), and containers holding one of those.
    Objects alive before the block are held meanwhile, so only what the block made
    is reported.
    """

    def __init__(self) -> None:
        self.found: list[Any] = []

    def __enter__(self) -> list[Any]:
        gc.collect()
        self._enabled = gc.isenabled()
        gc.disable()
        # Held until the end: garbage made before the block (a previous test's) cannot
        # become garbage inside it.
        self._before = gc.get_objects()
        gc.set_debug(gc.DEBUG_SAVEALL)
        return self.found

    def __exit__(self, *exc: object) -> None:
        try:
            gc.collect()
            self.found.extend(o for o in gc.garbage if _safe(_ours, o) or _safe(_holds_ours, o))
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            del self._before
            gc.collect()  # the saved cycles, now, not in a later test's time
            if self._enabled:
                gc.enable()


_OWN_DIR = str(Path(asynctrack.__file__).resolve().parent)


def _safe(test: Callable[[object], bool], o: object) -> bool:
    try:
        return test(o)
    except Exception:  # pragma: no cover - a broken object in someone else's cycle
        return False


def _ours(o: object) -> bool:
    if type(o).__module__.startswith("asynctrack"):
        return True
    for attr in ("f_code", "cr_code", "gi_code", "ag_code", "__code__"):
        code = getattr(o, attr, None)
        if code is not None and hasattr(code, "co_filename"):
            name = code.co_filename
            return name.startswith(_OWN_DIR) or name.startswith("<asynctrack ")
    return False


def _holds_ours(o: object) -> bool:
    if isinstance(o, dict):
        items: Any = [*o.keys(), *o.values()]
    elif isinstance(o, (tuple, list)):
        items = o
    else:
        return False
    return any(_ours(x) for x in items)


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
