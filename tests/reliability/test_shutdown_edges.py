"""
Exactly once at the edges of process life (issue #14, section 5): a shutdown while
threads finish their logs writes each log once (complete, or as an incomplete
snapshot, never both), and when the shutdown deadline nears, whatever the dispatcher
has not delivered is spilled to disk by the exiting thread and replayed at the next
start.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log, MemorySink
from asynctrack._core.runtime import RUNTIME
from asynctrack.testing import capture
from tests.conftest import Configure

tr = asynctrack.get_tracker("rel.shutdown_edges")


@tr.probe
def outer(n: int) -> int:
    return inner(n) + inner(n)


@tr.probe
def inner(n: int) -> int:
    return n


class TestNoDuplicateAtShutdown:
    @settings(
        max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(threads=st.integers(2, 16), calls=st.integers(50, 400))
    def test_threads_finishing_logs_during_shutdown(self, threads: int, calls: int) -> None:
        """
        Threads keep completing logs while ``shutdown`` snapshots the open ones: no
        log id is written twice, and every log either reached the sink or was counted
        as dropped (it completed after the shutdown).
        """
        RUNTIME.reset()
        sink = MemorySink()
        asynctrack.configure(sinks=[sink], spill_dir=Path("."))
        started = threading.Barrier(threads + 1)
        done = [0] * threads

        def body(k: int) -> None:
            started.wait()
            for i in range(calls):
                outer(i)
                done[k] += 1

        workers = [threading.Thread(target=body, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        started.wait()
        assert asynctrack.shutdown_sync(timeout=30) is True
        for w in workers:
            w.join()
        ids = [log.id for log in sink.logs]
        assert len(ids) == len(set(ids)), "a log was written twice"
        st_ = asynctrack.stats()
        complete = sum(1 for log in sink.logs if log.complete)
        assert complete + st_.dropped == sum(done)
        RUNTIME.reset()


class Stuck(asynctrack.Sink):
    """
    A sink whose write blocks the dispatcher's loop (a synchronous call inside
    ``async def``) until released: the dispatcher cannot deliver, spill or stop.
    """

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.ids: list[str] = []

    @property
    def name(self) -> str:
        return "stuck"

    async def write(self, logs: Sequence[Log]) -> None:
        self.entered.set()
        self.release.wait(60)  # blocks the loop on purpose
        await asyncio.sleep(0)
        self.ids.extend(log.id for log in logs)


class Named(MemorySink):
    @property
    def name(self) -> str:
        return "stuck"


class TestSpillAtTheDeadline:
    def test_what_the_dispatcher_cannot_deliver_is_spilled_by_the_exiting_thread(
        self, configured: Configure
    ) -> None:
        """
        The dispatcher is stalled (as under CPU-bound threads that starve it of the
        GIL): at the deadline the exiting thread spills every queued log; only the
        batch inside the stalled write stays pending. The next start replays the
        spill: every log is delivered once.
        """
        sink = Stuck()
        configured(sink, batch_size=10, max_pending_batches=4)
        with capture() as logs:
            for i in range(10):
                outer(i)
            assert sink.entered.wait(30)
            for i in range(10, 500):
                outer(i)
        t0 = time.monotonic()
        ok = asynctrack.shutdown_sync(timeout=1.0)
        elapsed = time.monotonic() - t0
        st_ = asynctrack.stats()
        sink.release.set()
        assert ok is False  # the stalled write never returned in time: said so
        assert elapsed < 10
        assert st_.pending == 10 and st_.dropped == 0
        assert st_.spilled == 490
        RUNTIME.reset()
        replay = Named()
        configured(replay)
        asynctrack.flush_sync(timeout=30)
        replayed = [log.id for log in replay.logs]
        assert len(replayed) == len(set(replayed)) == 490
        assert set(replayed) | set(sink.ids) == {log.id for log in logs}
