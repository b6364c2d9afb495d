"""
Nothing a sink does may stop delivery (issue #14, section 2): any exception from a
sink's ``open``, ``write`` or ``close`` — ``CancelledError``, ``KeyboardInterrupt``,
``SystemExit`` and other ``BaseException`` subclasses included — is a failed write,
retried and spilled, never the end of a worker or of the dispatcher.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log
from asynctrack._core.runtime import RUNTIME
from asynctrack._delivery import pipeline as _pipeline

from ..helpers import wait_for

tr = asynctrack.get_tracker("tests.sink_exceptions")


@tr.probe
def work(n: int) -> int:
    return n


class Odd(BaseException):
    """A BaseException of the sink's own."""


class Unprintable(Exception):
    """An exception whose message cannot be shown (its ``__str__`` raises)."""

    def __str__(self) -> str:
        raise RuntimeError("no message")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


KINDS: dict[str, type[BaseException]] = {
    "cancelled": asyncio.CancelledError,
    "keyboard": KeyboardInterrupt,
    "exit": SystemExit,
    "generator": GeneratorExit,
    "odd": Odd,
    "error": RuntimeError,
    "unprintable": Unprintable,
}


class ScriptedSink(asynctrack.Sink):
    """
    Raises the next scripted exception on each call of a method, then behaves.
    """

    def __init__(self, script: dict[str, list[str]], *, in_task: bool = False) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.in_task = in_task
        self.ids: list[str] = []
        self.lock = threading.Lock()

    @property
    def name(self) -> str:
        return "scripted"

    async def _maybe_raise(self, method: str) -> None:
        todo = self.script.get(method)
        if todo:
            kind = KINDS[todo.pop(0)]
            if self.in_task:
                # Raised in a task the sink starts itself: escapes the loop unless caught.
                async def boom() -> None:
                    raise kind("injected")

                await asyncio.get_running_loop().create_task(boom())
            raise kind("injected")

    async def open(self) -> None:
        await self._maybe_raise("open")

    async def write(self, logs: Sequence[Log]) -> None:
        await self._maybe_raise("write")
        with self.lock:
            self.ids.extend(log.id for log in logs)

    async def close(self) -> None:
        await self._maybe_raise("close")


def _configure(sink: asynctrack.Sink, tmp_path: Path) -> None:
    asynctrack.configure(
        sinks=[sink], spill_dir=tmp_path, retry_attempts=2, max_backoff=0.01, batch_size=8
    )


class TestAnyExceptionIsAFailedWrite:
    @pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in KINDS])
    @pytest.mark.parametrize("method", ["open", "write", "close"])
    def test_one_raise_then_everything_written(
        self, kind: str, method: str, tmp_path: Path
    ) -> None:
        """
        A sink raising ``kind`` once in ``method``: every log is still written once,
        flush returns, and shutdown reports success with nothing pending.
        """
        sink = ScriptedSink({method: [kind]})
        _configure(sink, tmp_path)
        produced = [work(i) for i in range(20)]
        assert len(produced) == 20
        asynctrack.flush_sync(timeout=30)
        for i in range(20):
            work(i)
        assert asynctrack.shutdown_sync(timeout=30) is True
        assert len(sink.ids) == len(set(sink.ids)) == 40
        st_ = asynctrack.stats()
        assert st_.pending == 0 and st_.dropped == 0

    @pytest.mark.parametrize("kind", ["keyboard", "exit", "odd"])
    def test_raise_in_a_task_of_the_sink_does_not_stop_the_dispatcher(
        self, kind: str, tmp_path: Path
    ) -> None:
        """
        An exception raised in a task the sink started itself (it escapes the event
        loop) leaves the dispatcher running: later logs are written.
        """
        sink = ScriptedSink({"write": [kind]}, in_task=True)
        _configure(sink, tmp_path)
        for i in range(10):
            work(i)
        asynctrack.flush_sync(timeout=30)
        for i in range(10):
            work(i)
        asynctrack.flush_sync(timeout=30)
        pipe = _pipeline.current()
        assert pipe is not None and pipe.dispatcher.alive
        assert asynctrack.shutdown_sync(timeout=30) is True
        assert len(set(sink.ids)) == 20

    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        script=st.fixed_dictionaries(
            {
                m: st.lists(st.sampled_from(sorted(KINDS)), max_size=4)
                for m in ("open", "write", "close")
            }
        ),
        n=st.integers(1, 40),
    )
    def test_any_sequence_of_exceptions(
        self, script: dict[str, list[str]], n: int, tmp_path: Path
    ) -> None:
        """
        Whatever sequence of exceptions a sink raises from open, write and close, every
        log is written exactly once or is still on disk in the spill file — none is
        lost, none written twice, and nothing stays pending after shutdown.
        """
        RUNTIME.reset()
        spill = tmp_path / f"spill-{abs(hash(str(script)))}-{n}"
        sink = ScriptedSink(script)
        _configure(sink, spill)
        for i in range(n):
            work(i)
        asynctrack.flush_sync(timeout=30)
        ok = asynctrack.shutdown_sync(timeout=30)
        st_ = asynctrack.stats()
        assert st_.pending == 0 and st_.dropped == 0
        files = list(spill.glob("*.spill.jsonl")) if spill.exists() else []
        spilled_ids = [log.id for f in files for log in asynctrack.sinks.read_logs(f)]
        assert len(sink.ids) == len(set(sink.ids))
        assert len(set(sink.ids) | set(spilled_ids)) == n
        assert ok is True


class TestDeadDispatcher:
    def test_flush_restarts_a_dispatcher_that_died(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Should the dispatcher's thread end anyway (a bug of ours, simulated here),
        ``flush`` notices, restarts it and returns with every log written.
        """
        from asynctrack._delivery.dispatcher import Dispatcher

        sink = ScriptedSink({})
        _configure(sink, tmp_path)
        pipe = _pipeline.current()
        assert pipe is not None
        original = Dispatcher._drain
        calls = [0]

        def broken(self: Dispatcher, force: bool = False) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise RuntimeError("simulated bug")
            original(self, force)

        monkeypatch.setattr(Dispatcher, "_drain", broken)
        for i in range(30):
            work(i)
        pipe.dispatcher.wake()
        assert pipe.dispatcher.join(30)  # the thread ended on the bug
        asynctrack.flush_sync(timeout=30)
        assert pipe.dispatcher.alive
        assert len(set(sink.ids)) == 30
        assert asynctrack.shutdown_sync(timeout=30) is True

    def test_shutdown_says_so_when_logs_are_left(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A dispatcher that dies during shutdown with logs still queued: ``shutdown``
        returns False (with a warning) instead of reporting success.
        """
        from asynctrack._delivery.dispatcher import Dispatcher

        sink = ScriptedSink({})
        _configure(sink, tmp_path)

        def broken(self: Dispatcher, force: bool = False) -> None:
            raise RuntimeError("simulated bug")

        monkeypatch.setattr(Dispatcher, "_drain", broken)
        for i in range(30):
            work(i)
        assert asynctrack.shutdown_sync(timeout=2) is False


class FlushingSink(ScriptedSink):
    """Calls ``flush_sync()`` from its own write (a bug, which must not hang)."""

    async def write(self, logs: Sequence[Log]) -> None:
        asynctrack.flush_sync(timeout=None)
        await super().write(logs)


class TestFlushFromASink:
    def test_flush_inside_a_sink_returns(self, tmp_path: Path) -> None:
        """
        A sink that calls ``flush_sync(timeout=None)`` from its write would wait for
        itself: the call returns at once and delivery goes on.
        """
        sink = FlushingSink({})
        _configure(sink, tmp_path)
        for i in range(10):
            work(i)
        asynctrack.flush_sync(timeout=30)
        assert len(set(sink.ids)) == 10


class ThreadedDriverSink(asynctrack.Sink):
    """
    Writes the way aiosqlite does: the work runs in a thread of the driver's own,
    which hands the result back with ``loop.call_soon_threadsafe``. The work finishes
    only when the test releases it, after the loop has closed.
    """

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.errors: list[BaseException] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return "threaded-driver"

    async def write(self, logs: Sequence[Log]) -> None:
        loop = self.loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def driver() -> None:
            self.started.set()
            self.release.wait(30)
            try:
                loop.call_soon_threadsafe(future.set_result, None)
            except BaseException as exc:  # what would end the driver's thread
                self.errors.append(exc)

        self.thread = threading.Thread(target=driver)
        self.thread.start()
        await future


class TestDriverThreadAfterTheLoopCloses:
    def test_a_driver_thread_finishing_after_the_exit_deadline_does_not_raise(
        self, tmp_path: Path
    ) -> None:
        """
        A write still running in a driver's thread at the shutdown deadline is
        cancelled and the dispatcher's loop closes; when the driver's thread then
        hands its result back, nothing is raised in that thread (no unhandled
        "Event loop is closed").
        """
        sink = ThreadedDriverSink()
        _configure(sink, tmp_path)
        work(1)
        assert sink.started.wait(30)
        asynctrack.shutdown_sync(timeout=0.2)
        assert wait_for(lambda: sink.loop is not None and sink.loop.is_closed(), 30)
        sink.release.set()
        assert sink.thread is not None
        sink.thread.join(30)
        assert sink.errors == []
