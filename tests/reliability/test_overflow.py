"""
Overflow (issue #7, item 5): a blocked sink and a full queue drop and count, never
make a probe wait, warn at most once per 20 s, and keep memory bounded.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

import psutil  # type: ignore[import-untyped]
import pytest

import asynctrack
from asynctrack._core import selfwarn
from asynctrack._delivery import pipeline as _pipeline
from tests.conftest import Configure

from ..helpers import SlowSink
from . import _support as s

tr = asynctrack.get_tracker("rel.overflow")


@tr.probe
def work(i: int, payload: str = "x" * 200) -> int:
    return i


def timed_burst(n: int) -> float:
    """
    Call the probe ``n`` times; return the longest single call in seconds.
    """
    worst = 0.0
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        work(i)
        worst = max(worst, clock() - t0)
    return worst


class TestOverflow:
    def test_blocked_sink_exactly_9000_drops_one_warning(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        Queue of 1,000, a blocked sink, 10,000 probes: exactly 9,000 drops, one warning,
        no probe waits on the sink; released, the sink gets the 1,000 kept logs.

        The batch is larger than the burst and the timer long, so the dispatcher does
        not move logs into the sink's own queue during the burst: the count is exact.
        """
        sink = SlowSink(block=True)
        configured(sink, max_queue=1000, batch_size=20_000, flush_interval=60)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            worst = timed_burst(10_000)
            st = asynctrack.stats()
        s.figure("overflow", dropped=st.dropped, worst_probe_s=worst)
        assert st.dropped == 9000 and st.pending == 1000
        warnings = [r for r in caplog.records if "intake is full" in r.getMessage()]
        assert len(warnings) == 1
        assert worst < 0.5, f"a probe waited {worst:.3f} s"
        sink.release.set()
        asynctrack.flush_sync(timeout=30)
        assert sink.count == 1000
        assert asynctrack.stats().dropped == 9000

    def test_warnings_are_rate_limited_with_a_count_of_repeats(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        A problem is reported once per interval; the next report says how many similar
        messages were suppressed meanwhile.
        """
        now = [1000.0]
        monkeypatch.setattr("asynctrack._core.selfwarn.time.monotonic", lambda: now[0])
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            for step in range(100):
                now[0] = 1000.0 + step * 0.5  # 50 s of repeats, one every 0.5 s
                selfwarn.report("full", "asynctrack: full")
        messages = [r.getMessage() for r in caplog.records]
        assert messages == [
            "asynctrack: full",
            "asynctrack: full (39 similar messages suppressed)",
            "asynctrack: full (39 similar messages suppressed)",
        ]

    def test_realistic_batching_counts_every_log(self, configured: Configure) -> None:
        """
        With ordinary batching the dispatcher also fills the sink's own queue, so the
        drop count depends on timing, but every log is written or counted as dropped.
        """
        sink = SlowSink(block=True)
        configured(sink, max_queue=1000, batch_size=100, flush_interval=0.01, max_pending_batches=4)
        worst = timed_burst(10_000)
        assert sink.entered.wait(10)  # the dispatcher holds a batch in the blocked write
        sink.release.set()
        asynctrack.flush_sync(timeout=30)
        st = asynctrack.stats()
        assert sink.count + st.dropped == 10_000
        assert 1000 <= sink.count <= 1000 + 5 * 100
        assert worst < 0.5

    def test_dropping_takes_no_lock(self, configured: Configure) -> None:
        """
        While another thread holds the counters' and the reporter's locks, probes that
        hit a full queue still return at once: a producer never waits on a lock (a
        signal handler that shuts down can never wait for the code it interrupted).
        """
        sink = SlowSink(block=True)
        configured(sink, max_queue=10, batch_size=1000, flush_interval=60)
        timed_burst(20)  # the queue is full; the first warning is out
        pipeline = _pipeline.current()
        assert pipeline is not None
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with pipeline.counters._lock, selfwarn._lock:
                held.set()
                release.wait(30)

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            assert held.wait(10)
            t0 = time.perf_counter()
            worst = timed_burst(1000)
            elapsed = time.perf_counter() - t0
        finally:
            release.set()
            thread.join()
        assert elapsed < 1.0 and worst < 0.5
        assert asynctrack.stats().dropped == 1010
        sink.release.set()

    def test_memory_stays_bounded(self, configured: Configure) -> None:
        """
        100,000 probes into a queue of 1,000 in front of a blocked sink: RSS grows by
        less than 20 MB.
        """
        sink = SlowSink(block=True)
        configured(sink, max_queue=1000, batch_size=20_000, flush_interval=60)
        timed_burst(2000)  # warm up: allocator arenas, caches
        gc.collect()
        before = psutil.Process().memory_info().rss
        timed_burst(100_000)
        gc.collect()
        grown = psutil.Process().memory_info().rss - before
        s.figure("overflow-rss", grown_mb=grown / 2**20)
        assert asynctrack.stats().dropped == 101_000
        assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB"
        sink.release.set()
