"""
The dispatcher's work in slices: a clock of how long its thread holds the GIL.

Python code runs one thread at a time, and a thread that computes gives the GIL up
only every switch interval (5 ms by default) unless it blocks. The dispatcher encodes
and hands over batches of hundreds of logs: done at once, that is several
milliseconds during which a request of the application waits. So the dispatcher's
Python work comes in chunks (e.g. some dozens of logs encoded at a time) with a call
to :meth:`Slices.check` between them, which releases the GIL (``time.sleep(0)``: a
waiting thread takes it) once the stretch would pass :data:`SLICE_NS`. Its loop's
selector marks the other releases (each wait for I/O or for the next batch).

Whether to release is decided on the wall clock (``time.perf_counter_ns``, cheap); the
stretch recorded (``stats().longest_hold_ms``) is the thread's CPU time between two
releases (``time.thread_time_ns``), so a wait to get the GIL back after a blocking
call inside a stretch is not counted as held. See docs/pipeline.md, "The dispatcher's
slices".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from asynctrack._core.runtime import RUNTIME

__all__ = ["CHUNK", "SLICE_NS", "Slices", "activate", "active", "in_slices"]

#: The longest the dispatcher means to hold the GIL in one stretch (ns).
SLICE_NS = 1_000_000
#: Logs handled at a time between two checks (encoded, decoded, turned into rows): a
#: chunk is some tens to a few hundred µs of work.
CHUNK = 32

_T = TypeVar("_T")
_R = TypeVar("_R")
_perf_ns = time.perf_counter_ns
_cpu_ns = time.thread_time_ns
_get_ident = threading.get_ident
_sleep = time.sleep


class Slices:
    """
    The stretches of one thread (the dispatcher's) between two releases of the GIL.

    Only the owner thread is timed and sliced; :meth:`check` called from any other
    thread (a sink used directly) does nothing.
    """

    __slots__ = ("_cpu", "_last", "_owner", "_start", "longest_ns", "releases")

    def __init__(self) -> None:
        self._owner: int | None = None
        self._start = 0
        self._last = 0
        self._cpu = 0
        #: The longest stretch seen, in ns of the thread's CPU time.
        self.longest_ns = 0
        #: Releases made by :meth:`check` (the slices cut).
        self.releases = 0

    def own(self) -> None:
        """
        Time the calling thread from now on (the dispatcher's thread, as it starts).
        """
        self._owner = _get_ident()
        self._start = self._last = _perf_ns()
        self._cpu = _cpu_ns()

    def disown(self) -> None:
        self._owner = None

    def owned(self) -> bool:
        """
        Whether the calling thread is the one timed (the dispatcher's).
        """
        return _get_ident() == self._owner

    def released(self) -> None:
        """
        The owner is about to release the GIL (to wait for I/O): its stretch ends.
        """
        if _get_ident() == self._owner:
            held = _cpu_ns() - self._cpu
            if held > self.longest_ns:
                self.longest_ns = held

    def resumed(self) -> None:
        """
        The owner holds the GIL again: a stretch begins.
        """
        if _get_ident() == self._owner:
            self._start = self._last = _perf_ns()
            self._cpu = _cpu_ns()

    def mark(self) -> None:
        """
        Chunked work begins: the next :meth:`check` measures the chunk from here.
        """
        if _get_ident() == self._owner:
            self._last = _perf_ns()

    def check(self) -> None:
        """
        Between two chunks of work: release the GIL if the next chunk would end the
        stretch past :data:`SLICE_NS` (a chunk is assumed to cost what the last did).
        """
        if _get_ident() != self._owner:
            return
        now = _perf_ns()
        held = now - self._start
        if held + (now - self._last) < SLICE_NS:
            self._last = now
            return
        cpu = _cpu_ns() - self._cpu
        if cpu > self.longest_ns:
            self.longest_ns = cpu
        self.releases += 1
        _sleep(0)  # releases the GIL: a thread waiting for it takes it
        self._start = self._last = _perf_ns()
        self._cpu = _cpu_ns()


# Before any dispatcher starts: slices owned by no thread, which time nothing.
RUNTIME.slices = Slices()


def active() -> Slices:
    """
    The slices of the running dispatcher (one that does nothing before any starts).
    """
    slices: Slices = RUNTIME.slices
    return slices


def activate(slices: Slices) -> None:
    """
    Make ``slices`` the running dispatcher's (``RUNTIME.slices``; each new one does).
    """
    RUNTIME.slices = slices


def in_slices(
    func: Callable[[Sequence[_T]], _R], items: Sequence[_T], chunk: int = CHUNK
) -> list[_R]:
    """
    Return ``func`` applied to consecutive chunks of ``items``, in order, releasing the
    GIL between chunks when the dispatcher's stretch would otherwise grow past a slice.

    The first chunk has ``chunk`` items; each next one is sized, from the time the last
    took, to about a quarter of a slice (never fewer than ``chunk`` items), so a fast
    machine makes few calls and a slow one still slices. Outside the dispatcher's
    thread nothing is released, so the items go in one call.
    """
    n = len(items)
    slices = active()
    if n <= chunk or not slices.owned():
        return [func(items)]
    check = slices.check
    slices.mark()
    out: list[_R] = []
    i = 0
    size = chunk
    while True:
        t0 = _perf_ns()
        out.append(func(items[i : i + size]))
        i += size
        if i >= n:
            return out
        spent = _perf_ns() - t0
        size = max(chunk, size * _QUARTER // max(spent, 1))
        check()


_QUARTER = SLICE_NS // 4
