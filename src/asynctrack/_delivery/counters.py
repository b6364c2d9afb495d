"""
Pipeline counters and the :func:`asynctrack.stats` snapshot.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["Counters", "FlushResult", "Stats"]


class Stats(NamedTuple):
    """
    A snapshot of the pipeline's counters (``asynctrack.stats()``).

    Attributes:
        enqueued: logs handed to the intake.
        written: logs written, per sink name.
        dropped: logs dropped (intake full, after shutdown, or by a processor).
        retried: failed sink writes that were retried.
        spilled: logs written to a spill file because their sink was failing.
        replayed: spilled logs written to their sink later.
        failed: sink writes that failed (batches).
        dead_lettered: logs that their sink rejected on their own, set aside in a
            dead-letter file instead of blocking the others.
        corrupt: lines of spill files that could not be read back (a torn last line).
        pending: logs in the intake or waiting in a sink's in-memory queue.
        hook_errors: exceptions raised by hooks and processors (the log was kept).
        reopened: files found deleted or moved underneath a sink while in use (its
            ``FileSink`` file, its spill file) and opened again by name.
        longest_hold_ms: the longest stretch, in milliseconds, that the dispatcher's
            thread held the GIL between two releases (its work comes in slices of
            about 1 ms; see the pipeline page of the docs).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        ``longest_hold_ms``.
    """

    enqueued: int = 0
    written: Mapping[str, int] = {}
    dropped: int = 0
    retried: int = 0
    spilled: int = 0
    replayed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    corrupt: int = 0
    pending: int = 0
    hook_errors: int = 0
    reopened: int = 0
    longest_hold_ms: float = 0.0


class FlushResult(NamedTuple):
    """
    What a ``flush()`` accomplished: counts since the flush was requested.

    Attributes:
        written: logs written, per sink name.
        spilled: logs spilled to disk (their sink is failing; they are replayed later).
        dropped: logs dropped.

    .. versionadded:: 0.1
    """

    written: Mapping[str, int]
    spilled: int
    dropped: int


Stats.__module__ = "asynctrack"
FlushResult.__module__ = "asynctrack"


class Counters:
    """
    Thread-safe counters shared by the intake, the dispatcher and the workers.
    """

    __slots__ = (
        "_drops",
        "_lock",
        "corrupt",
        "dead_lettered",
        "dispatched",
        "dropped",
        "failed",
        "hook_errors",
        "replayed",
        "retried",
        "spilled",
        "written",
    )

    def __init__(self) -> None:
        # Re-entrant: a signal handler may read the counters while the code it
        # interrupted holds the lock (a count may then be off by that one update).
        self._lock = threading.RLock()
        self.dispatched = 0
        self.dropped = 0
        self.retried = 0
        self.spilled = 0
        self.replayed = 0
        self.failed = 0
        self.dead_lettered = 0
        self.corrupt = 0
        self.hook_errors = 0
        self.written: dict[str, int] = {}
        #: Drops counted on the producers' path: ``next()`` of an itertools.count is one
        #: C call, atomic under the GIL, so no lock is held by application threads — a
        #: signal handler that shuts down never waits for the code it interrupted.
        self._drops = itertools.count()

    def drop(self) -> None:
        """
        Count one log dropped by a producer (lock-free).
        """
        next(self._drops)

    def _dropped(self) -> int:
        # The current value of the count without advancing it ("count(N)").
        return self.dropped + int(repr(self._drops)[6:-1])

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def add_written(self, sink: str, n: int) -> None:
        with self._lock:
            self.written[sink] = self.written.get(sink, 0) + n

    def snapshot(
        self, queued: int, pending: int, reopened: int = 0, *, longest_hold_ns: int = 0
    ) -> Stats:
        with self._lock:
            return Stats(
                enqueued=self.dispatched + queued,
                written=dict(self.written),
                dropped=self._dropped(),
                retried=self.retried,
                spilled=self.spilled,
                replayed=self.replayed,
                failed=self.failed,
                dead_lettered=self.dead_lettered,
                corrupt=self.corrupt,
                pending=queued + pending,
                hook_errors=self.hook_errors,
                reopened=reopened,
                longest_hold_ms=longest_hold_ns / 1e6,
            )
