"""
The dispatcher: a daemon thread with its own asyncio loop that drains the intake.

It serves sync programs, asyncio and trio applications alike because it never
touches the application's loop. It wakes when a batch is full (the intake signals
it) or every ``flush_interval``, cuts the queue into batches and hands each batch
to every sink's worker. Tracking is suppressed in this thread, so a sink that
calls probed code never feeds back into the tracker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import selectors
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVarTuple

from asynctrack._core import calltree
from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_log
from asynctrack._core.ids import reanchor_wall_clock
from asynctrack._core.records import Log
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.selfwarn import report
from asynctrack._core.slices import Slices, activate
from asynctrack._delivery.counters import Counters
from asynctrack._delivery.executor import ExitProofExecutor
from asynctrack._delivery.intake import Barrier, Intake
from asynctrack._delivery.worker import SinkWorker, WorkerOptions
from asynctrack.sinks._base import Sink, takes_lines

__all__ = ["Dispatcher", "DispatcherLoop", "TimedSelector"]

_Ts = TypeVarTuple("_Ts")


class DispatcherLoop(asyncio.SelectorEventLoop):
    """
    The dispatcher's loop: a call handed to it from another thread once it is closed
    is dropped instead of raising in that thread.

    A sink's driver may finish its work in a thread of its own and then hand the
    result back to the loop (aiosqlite does, for every statement). When a write is
    cancelled at the exit deadline, the loop closes while the driver thread is still
    busy; the result it hands back then has nowhere to go, and raising
    ``RuntimeError: Event loop is closed`` in the driver's thread would only be an
    unhandled thread exception (and end the driver's thread before it closes its
    connection).
    """

    def call_soon_threadsafe(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        try:
            return super().call_soon_threadsafe(callback, *args, context=context)
        except RuntimeError:
            if not self.is_closed():
                raise
            handle = asyncio.Handle(callback, args, self, context)
            handle.cancel()
            return handle


class TimedSelector(selectors.DefaultSelector):
    """
    The dispatcher loop's selector: each wait for I/O ends one stretch of the thread's
    work holding the GIL and begins the next (see docs/pipeline.md).
    """

    def __init__(self, slices: Slices) -> None:
        super().__init__()
        self.slices = slices

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        slices = self.slices
        slices.released()
        try:
            return super().select(timeout)
        finally:
            slices.resumed()


class Dispatcher:
    """
    Owns the background thread, its loop and one worker per sink.
    """

    def __init__(
        self,
        intake: Intake,
        sinks: Sequence[Sink],
        *,
        flush_interval: float,
        options: WorkerOptions,
        counters: Counters,
    ) -> None:
        self.intake = intake
        self.flush_interval = flush_interval
        self.counters = counters
        self.workers = [SinkWorker(sink, options, counters) for sink in sinks]
        #: Every sink takes logs as JSON lines: logs are encoded when they complete
        #: and queued as bytes (docs/pipeline.md, "Logs encoded at completion").
        self.lines = bool(sinks) and all(map(takes_lines, sinks))
        self._plain: frozenset[type] = frozenset({bytes} if self.lines else {Log})
        #: The thread's stretches between releases of the GIL (asynctrack.stats()).
        self.slices = Slices()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._stop_deadline: float | None = None
        self._forcing = False
        self._lock = threading.RLock()
        #: What ended the dispatcher's thread before it was asked to stop (a bug).
        self.died: BaseException | None = None

    # -- lifecycle (any thread) ------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                if self._thread.is_alive() or self._stop_deadline is not None:
                    return
                # The thread ended without being asked to (a bug of ours): start it
                # again rather than leave logs pending forever; the workers keep
                # their queues.
                report("revive", "asynctrack: the dispatcher stopped unexpectedly; restarted")
                self._ready = threading.Event()
                self._stopped = threading.Event()
                self.died = None
            self._thread = threading.Thread(
                target=self._run, name="asynctrack-dispatcher", daemon=True
            )
            self._thread.start()
        RUNTIME.dispatcher_thread = self._thread
        self._ready.wait(10.0)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        loop, event = self._loop, self._wake
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: nothing to wake
            loop.call_soon_threadsafe(event.set)

    def request_stop(self, deadline: float) -> None:
        self._stop_deadline = deadline
        self.wake()

    def join(self, timeout: float | None) -> bool:
        thread = self._thread
        if thread is None:
            return True
        return self._stopped.wait(timeout)

    def pending(self) -> int:
        return sum(w.pending() for w in self.workers)

    def backlog(self) -> bool:
        """
        Whether some sink has spilled logs not replayed yet (read from another thread).
        """
        try:
            return any(w.spill.has_backlog for w in self.workers)
        except Exception:  # the dispatcher changed the list meanwhile: ask again later
            return True

    def after_fork(self) -> None:
        # In a forked child: the thread does not exist here. Start afresh lazily.
        self._thread = None
        self._loop = None
        self._wake = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.RLock()
        self.slices = Slices()
        for worker in self.workers:
            worker.after_fork()
        self.workers = [SinkWorker(w.sink, w.options, self.counters) for w in self.workers]

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        # Nothing this thread does is tracked: sink I/O that is itself traced would feed
        # back into the tracker (see docs/design.md, "Traps").
        calltree.FRAME.set(calltree.SILENT)
        slices = self.slices
        activate(slices)
        slices.own()
        loop = DispatcherLoop(TimedSelector(slices))
        loop.set_default_executor(ExitProofExecutor())
        try:
            main = loop.create_task(self._main(loop))
            while True:
                try:
                    loop.run_until_complete(main)
                    break
                except BaseException as exc:
                    if main.done():  # pragma: no cover - a bug of ours
                        self.died = exc
                        report(
                            "dispatcher",
                            f"asynctrack: the dispatcher stopped on {type(exc).__name__}",
                        )
                        break
                    # A KeyboardInterrupt or SystemExit raised in a task that a sink
                    # started escapes the loop; the loop's own work is intact, so it
                    # goes on (#14: nothing a sink does may stop delivery).
                    report(
                        "dispatcher-escape",
                        f"asynctrack: a sink's task raised {type(exc).__name__}; ignored",
                    )
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            slices.disown()
            self._loop = None
            self._stopped.set()
            self._ready.set()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._loop = loop
        for worker in self.workers:
            worker.on_room = wake.set if (wake := self._wake) else None
            worker.start()
        self.intake.set_wake(self.wake)
        self._ready.set()
        wake = self._wake
        while True:
            deadline = self._stop_deadline
            if deadline is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):  # no task per tick
                        await wake.wait()
            wake.clear()
            reanchor_wall_clock()
            self._drain()
            if self._stop_deadline is not None:
                break
        self._drain(force=True)
        await self._stop_workers(self._stop_deadline)

    def _drain(self, force: bool = False) -> None:
        # Take from the intake only while some sink has room: a slow sink then slows
        # the dispatcher and the intake's bound (and on_full policy) applies, instead
        # of spilling a healthy sink's work to disk. A sink whose queue is full while
        # others have room spills (it must not hold the others back).
        intake = self.intake
        size = intake.batch_size
        intake.rearm()
        batch: list[Log] = []
        self._forcing = force
        while force or self._room():
            items = intake.drain(size)
            if not items:
                break
            kinds = set(map(type, items))
            if not kinds <= self._plain:
                items = self._conform(items)
            if Barrier not in kinds:
                # Only logs (the usual case): no Python step per log.
                batch = self._add_logs(batch, items, size)
                continue
            start = 0
            for i, item in enumerate(items):
                if type(item) is Barrier:
                    # Everything before a barrier is handed over before it.
                    batch = self._add_logs(batch, items[start:i], size)
                    if batch:
                        self._submit(batch)
                        batch = []
                    item.expect(len(self.workers))
                    for worker in self.workers:
                        worker.submit_barrier(item)
                    start = i + 1
            batch = self._add_logs(batch, items[start:], size)
        if batch:
            self._submit(batch)

    def _conform(self, items: list[Any]) -> list[Any]:
        # Logs in the form this pipeline's sinks take: lines when they all take lines,
        # else Log objects. Both forms meet in one intake only in passing: a log that
        # completed while the pipeline was being replaced, an incomplete log queued at
        # shutdown, a log the hand-off could not encode.
        if self.lines:
            return [x if type(x) is bytes or type(x) is Barrier else _line_of(x) for x in items]
        return [_log_of(x) if type(x) is bytes else x for x in items]

    def _add_logs(self, batch: list[Log], logs: list[Log], size: int) -> list[Log]:
        """
        Add ``logs`` to the open ``batch``, submitting each one that fills up, by slicing.

        Returns the batch left open (not full).
        """
        if not logs:
            return batch
        self.counters.add("dispatched", len(logs))
        while logs:
            room = size - len(batch)
            batch += logs[:room]
            logs = logs[room:]
            if len(batch) >= size:
                self._submit(batch)
                batch = []
        return batch

    def _room(self) -> bool:
        return not self.workers or any(w.has_room() for w in self.workers)

    def _submit(self, batch: list[Log]) -> None:
        # The final drain at shutdown hands everything over at once: the sinks keep
        # it in memory (bounded by the intake) and deliver it before the deadline,
        # rather than sending a healthy sink's work to its spill file.
        forcing = self._forcing
        for worker in self.workers:
            worker.submit(batch, when_full="queue" if forcing else "spill")

    async def _stop_workers(self, deadline: float | None) -> None:
        deadline = deadline if deadline is not None else time.monotonic() + 5.0
        for worker in self.workers:
            worker.stop(deadline)
        tasks = [w.task for w in self.workers if w.task is not None]
        if not tasks:
            return
        remaining = max(0.0, deadline - time.monotonic()) + 0.2
        _, not_done = await asyncio.wait(tasks, timeout=remaining)
        for task in not_done:
            task.cancel()
        if not_done:
            # Give cancelled writes a moment to unwind; their batches are counted
            # as pending in stats() when the process exits.
            await asyncio.wait(not_done, timeout=0.2)
            names = ", ".join(w.label for w in self.workers if w.task in not_done)
            report("stop", f"asynctrack: sink(s) {names} did not finish before the deadline")


def _line_of(log: Log) -> Log | bytes:
    # Should the encoder fail on it, the log goes on as it is: the sink's own encoding
    # then fails the batch, which is retried, split and set aside like any other.
    try:
        return encode_log(log)
    except Exception:
        return log


def _log_of(line: bytes) -> Log | bytes:
    try:
        return decode_line(line)
    except ValueError:  # pragma: no cover - a line of our own encoder
        return line
