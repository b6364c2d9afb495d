"""
The intake: a bounded, thread-safe hand-off of completed logs to the dispatcher.

``put`` is what completing a log costs the application: a ``deque.append`` and a
length check. The dispatcher is woken by its timer, or when several batches are
queued (``wake_every``), never per log (a per-log wake-up costs 0.4–2 µs: see
docs/design.md, "Traps"), and not per batch either: each wake-up costs the
application's threads on other cores (docs/pipeline.md, "When the dispatcher wakes").
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import repeat
from operator import call as _call
from typing import Any

from asynctrack._core.encode import encode_log
from asynctrack._core.records import Log
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.selfwarn import report
from asynctrack._delivery.counters import Counters

__all__ = ["Barrier", "Intake", "put_encoded"]

_NEVER = 1 << 62
#: Batches queued before the dispatcher is woken ahead of its timer.
WAKE_BATCHES = 8


class Barrier:
    """
    A marker put in the intake by ``flush``: done when every sink has passed it.
    """

    __slots__ = ("_event", "_remaining", "close_sinks")

    def __init__(self, *, close_sinks: bool = False) -> None:
        self._event = threading.Event()
        self._remaining = 0
        #: Close each sink when its worker passes the barrier (the exit's first step:
        #: threads a sink holds, such as an aiosqlite connection's, must not keep
        #: the interpreter waiting; a sink reopens at its next write).
        self.close_sinks = close_sinks

    def expect(self, n: int) -> None:
        self._remaining = n
        if n == 0:
            self._event.set()

    def reached(self) -> None:
        # Called from the dispatcher's loop thread only.
        self._remaining -= 1
        if self._remaining <= 0:
            self._event.set()

    def release(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)

    @property
    def done(self) -> bool:
        return self._event.is_set()


class Intake:
    """
    Bounded queue of completed logs (and flush barriers).
    """

    __slots__ = (
        "_block_timeout",
        "_dq",
        "_max",
        "_not_full",
        "_on_foreign_pid",
        "_on_full",
        "_pid",
        "_wake",
        "_wake_at",
        "_wake_next",
        "batch_size",
        "closed",
        "counters",
        "forward",
        "max_queue",
        "wake_every",
    )

    def __init__(
        self,
        *,
        max_queue: int,
        batch_size: int,
        on_full: str,
        block_timeout: float,
        counters: Counters,
    ) -> None:
        self._dq: deque[Any] = deque()
        self.max_queue = max_queue
        self._max = max_queue
        self.batch_size = batch_size
        #: Queued logs at which the dispatcher is woken before its timer: several
        #: batches, so it wakes rarely (each wake-up costs the application's threads
        #: on other cores, see docs/pipeline.md, "When the dispatcher wakes"), where
        #: that is at most half the bound; else one batch, as before.
        several = batch_size * WAKE_BATCHES
        self.wake_every = several if several <= max_queue // 2 else batch_size
        #: Queue length at which ``put`` next looks up: at every batch, to notice a
        #: fork that ran no fork hooks; it wakes the dispatcher at ``wake_every``.
        self._wake_at = batch_size
        #: The next hand-off wakes the dispatcher whatever the queue holds (a forked
        #: child's first log starts the child's dispatcher).
        self._wake_next = False
        self._on_full = on_full
        self._block_timeout = block_timeout
        self._not_full = threading.Condition(threading.Lock())
        self._wake: Callable[[], None] | None = None
        self._pid = os.getpid()
        #: Called when a hand-off happens in another process than the one that built
        #: this intake: a fork that ran no fork hooks (uWSGI).
        self._on_foreign_pid: Callable[[], None] | None = None
        self.counters = counters
        self.closed = False
        #: After a reconfiguration, late puts into this old intake go to the new one.
        self.forward: Callable[[Log | bytes], None] | None = None

    def __len__(self) -> int:
        return len(self._dq)

    # -- producer side -------------------------------------------------------------------
    def put(self, log: Log | bytes) -> None:
        """
        Hand a completed log to the pipeline; never raises, never waits unless
        ``on_full="block"`` and the queue is full.
        """
        dq = self._dq
        if len(dq) < self._max:
            dq.append(log)
            if len(dq) >= self._wake_at:
                self._reached()
            return
        self._overflow(log)

    def put_control(self, item: Any) -> None:
        """
        Append a barrier (or an incomplete log at shutdown) regardless of the bound.
        """
        self._dq.append(item)
        self._signal()

    def _reached(self) -> None:
        # Once per batch: the process id checked (a fork without hooks is noticed at
        # the child's next batch, docs/guarantees.md), the dispatcher woken only once
        # ``wake_every`` logs wait.
        n = len(self._dq)
        if (
            n < self.wake_every
            and not self._wake_next
            and (self._on_foreign_pid is None or os.getpid() == self._pid)
        ):
            self._wake_at = n + self.batch_size
            return
        self._signal()

    def wake_on_next(self) -> None:
        """
        Have the next hand-off wake the dispatcher, however short the queue.
        """
        self._wake_next = True
        self._wake_at = 1

    def _signal(self) -> None:
        self._wake_at = _NEVER  # one wake-up until the dispatcher re-arms
        self._wake_next = False
        if self._on_foreign_pid is not None and os.getpid() != self._pid:
            # Checked once per batch, not per log (os.getpid is a system call).
            self._pid = os.getpid()
            self._on_foreign_pid()
            return
        wake = self._wake
        if wake is not None:
            try:
                wake()
            except Exception:  # pragma: no cover - the loop is closing
                pass

    def _overflow(self, log: Log | bytes) -> None:
        if self._on_foreign_pid is not None and os.getpid() != self._pid:
            self._signal()  # the wake-up went to the parent's dispatcher: recover here
            forward = self.forward
            if forward is not None:
                forward(log)
                return
        if self.closed:
            forward = self.forward
            if forward is not None:
                forward(log)
                return
            self.counters.drop()
            report("closed", "asynctrack: a log completed after shutdown was dropped")
            return
        if self._on_full == "block" and threading.current_thread() is not _dispatcher_thread():
            deadline = time.monotonic() + self._block_timeout
            # Wait without holding any lock of ours between polls (loguru #1065).
            self._signal()
            while len(self._dq) >= self._max and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with self._not_full:
                    self._not_full.wait(min(remaining, 0.05))
            if len(self._dq) < self._max and not self.closed:
                self._dq.append(log)
                return
        self.counters.drop()
        report(
            "full",
            f"asynctrack: the intake is full ({self.max_queue} logs); logs are being dropped "
            "(see asynctrack.stats().dropped; raise max_queue or use on_full='block')",
        )

    # -- dispatcher side -----------------------------------------------------------------
    def drain(self, limit: int) -> list[Any]:
        """
        Take up to ``limit`` items in order (called by the dispatcher).
        """
        dq = self._dq
        out: list[Any] = []
        # C-level, no Python per item: producers only append, so the items counted
        # are there to take. Should another consumer take some first, extend keeps
        # what was taken before popleft raised.
        with contextlib.suppress(IndexError):
            out.extend(map(_call, repeat(dq.popleft, min(limit, len(dq)))))
        return out

    def rearm(self) -> None:
        self._wake_at = self.batch_size
        if self._on_full == "block":
            with self._not_full:
                self._not_full.notify_all()

    def set_wake(self, wake: Callable[[], None] | None) -> None:
        self._wake = wake

    def set_foreign_pid_handler(self, handler: Callable[[], None] | None) -> None:
        self._on_foreign_pid = handler

    def extend(self, items: list[Any]) -> None:
        """
        Append items regardless of the bound (logs taken over from another intake).
        """
        if items:
            self._dq.extend(items)
            self._signal()

    def take_all(self) -> list[Any]:
        """
        Empty the queue and return what it held, in order.
        """
        out: list[Any] = []
        while self._dq:  # what producers append meanwhile is taken too
            out += self.drain(len(self._dq))
        return out

    def close(self) -> None:
        self.closed = True
        self._max = 0
        with self._not_full:
            self._not_full.notify_all()


def _dispatcher_thread() -> threading.Thread | None:
    return RUNTIME.dispatcher_thread


def put_encoded(
    put: Callable[[Log | bytes], None], pid: int, in_child: Callable[[Log], None]
) -> Callable[[Log], None]:
    """
    Return a hand-off that puts each log's JSON line, encoded in the calling thread
    (docs/pipeline.md, "Logs encoded at completion").

    In a process other than ``pid`` (forked without fork hooks, as by uWSGI) a log goes
    to ``in_child`` instead, before it is encoded: the child's id prefix must be drawn
    first, or sibling processes share ids.
    """
    encode = encode_log
    getpid = os.getpid

    def put_line(log: Log) -> None:
        if getpid() != pid:
            in_child(log)
            return
        try:
            line = encode(log)
        except Exception:  # the dispatcher tries again, and the sink says why
            put(log)
            return
        put(line)

    return put_line
