"""
The pipeline: intake + dispatcher + sinks, and the public flush/shutdown/stats.

One pipeline per process at a time. ``configure`` builds a new one and retires the
old: completed logs are handed to the new intake from that moment, the old
pipeline is flushed and its sinks closed, and a log that reaches the old intake
after that is forwarded, so nothing is lost or written to a closed sink.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, cast

from asynctrack._core import calltree, selfwarn, tracker
from asynctrack._core.ids import reset_ids_after_fork
from asynctrack._core.records import Log
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.selfwarn import report
from asynctrack._delivery.counters import Counters, FlushResult, Stats
from asynctrack._delivery.intake import Barrier, Intake, put_encoded
from asynctrack._delivery.rescue import spill_now, take_queued
from asynctrack._delivery.worker import WorkerOptions
from asynctrack.sinks._base import Sink

__all__ = [
    "Pipeline",
    "flush",
    "flush_sync",
    "install_signal_handlers",
    "shutdown",
    "shutdown_sync",
    "stats",
]


#: What the intake holds besides flush barriers: logs, as ``Log`` objects or as lines.
_QUEUED_LOG = (Log, bytes)


class Pipeline:
    """
    A running intake and dispatcher with their sinks.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        max_queue: int,
        batch_size: int,
        flush_interval: float,
        on_full: str,
        block_timeout: float,
        exit_timeout: float,
        options: WorkerOptions,
    ) -> None:
        from asynctrack._delivery.dispatcher import Dispatcher

        self.sinks = list(sinks)
        self.counters = Counters()
        self.exit_timeout = exit_timeout
        self.intake = Intake(
            max_queue=max_queue,
            batch_size=batch_size,
            on_full=on_full,
            block_timeout=block_timeout,
            counters=self.counters,
        )
        self.dispatcher = Dispatcher(
            self.intake,
            self.sinks,
            flush_interval=flush_interval,
            options=options,
            counters=self.counters,
        )
        self.closed = False
        self._pid = os.getpid()
        self._close_lock = threading.RLock()
        self.intake.set_foreign_pid_handler(self._forked_without_hooks)

    def start(self) -> None:
        self.dispatcher.start()

    def handoff(self) -> Callable[[Log], None]:
        """
        Return what takes each completed log (``calltree.set_handoff``): the intake's
        ``put``, or, when every sink takes JSON lines, a ``put`` of the log's line,
        encoded here in the application's thread (docs/pipeline.md, "Logs encoded at
        completion").
        """
        if not self.dispatcher.lines:
            return self.intake.put
        return put_encoded(self.intake.put, self._pid, self._handoff_in_child)

    def _handoff_in_child(self, log: Log) -> None:
        # The first log of a child forked without hooks: take over, then hand it on.
        self._forked_without_hooks()
        self.handoff()(log)

    def ensure_running(self) -> None:
        """
        Start the dispatcher again in a process forked without fork hooks (uWSGI).
        """
        if self._pid != os.getpid():
            self.after_fork(keep_queued=True)
        if not self.closed and not self.dispatcher.alive:
            self.dispatcher.start()

    def barrier(self) -> Barrier:
        self.ensure_running()
        barrier = Barrier()
        if self.closed and not self.dispatcher.alive:
            barrier.release()
            return barrier
        self.intake.put_control(barrier)
        self.dispatcher.wake()
        return barrier

    def wait_flushed(self, timeout: float | None) -> bool:
        """
        Wait until every log completed before the call is written or spilled.

        With a ``timeout``, also wait while the deadline allows for spilled logs to be
        replayed (a sink that recovers within the deadline gets everything); without
        one, return as soon as each log is written or on disk, so a sink that stays
        down never holds the caller forever.

        Returns:
            False when the deadline passed before every log was written or spilled.
        """
        if threading.current_thread() is self.dispatcher._thread:
            # A sink that flushes would wait for itself, forever without a timeout.
            report("flush-in-sink", "asynctrack: flush() called from a sink was ignored")
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        barrier = self.barrier()
        while not barrier.wait(_slice(deadline)):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if not self.closed and not self.dispatcher.alive:
                # The dispatcher ended unexpectedly: restart it and ask again (the
                # barrier may have been lost with it).
                barrier = self.barrier()
        if deadline is None:
            return True
        while self.dispatcher.backlog() and self.dispatcher.alive:
            if time.monotonic() >= deadline:
                break
            time.sleep(_slice(deadline, 0.02))
        return True

    def stats(self) -> Stats:
        reopened = sum(w.reopened() for w in self.dispatcher.workers)
        return self.counters.snapshot(
            len(self.intake),
            self.dispatcher.pending(),
            reopened,
            longest_hold_ns=self.dispatcher.slices.longest_ns,
        )

    def close(self, timeout: float | None, *, write_open_logs: bool) -> bool:
        """
        Flush, optionally write open logs as incomplete, close the sinks, stop the thread.

        Returns False when the deadline passed first (the rest is then abandoned:
        what was still queued is counted in ``stats().pending``).
        """
        with self._close_lock:
            if self.closed:
                return True
            self.closed = True
        self.ensure_running_for_close()
        deadline = time.monotonic() + (self.exit_timeout if timeout is None else timeout)
        if write_open_logs:
            now = time.perf_counter_ns()
            post = RUNTIME.postprocess
            for log in calltree.open_logs():
                if not calltree.claim_open(log):
                    continue  # a thread completed it meanwhile and hands it off itself
                snapshot: Log | None = log._snapshot_incomplete(now)
                if post is not None and snapshot is not None:
                    # Hooks and processors see incomplete logs too (a processor
                    # that scrubs or drops data must not be bypassed at shutdown).
                    snapshot = post(snapshot)
                if snapshot is not None:
                    self.intake.put_control(snapshot)
        self.intake.close()
        self.dispatcher.request_stop(deadline)
        # Near the deadline, whatever the dispatcher has not delivered yet (it may get
        # too little of the GIL under CPU-bound threads) is spilled to disk by this
        # thread: one sequential write, replayed at the next start (#14).
        budget = max(0.0, deadline - time.monotonic())
        margin = min(1.0, 0.2 * budget)
        if not self.dispatcher.join(max(0.0, deadline - margin - time.monotonic())):
            # The disk gets its own bounded time: at most the deadline again (1 s at
            # least), then what is left is counted as dropped, never left pending.
            self.rescue(deadline + max(1.0, budget))
        if self.dispatcher.join(max(0.0, deadline - time.monotonic()) + 0.5):
            left = len(self.intake) + self.dispatcher.pending()
            if self.dispatcher.died is None and not left:
                return True
            # Never report success with logs pending (#14).
            report(
                "deadline",
                f"asynctrack: shutdown left {left} logs not written "
                f"(the dispatcher stopped on {type(self.dispatcher.died).__name__})",
            )
            return False
        # A sink's write blocked the dispatcher's loop (a synchronous call inside an
        # async write cannot be interrupted): say what is lost instead of hanging.
        report(
            "deadline",
            f"asynctrack: the shutdown deadline passed with about {len(self.intake)} "
            f"queued and {self.dispatcher.pending()} pending logs not written "
            "(a sink's write did not return in time)",
        )
        return False

    def rescue(self, until: float) -> int:
        """
        Spill, from the calling thread, what is still queued for the sinks.

        Args:
            until: monotonic time after which what is left is counted as dropped.

        Returns:
            The number of logs spilled (each sink spills its copy).
        """
        items = self.intake.take_all()
        logs = [x for x in items if isinstance(x, _QUEUED_LOG)]
        for x in items:
            if isinstance(x, Barrier):
                x.release()
        if logs:
            self.counters.add("dispatched", len(logs))
        taken = 0
        for worker in self.dispatcher.workers:
            batch = take_queued(worker) + logs  # the worker's queue holds older logs
            if batch:
                taken += spill_now(worker, batch, until)
        if taken:
            report(
                "rescue",
                f"asynctrack: {taken} logs not written by the exit deadline were spilled "
                "to disk; the next start replays them",
            )
        return taken

    def ensure_running_for_close(self) -> None:
        if self._pid != os.getpid():
            self.after_fork(keep_queued=True)
        if not self.dispatcher.alive and self.dispatcher._thread is None:
            self.dispatcher.start()

    def after_fork(self, *, keep_queued: bool = False) -> None:
        """
        Give a forked child its own intake and dispatcher (started on first need).

        Args:
            keep_queued: False when called by the fork hook: what the parent queued is
                the parent's to write, so the child starts empty. True when the fork
                ran no hooks (uWSGI) and the child notices only later, by its process
                id: the queue then mixes the child's logs with what the parent had
                queued at the fork, and both are kept (the latter may be written twice,
                with the same ids, which SQL sinks store once).
        """
        self._pid = os.getpid()
        self.counters = Counters()
        old = self.intake
        self.intake = Intake(
            max_queue=old.max_queue,
            batch_size=old.batch_size,
            on_full=old._on_full,
            block_timeout=old._block_timeout,
            counters=self.counters,
        )
        self.intake.wake_on_next()
        self.intake.set_wake(self._first_need)
        self.intake.set_foreign_pid_handler(self._forked_without_hooks)
        self.dispatcher.intake = self.intake
        self.dispatcher.counters = self.counters
        self.dispatcher.after_fork()
        self._close_lock = threading.RLock()
        if RUNTIME.pipeline is self:
            calltree.set_handoff(self.handoff())
        if keep_queued:
            old.forward = self.intake.put
            old.close()  # a late put into the old intake is forwarded
            self.intake.extend([x for x in old.take_all() if isinstance(x, _QUEUED_LOG)])

    def _forked_without_hooks(self) -> None:
        # A hand-off in a process forked without fork hooks (the intake compares the
        # process id once per batch): take over here, start the dispatcher off-thread.
        reset_ids_after_fork()
        self.after_fork(keep_queued=True)
        self._first_need()

    def _first_need(self) -> None:
        self.intake.set_wake(None)
        threading.Thread(target=self.ensure_running, daemon=True).start()


def _slice(deadline: float | None, step: float = 0.25) -> float:
    # Waits are cut into slices so the waiting thread notices a dead dispatcher.
    if deadline is None:
        return step
    return max(0.0, min(step, deadline - time.monotonic()))


_SWAP_LOCK = threading.RLock()  # re-entrant: signal handlers shut down


def current() -> Pipeline | None:
    """
    The installed pipeline (``RUNTIME.pipeline``), or None.
    """
    return cast("Pipeline | None", RUNTIME.pipeline)


def install(pipeline: Pipeline) -> None:
    """
    Make ``pipeline`` the process's pipeline, retiring the previous one.
    """
    with _SWAP_LOCK:
        old = current()
        pipeline.start()
        RUNTIME.pipeline = pipeline
        # From now on every completed log goes to this pipeline's intake.
        calltree.set_handoff(pipeline.handoff())
        if not RUNTIME.pipeline_enabled:
            RUNTIME.pipeline_enabled = True
            tracker.enable(+1)
    _register_exit_hook()
    if old is not None:
        old.intake.forward = pipeline.intake.put
        old.close(old.exit_timeout, write_open_logs=False)


async def flush(timeout: float | None = None) -> FlushResult:
    """
    Wait until every log completed before the call is written, spilled or dropped.

    Works under asyncio and trio (the wait happens in a worker thread). On timeout
    it raises ``TimeoutError``; nothing is lost: the work goes on in the background.

    Returns:
        A :class:`FlushResult` with the logs written (per sink), spilled and dropped
        since the call.

    .. versionadded:: 0.1
    """
    import anyio.to_thread

    _check_timeout(timeout)
    pipeline = current()
    if pipeline is None:
        _warn_unconfigured("asynctrack.flush()")
        return FlushResult({}, 0, 0)
    before = pipeline.stats()
    done = await anyio.to_thread.run_sync(pipeline.wait_flushed, timeout, abandon_on_cancel=True)
    if not done:
        raise TimeoutError(f"asynctrack.flush() did not finish within {timeout} s")
    return _result(before, pipeline.stats(), pipeline.dispatcher.backlog())


def flush_sync(timeout: float | None = 5.0) -> FlushResult:
    """
    Blocking :func:`flush` for threads and sync programs (never call it on an event loop).

    Raises:
        TimeoutError: the flush did not finish in time (the work goes on).

    .. versionadded:: 0.1
    """
    _check_timeout(timeout)
    pipeline = current()
    if pipeline is None:
        _warn_unconfigured("asynctrack.flush_sync()")
        return FlushResult({}, 0, 0)
    before = pipeline.stats()
    if not pipeline.wait_flushed(timeout):
        raise TimeoutError(f"asynctrack.flush_sync() did not finish within {timeout} s")
    return _result(before, pipeline.stats(), pipeline.dispatcher.backlog())


def _result(before: Stats, after: Stats, backlog: bool) -> FlushResult:
    written = {k: v - before.written.get(k, 0) for k, v in after.written.items()}
    # Logs spilled during the flush and replayed before it returned are written: only
    # what still waits on disk counts as spilled.
    spilled = after.spilled - before.spilled
    if backlog:
        spilled = max(0, spilled - (after.replayed - before.replayed))
    else:
        spilled = 0
    return FlushResult(written, spilled, after.dropped - before.dropped)


def _warn_unconfigured(what: str) -> None:
    # Flushing before configure() returns an empty result: say once why nothing was
    # written (a capture() block records without a pipeline, so it stays quiet).
    if not tracker.tracking_on():
        selfwarn.once(
            "flush-unconfigured",
            f"asynctrack: {what} was called but nothing is configured, so nothing is "
            f"recorded or written. Call asynctrack.configure(sinks=[...]) at start-up, "
            f"or run the code inside 'async with asynctrack.tracking(...)'",
        )


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")


async def shutdown(timeout: float | None = None) -> bool:
    """
    Flush, write logs still open (marked incomplete), close the sinks, stop the thread.

    Later calls do nothing. Probes keep working afterwards (their logs are counted as
    dropped). ``timeout`` defaults to the configured ``exit_timeout``.

    Returns:
        True when everything finished before the deadline.

    .. versionadded:: 0.1
    """
    import anyio.to_thread

    _check_timeout(timeout)
    return await anyio.to_thread.run_sync(_shutdown, timeout, abandon_on_cancel=True)


def shutdown_sync(timeout: float | None = None) -> bool:
    """
    Blocking :func:`shutdown` for threads, signal handlers and exit hooks.

    .. versionadded:: 0.1
    """
    _check_timeout(timeout)
    return _shutdown(timeout)


def _shutdown(timeout: float | None) -> bool:
    with _SWAP_LOCK:
        pipeline = current()
        if pipeline is None or pipeline.closed:
            return True
    # Tracking stays on: a log completed after the shutdown reaches the closed intake
    # and is counted in stats().dropped, never lost silently (#15).
    return pipeline.close(timeout, write_open_logs=True)


def stats() -> Stats:
    """
    Return the pipeline's counters: enqueued, written (per sink), dropped, retried,
    spilled, replayed, failed, dead_lettered, corrupt, pending, hook_errors, reopened.

    .. versionadded:: 0.1
    """
    pipeline = current()
    if pipeline is None:
        return Stats()
    return pipeline.stats()


# -- process life --------------------------------------------------------------------------


# The exit runs in two steps (#15). Logs keep completing after the main thread
# returns: in non-daemon threads, in pool jobs still pending, in atexit handlers.
#
# 1. ``_exit_early`` runs among threading's exit hooks: before non-daemon threads are
#    joined and before concurrent.futures shuts its pools down (its hook was
#    registered first; they run in reverse order). It flushes what is complete and
#    closes the sinks — a sink's thread, such as an aiosqlite connection's, would
#    otherwise keep the interpreter waiting — but keeps the pipeline accepting.
# 2. ``_exit_final`` is an atexit handler registered when this module is imported, so
#    it runs after the atexit handlers registered later (those of the application,
#    before or after configure()), once every non-daemon thread has ended. It shuts
#    down: writes, then spills synchronously what cannot be written by the deadline.
#    Sinks reopen for it; their blocking calls run on the dispatcher's own executor,
#    which (unlike the default one) still accepts work once pools are shut down.
#
# A probe that completes after step 2 is counted in stats().dropped. The time step 1
# used is ``RUNTIME.exit_spent``; whether it is registered, ``RUNTIME.exit_hooked``.


def _exit_early() -> None:
    pipeline = current()
    if pipeline is None or pipeline.closed:
        return
    started = time.monotonic()
    try:
        pipeline.ensure_running()
        barrier = Barrier(close_sinks=True)
        pipeline.intake.put_control(barrier)
        pipeline.dispatcher.wake()
        barrier.wait(pipeline.exit_timeout)
    except Exception as exc:  # pragma: no cover - exit must go on
        report("exit", f"asynctrack: flush at exit failed: {type(exc).__name__}")
    RUNTIME.exit_spent = time.monotonic() - started


def _exit_final() -> None:
    pipeline = current()
    if pipeline is None or pipeline.closed:
        return
    # One deadline for the whole exit: what the first step used is taken off.
    # Logs left when it is used up are spilled at once by the rescue in close().
    timeout = max(0.0, pipeline.exit_timeout - RUNTIME.exit_spent)
    # A process id that differs means a fork without fork hooks (uWSGI): the close
    # below takes the pipeline over for this process, so its logs are written too.
    try:
        _shutdown(timeout)
    except Exception as exc:  # pragma: no cover - exit must go on
        report("exit", f"asynctrack: flush at exit failed: {type(exc).__name__}")


atexit.register(_exit_final)


def _register_exit_hook() -> None:
    if RUNTIME.exit_hooked:
        return
    RUNTIME.exit_hooked = True
    import concurrent.futures.thread  # noqa: F401  (registers its hook before ours)

    try:
        threading._register_atexit(_exit_early)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # pragma: no cover - interpreter shutting down
        pass


def install_signal_handlers(
    signals: Sequence[int] = (signal.SIGTERM,), *, timeout: float | None = None
) -> None:
    """
    Flush and shut down on these signals, then let the previous handler act.

    Python's default SIGTERM kills the process without running exit hooks; after
    this call, SIGTERM first writes what was tracked (within ``timeout``, default
    ``exit_timeout``), then exits with status ``128 + signum`` (or calls the handler
    that was installed before). Call it from the main thread.

    .. versionadded:: 0.1
    """
    for signum in signals:
        previous = signal.getsignal(signum)

        def handler(num: int, frame: FrameType | None, previous: Any = previous) -> None:
            with contextlib.suppress(Exception):
                shutdown_sync(timeout)
            if callable(previous):
                previous(num, frame)
            elif previous == signal.SIG_IGN:
                return
            else:
                raise SystemExit(128 + num)

        signal.signal(signum, handler)


def _after_fork_in_child() -> None:
    global _SWAP_LOCK
    _SWAP_LOCK = threading.RLock()  # another thread may have held it at the fork
    selfwarn.after_fork_in_child()
    pipeline = current()
    if pipeline is not None and not pipeline.closed:
        pipeline.after_fork()


# Tracker.flush() / flush_sync() reach these through the core's runtime hooks.
RUNTIME.flush = flush
RUNTIME.flush_sync = flush_sync

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
