"""
Deadlines (issue #7, item 7): backoff is jittered and capped, shutdown cuts a retry
wait short, and a sink whose write never returns cannot hang flush() or the exit.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import asynctrack
from asynctrack import Log
from asynctrack._delivery import pipeline as _pipeline
from asynctrack._delivery.counters import Counters
from asynctrack._delivery.worker import SinkWorker, WorkerOptions
from tests.conftest import Configure

from . import _support as s

tr = asynctrack.get_tracker("rel.deadlines")


@tr.probe
def work(i: int) -> int:
    return i


class AlwaysFailing(asynctrack.Sink):
    """
    Fails every write; ``attempted`` is set at the first attempt.
    """

    def __init__(self) -> None:
        self.attempted = threading.Event()
        self.attempts = 0

    async def write(self, logs: Sequence[Log]) -> None:
        self.attempts += 1
        self.attempted.set()
        raise ConnectionRefusedError("injected: the database is down")


def worker(min_backoff: float = 0.05, max_backoff: float = 5.0) -> SinkWorker:
    options = WorkerOptions(min_backoff=min_backoff, max_backoff=max_backoff)
    return SinkWorker(asynctrack.MemorySink(), options, Counters())


def install(sink: asynctrack.Sink, tmp_path: Path, **options: float) -> None:
    """
    Install a pipeline with worker options ``configure`` does not expose (min_backoff).
    """
    pipeline = _pipeline.Pipeline(
        [sink],
        max_queue=10_000,
        batch_size=100,
        flush_interval=0.01,
        on_full="drop",
        block_timeout=1.0,
        exit_timeout=5.0,
        options=WorkerOptions(spill_dir=tmp_path, **options),  # type: ignore[arg-type]
    )
    _pipeline.install(pipeline)


class TestBackoff:
    def test_exponential_capped_and_jittered(self) -> None:
        """
        The n-th backoff lies in [b/2, b] with b = min(max_backoff, min_backoff * 2**(n-1)):
        it doubles, never exceeds the cap, never reaches 0, and is jittered.
        """
        w = worker(min_backoff=0.05, max_backoff=5.0)
        for attempt in range(1, 40):
            base = min(5.0, 0.05 * 2 ** (attempt - 1))
            samples = [w._backoff(attempt) for _ in range(200)]
            assert all(base / 2 <= x <= base for x in samples)
            assert len(set(samples)) > 150, "jittered: no two workers retry in lockstep"
            assert statistics.pstdev(samples) > base / 20
        assert max(w._backoff(1000) for _ in range(1000)) <= 5.0

    def test_huge_attempt_numbers_do_not_overflow(self) -> None:
        """
        A sink failing for days (attempt numbers in the millions) still gets the cap.
        """
        w = worker(max_backoff=2.0)
        assert 1.0 <= w._backoff(10**7) <= 2.0


class TestShutdownDeadline:
    def test_shutdown_cuts_a_long_retry_wait_short(self, tmp_path: Path) -> None:
        """
        A failing sink waiting 30-60 s before its next retry: shutdown returns at once,
        the batch goes to the spill file, nothing is lost.
        """
        sink = AlwaysFailing()
        install(sink, tmp_path, min_backoff=60.0, max_backoff=60.0, retry_attempts=5)
        for i in range(10):
            work(i)
        assert sink.attempted.wait(10)
        # The retry is counted just before the worker starts its 30-60 s backoff.
        assert s.wait_for(lambda: asynctrack.stats().retried >= 1, 10)
        t0 = time.monotonic()
        assert asynctrack.shutdown_sync(timeout=10) is True
        elapsed = time.monotonic() - t0
        s.figure("shutdown-during-backoff", seconds=elapsed)
        assert elapsed < 1.0, f"shutdown took {elapsed:.3f} s"
        st = asynctrack.stats()
        assert st.spilled == 10 and st.dropped == 0 and st.pending == 0
        (spill,) = tmp_path.glob("*.spill.jsonl")
        assert len(spill.read_text().splitlines()) == 10

    def test_flush_cuts_a_retry_wait_short(self, tmp_path: Path) -> None:
        """
        flush() without a timeout does not wait out a backoff either: it returns once
        the batch is spilled (with a timeout it would wait for a recovery until its
        deadline, issue #14).
        """
        sink = AlwaysFailing()
        install(sink, tmp_path, min_backoff=60.0, max_backoff=60.0, retry_attempts=5)
        for i in range(10):
            work(i)
        assert sink.attempted.wait(10)
        t0 = time.monotonic()
        result = asynctrack.flush_sync(timeout=None)
        assert time.monotonic() - t0 < 1.0
        assert result.spilled == 10


HANGING = """
mode, out = sys.argv[1], Path(sys.argv[2])


class Hanging(asynctrack.Sink):
    async def write(self, logs):
        emit("writing")
        if mode == "async":
            await asyncio.Event().wait()  # never set: cancellable
        else:
            time.sleep(3600)  # blocks the dispatcher's loop: cannot be interrupted


asynctrack.configure(sinks=[Hanging()], spill_dir=out, exit_timeout=1.0, flush_interval=0.01)
for i in range(100):
    work(i)


async def main():
    t0 = time.monotonic()
    try:
        await asynctrack.flush(timeout=0.5)
    except TimeoutError:
        emit(f"flush timed out after {time.monotonic() - t0:.3f}")


asyncio.run(main())
emit("exiting")
"""


@pytest.mark.slow
class TestHangingSink:
    @pytest.mark.parametrize("mode", ["async", "sync"])
    def test_hanging_write_cannot_hang_flush_or_exit(self, tmp_path: Path, mode: str) -> None:
        """
        A write that never returns: flush(timeout=0.5) raises TimeoutError on time and
        the process exits within exit_timeout + 1 s. An awaiting write is cancelled at
        the deadline and its batch spilled; a synchronous sleep inside the write blocks
        the loop and cannot be interrupted, so its logs are reported as not written.
        """
        code = s.script(tmp_path, HANGING)
        proc = s.start(code, mode, str(tmp_path / "spill"))
        try:
            lines = s.read_until(proc, "exiting", timeout=30)
            t0 = time.monotonic()
            _, err = proc.communicate(timeout=30)
            exit_time = time.monotonic() - t0
        finally:
            s.kill(proc)
        assert proc.returncode == 0, err
        s.figure(f"hanging-{mode}", exit_s=exit_time, lines=lines)
        assert "writing" in lines
        flushed = [x for x in lines if x.startswith("flush timed out after")]
        assert flushed and float(flushed[0].split()[-1]) < 1.5
        assert exit_time < 1.0 + 1.0, f"exit took {exit_time:.2f} s"
        spilled = list((tmp_path / "spill").glob("*.spill.jsonl"))
        if mode == "async":
            # the cancelled batch and the rest of the queue wait on disk for the next run
            assert sum(len(p.read_text().splitlines()) for p in spilled) == 100
        else:
            assert "shutdown deadline passed" in err
            assert "100 pending logs not written" in err or "queued" in err

    @pytest.mark.anyio
    async def test_flush_timeout_while_a_write_hangs(self, configured: Configure) -> None:
        """
        In-process: an awaiting write that never returns makes flush(timeout) raise
        TimeoutError under asyncio and trio; shutdown then cancels the write, spills
        its batch, and returns False within its timeout.
        """

        class Hanging(asynctrack.Sink):
            async def write(self, logs: Sequence[Log]) -> None:
                await asyncio.Event().wait()

        configured(Hanging(), flush_interval=0.01)
        for i in range(20):
            work(i)
        with pytest.raises(TimeoutError):
            await asynctrack.flush(timeout=0.3)
        t0 = time.monotonic()
        await asynctrack.shutdown(timeout=0.5)
        assert time.monotonic() - t0 < 2.0
        st = asynctrack.stats()
        assert st.spilled == 20 and st.pending == 0
