"""
The dispatcher's work in slices: the GIL is released between chunks (#20).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import asynctrack
from asynctrack import MemorySink
from asynctrack._core import slices
from asynctrack._core.encode import encode_logs
from asynctrack._core.records import Log
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.slices import SLICE_NS, Slices, in_slices
from asynctrack.sinks import FileSink, read_logs
from tests.conftest import Configure

tr = asynctrack.get_tracker("tests.slices")


@tr.probe
def work(n: int) -> int:
    return leaf(n)


@tr.probe
def leaf(n: int) -> int:
    return n


def busy(ns: int) -> None:
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


class Clock:
    """
    A fake clock for the slices: wall and CPU time advance together, by hand.
    """

    def __init__(self) -> None:
        self.ns = 0
        self.sleeps = 0

    def advance(self, ns: int) -> None:
        self.ns += ns

    def now(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        assert seconds == 0
        self.sleeps += 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(slices, "_perf_ns", c.now)
    monkeypatch.setattr(slices, "_cpu_ns", c.now)
    monkeypatch.setattr(slices, "_sleep", c.sleep)
    return c


class TestSlices:
    def test_a_stretch_past_a_slice_is_released_and_timed(self, clock: Clock) -> None:
        s = Slices()
        s.own()
        s.mark()
        s.check()  # a chunk of no work: nothing to release
        assert (s.releases, clock.sleeps) == (0, 0)
        clock.advance(SLICE_NS + SLICE_NS // 2)
        s.check()
        assert (s.releases, clock.sleeps) == (1, 1)
        assert s.longest_ns == SLICE_NS + SLICE_NS // 2
        clock.advance(SLICE_NS // 10)
        s.check()  # the stretch began again at the release
        assert s.releases == 1

    def test_a_chunk_that_would_end_past_the_slice_is_preceded_by_a_release(
        self, clock: Clock
    ) -> None:
        s = Slices()
        s.own()
        clock.advance(SLICE_NS // 10)  # work before the chunks
        s.mark()
        clock.advance(SLICE_NS * 4 // 10)
        s.check()  # 0.5 ms held, and a next chunk like this one ends at 0.9 ms
        assert s.releases == 0
        clock.advance(SLICE_NS * 4 // 10)
        s.check()  # 0.9 ms held: the next chunk would end at 1.3 ms
        assert s.releases == 1
        assert s.longest_ns == SLICE_NS * 9 // 10

    def test_the_selector_ends_and_begins_stretches(self, clock: Clock) -> None:
        s = Slices()
        s.own()
        clock.advance(SLICE_NS // 2)
        s.released()
        assert s.longest_ns == SLICE_NS // 2
        clock.advance(SLICE_NS)  # waiting for I/O: not held
        s.resumed()
        clock.advance(SLICE_NS // 4)
        s.released()
        assert s.longest_ns == SLICE_NS // 2

    def test_other_threads_are_neither_timed_nor_sliced(self, clock: Clock) -> None:
        s = Slices()
        s.own()
        seen: list[tuple[int, int]] = []

        def other() -> None:
            s.mark()
            clock.advance(2 * SLICE_NS)
            s.check()
            s.released()
            seen.append((s.releases, s.longest_ns))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen == [(0, 0)]
        assert clock.sleeps == 0

    def test_a_real_release_lets_another_thread_run(self) -> None:
        """
        time.sleep(0) in check() lets a thread waiting for the GIL take it, long before
        the interpreter's switch interval (made 20 s here) would.
        """
        s = Slices()
        s.own()
        go, ran = threading.Event(), threading.Event()

        def other() -> None:
            go.wait()
            ran.set()

        thread = threading.Thread(target=other)
        thread.start()
        interval = sys.getswitchinterval()
        sys.setswitchinterval(20.0)
        try:
            go.set()
            deadline = time.monotonic() + 10
            while not ran.is_set() and time.monotonic() < deadline:
                busy(SLICE_NS // 4)
                s.check()
            got_in = ran.is_set()  # before the switch interval could have let it in
        finally:
            sys.setswitchinterval(interval)
        thread.join()
        assert got_in and s.releases >= 1

    def test_in_slices_sizes_chunks_to_a_quarter_slice(
        self, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        In the dispatcher's thread: a first chunk of ``chunk`` items, then chunks sized
        from the last one's time to about a quarter of a slice, never fewer than
        ``chunk``; in order.
        """
        s = Slices()
        monkeypatch.setattr(RUNTIME, "slices", s)
        s.own()

        def costing(per_item_ns: int) -> Callable[[Sequence[int]], tuple[int, ...]]:
            def func(chunk: Sequence[int]) -> tuple[int, ...]:
                clock.advance(per_item_ns * len(chunk))
                return tuple(chunk)

            return func

        items = list(range(600))
        parts = in_slices(costing(10_000), items, 32)  # 10 µs an item: 32 at a time
        assert [len(p) for p in parts] == [32] * 18 + [24]
        assert sum(parts, ()) == tuple(items)
        parts = in_slices(costing(1_000), items, 32)  # 1 µs an item: 250 at a time
        assert [len(p) for p in parts] == [32, 250, 250, 68]
        assert sum(parts, ()) == tuple(items)
        assert in_slices(tuple, items[:32], 32) == [tuple(items[:32])]
        assert in_slices(tuple, [], 32) == [()]

    def test_other_threads_take_the_items_in_one_call(self) -> None:
        items = list(range(100))
        assert in_slices(tuple, items, 32) == [tuple(items)]

    def test_chunked_encoding_is_the_encoding_of_the_batch(
        self, configured: Configure, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sink = MemorySink()
        configured(sink)
        for i in range(300):
            work(i)
        asynctrack.flush_sync(timeout=30)
        logs = list(sink.logs)
        assert len(logs) == 300
        s = Slices()
        monkeypatch.setattr(RUNTIME, "slices", s)
        s.own()

        def slow_encode(chunk: Sequence[Log]) -> bytes:
            clock.advance(len(chunk) * 10_000)
            return encode_logs(chunk)

        parts = in_slices(slow_encode, logs, 32)
        assert len(parts) == 10
        assert b"".join(parts) == encode_logs(logs)


class TestDispatcher:
    def test_a_long_batch_is_written_in_slices(
        self, configured: Configure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A batch whose encoding takes several slices releases the GIL between chunks,
        and is written whole, in order.
        """

        def slow_encode(logs: Sequence[Log]) -> bytes:
            busy(len(logs) * 10_000)  # 10 µs per log: 5 ms for a batch of 512
            return encode_logs(logs)

        monkeypatch.setattr("asynctrack.sinks._file.encode_logs", slow_encode)
        path = tmp_path / "t.jsonl"
        configured(FileSink(path), batch_size=512, flush_interval=30)
        for i in range(512):
            work(i)
        asynctrack.flush_sync(timeout=30)
        assert [log.calls[0].params["n"] for log in read_logs(path)] == list(range(512))
        assert slices.active().releases >= 3
        stats = asynctrack.stats()
        assert stats.written == {"file-t.jsonl": 512}
        assert 0 < stats.longest_hold_ms

    def test_stats_default(self) -> None:
        assert asynctrack.Stats().longest_hold_ms == 0.0
