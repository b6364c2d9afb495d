"""
The pipeline: intake, batching dispatcher, retries, spill and replay, flush, shutdown.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asynctrack
from asynctrack import MemorySink
from asynctrack._core.runtime import RUNTIME
from asynctrack.sinks import FileSink, read_logs
from tests.conftest import Configure
from tests.helpers import FlakySink, SlowSink, wait_for

tr = asynctrack.get_tracker("tests.pipeline")


@tr.probe
def work(n: int) -> int:
    return leaf(n)


@tr.probe
def leaf(n: int) -> int:
    return n


@tr.probe
async def awork(n: int) -> int:
    await asyncio.sleep(0)
    return leaf(n)


class BatchRecorder(MemorySink):
    """
    A MemorySink that also records the size of each batch it is given.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def write(self, logs: Any) -> None:
        self.sizes.append(len(logs))
        await super().write(logs)


def ids_in_file(path: Path) -> list[str]:
    return [log.id for log in read_logs(path)]


class TestThroughput:
    def test_threads_and_tasks_into_a_file_exactly_once(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        8 threads x 10,000 root calls + 1,000 concurrent tasks: every log written once.
        """
        path = tmp_path / "t.jsonl"
        configured(FileSink(path))

        def thread_body() -> None:
            for i in range(10_000):
                work(i)

        threads = [threading.Thread(target=thread_body) for _ in range(8)]
        for t in threads:
            t.start()

        async def tasks() -> None:
            await asyncio.gather(*(awork(i) for i in range(1000)))

        asyncio.run(tasks())
        for t in threads:
            t.join()
        asynctrack.flush_sync(timeout=60)
        ids = ids_in_file(path)
        assert len(ids) == 81_000
        assert len(set(ids)) == 81_000
        st = asynctrack.stats()
        assert st.enqueued == 81_000 and st.written == {"file-t.jsonl": 81_000}
        assert st.dropped == 0 and st.pending == 0
        assert all(len(log.calls) == 2 for log in read_logs(path))


class TestFlush:
    @pytest.mark.anyio
    async def test_flush_under_asyncio_and_trio(self, configured: Configure) -> None:
        """
        await flush() returns once everything completed before it is written.
        """
        sink = MemorySink()
        configured(sink, flush_interval=30)
        for i in range(10):
            work(i)
        result = await asynctrack.flush()
        assert len(sink.logs) == 10
        assert result.written == {"memory": 10} and result.spilled == 0 and result.dropped == 0
        assert await tr.flush(timeout=5) is not None

    def test_flush_timeout_raises_and_loses_nothing(self, configured: Configure) -> None:
        """
        A flush that times out raises TimeoutError; the logs are written later.
        """
        sink = SlowSink(block=True)
        configured(sink, write_timeout=60)
        for i in range(5):
            work(i)
        with pytest.raises(TimeoutError):
            asynctrack.flush_sync(timeout=0.2)
        sink.release.set()
        asynctrack.flush_sync(timeout=10)
        assert sink.count == 5

    def test_flush_without_configuration(self) -> None:
        """
        flush with no pipeline returns an empty result; bad timeouts are ValueErrors.
        """
        assert asynctrack.flush_sync().written == {}
        with pytest.raises(ValueError, match="timeout"):
            asynctrack.flush_sync(timeout=-1)

    def test_batches_are_bounded_and_timer_flushes(self, configured: Configure) -> None:
        """
        Batches hold at most batch_size logs; a partial batch goes on the timer.
        """
        sink = BatchRecorder()
        sizes = sink.sizes
        configured(sink, batch_size=100, flush_interval=0.05)
        for i in range(250):
            work(i)
        wait_for(lambda: len(sink.logs) >= 250, 5)
        assert len(sink.logs) == 250
        assert max(sizes) <= 100


class TestShutdown:
    def test_shutdown_writes_open_logs_incomplete(self, configured: Configure) -> None:
        """
        shutdown writes logs still open, marked complete=false, with running calls.
        """
        sink = MemorySink()
        configured(sink)
        inside = threading.Event()
        release = threading.Event()

        @tr.probe
        def long_job() -> None:
            leaf(1)
            inside.set()
            release.wait(5)

        th = threading.Thread(target=long_job)
        th.start()
        inside.wait(5)
        assert asynctrack.shutdown_sync(timeout=5) is True
        release.set()
        th.join()
        (log,) = sink.logs
        assert log.complete is False
        assert [c.status for c in log.calls] == ["running", "ok"]
        assert asynctrack.stats().dropped == 0

    def test_shutdown_twice_and_probes_after(self, configured: Configure) -> None:
        """
        Later shutdowns are no-ops; probes after shutdown work, and their logs are
        counted as dropped (#15), not written.
        """
        sink = MemorySink()
        configured(sink)
        work(1)
        assert asynctrack.shutdown_sync() is True
        assert asynctrack.shutdown_sync() is True
        assert work(2) == 2
        assert len(sink.logs) == 1
        assert asynctrack.stats().dropped == 1

    @pytest.mark.anyio
    async def test_tracking_context_manager(self, tmp_path: Path) -> None:
        """
        async with tracking(...) configures on enter and shuts down on exit.
        """
        sink = MemorySink()
        async with asynctrack.tracking(sinks=[sink], spill_dir=tmp_path):
            await awork_any(3)
        assert len(sink.logs) == 1
        await asynctrack.shutdown()  # no-op after the context exited

    def test_reconfigure_swaps_sinks_without_loss(self, configured: Configure) -> None:
        """
        configure again: old sinks get everything before, new sinks everything after.
        """
        a, b = MemorySink("a"), MemorySink("b")
        configured(a)
        for i in range(100):
            work(i)
        configured(b)
        for i in range(50):
            work(i)
        asynctrack.flush_sync()
        assert (len(a.logs), len(b.logs)) == (100, 50)


@tr.probe
async def awork_any(n: int) -> int:
    await anyio.lowlevel.checkpoint()
    return n


class TestOutages:
    def test_sink_failing_then_recovering_loses_nothing(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        A sink failing for a while: logs are spilled, replayed in order, none lost.
        """
        sink = FlakySink(fail_for=0.6)
        configured(sink, batch_size=50, flush_interval=0.02, max_backoff=0.1, retry_attempts=2)
        expected = []
        for i in range(2000):
            work(i)
            if i % 100 == 0:
                time.sleep(0.03)
        asynctrack.flush_sync(timeout=10)
        # The worker counts a replayed batch once its write has returned: wait for the
        # counter too, not only for the logs to arrive.

        def replayed_all() -> bool:
            st = asynctrack.stats()
            return len(sink.ids) >= 2000 and st.replayed == st.spilled

        wait_for(replayed_all, 10)
        st = asynctrack.stats()
        assert len(sink.ids) == 2000 and len(set(sink.ids)) == 2000
        assert sink.ids == sorted(sink.ids), "replay must keep the order"
        assert st.spilled > 0 and st.replayed == st.spilled and st.failed > 0
        assert st.dropped == 0
        assert not list(tmp_path.glob("*.spill.jsonl")), "the spill file is removed after replay"
        del expected

    def test_sink_that_never_recovers_ends_in_spill_file(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        A dead sink: everything ends in its spill file and stats() says so; the next
        run replays it.
        """
        dead = FlakySink("db")
        dead.failing.set()
        configured(dead, retry_attempts=1, max_backoff=0.05)
        for i in range(300):
            work(i)
        result = asynctrack.flush_sync(timeout=None)  # returns once on disk
        assert result.spilled == 300
        asynctrack.shutdown_sync(timeout=5)
        st = asynctrack.stats()
        assert st.spilled == 300 and st.written.get("db", 0) == 0
        (spill,) = tmp_path.glob("asynctrack-db*.spill.jsonl")
        assert len(spill.read_bytes().splitlines()) == 300
        assert stat.S_IMODE(spill.stat().st_mode) == 0o600
        # next start of the program: the same sink recovers and the file is replayed
        alive = FlakySink("db")
        configured(alive)
        wait_for(lambda: len(alive.ids) >= 300 and asynctrack.stats().replayed >= 300, 10)
        assert len(alive.ids) == 300
        assert asynctrack.stats().replayed == 300

    def test_one_failing_sink_does_not_hold_back_another(self, configured: Configure) -> None:
        """
        A dead sink and a healthy one: the healthy one gets everything promptly.
        """
        dead = FlakySink("dead")
        dead.failing.set()
        good = MemorySink("good")
        configured(dead, good, retry_attempts=50)
        for i in range(100):
            work(i)
        wait_for(lambda: len(good.logs) >= 100, 3)
        assert len(good.logs) == 100

    def test_poison_log_goes_to_dead_letters(self, configured: Configure, tmp_path: Path) -> None:
        """
        One log that always fails is set aside; the other 499 are written.
        """
        sink = FlakySink("p")
        configured(sink, retry_attempts=1, max_backoff=0.01)
        from asynctrack.testing import capture

        with capture() as logs:
            for i in range(500):
                work(i)
        sink.poison = {logs[137].id}
        asynctrack.flush_sync(timeout=10)
        assert len(sink.ids) == 499 and logs[137].id not in sink.ids
        dead = tmp_path / "asynctrack-p.dead.jsonl"
        assert [json.loads(x)["id"] for x in dead.read_text().splitlines()] == [logs[137].id]
        assert asynctrack.stats().dead_lettered == 1


class TestWakeUps:
    def test_the_dispatcher_wakes_every_few_batches(self, configured: Configure) -> None:
        """
        Before its timer, the dispatcher is woken once 8 batches are queued, not at
        every batch (each wake-up costs the application's threads on other cores);
        it then writes them all, in batches of at most batch_size.
        """
        sink = BatchRecorder()
        sizes = sink.sizes
        configured(sink, batch_size=10, flush_interval=60, max_queue=1000)
        pipeline = RUNTIME.pipeline
        assert pipeline is not None
        intake = pipeline.intake
        assert intake.wake_every == 80
        for i in range(79):
            work(i)
        # Not signalled: the dispatcher, waiting on its 60 s timer, took nothing.
        assert len(intake) == 79 and intake._wake_at == 80
        work(79)
        wait_for(lambda: len(sink.logs) == 80, 10)
        assert sizes and max(sizes) <= 10 and sum(sizes) == 80

    @pytest.mark.parametrize(
        ("batch_size", "max_queue", "wake_every"),
        [(512, 100_000, 4096), (10, 160, 80), (10, 159, 10), (10_000, 1000, 10_000)],
    )
    def test_a_small_bound_wakes_it_every_batch(
        self, configured: Configure, batch_size: int, max_queue: int, wake_every: int
    ) -> None:
        """
        Eight batches only where they fit in half the bound; else one batch, as before.
        """
        configured(MemorySink(), batch_size=batch_size, max_queue=max_queue)
        pipeline = RUNTIME.pipeline
        assert pipeline is not None
        assert pipeline.intake.wake_every == wake_every


class TestOverflow:
    def test_drop_counts_exactly_and_memory_stays_bounded(self, configured: Configure) -> None:
        """
        A blocked sink, a queue of 1,000 and 10,000 logs: exactly 9,000 drops, no wait.
        """
        sink = SlowSink(block=True)
        configured(sink, max_queue=1000, flush_interval=60, batch_size=10_000)
        for i in range(10_000):
            work(i)
        st = asynctrack.stats()
        assert st.dropped == 9000
        sink.release.set()
        asynctrack.flush_sync(timeout=10)
        assert sink.count == 1000

    def test_block_policy_drops_nothing(self, configured: Configure) -> None:
        """
        on_full="block" makes producers wait for room: zero drops.
        """
        sink = SlowSink(delay=0.001)
        configured(sink, max_queue=100, batch_size=50, on_full="block", block_timeout=30)
        for i in range(3000):
            work(i)
        asynctrack.flush_sync(timeout=30)
        assert asynctrack.stats().dropped == 0 and sink.count == 3000


class TestFileSink:
    def test_rotation_permissions_and_reader(self, configured: Configure, tmp_path: Path) -> None:
        """
        Files are 0600 in 0700 directories, rotate by size, and read back oldest first.
        """
        old = os.umask(0o022)
        try:
            path = tmp_path / "sub" / "t.jsonl"
            configured(FileSink(path, max_bytes=20_000, backup_count=3), batch_size=20)
            for i in range(400):
                work(i)
                if i % 20 == 0:
                    asynctrack.flush_sync()
            asynctrack.flush_sync()
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        rotated = sorted(tmp_path.glob("sub/t.jsonl.*"))
        assert 1 <= len(rotated) <= 3
        assert all(p.stat().st_size <= 20_000 for p in [path, *rotated])
        params = [log.calls[0].params["n"] for log in read_logs(path)]
        assert params == sorted(params) and params[-1] == 399

    def test_torn_last_line_is_skipped_and_reported(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        read_logs skips a torn last line and reports it.
        """
        path = tmp_path / "t.jsonl"
        configured(FileSink(path))
        work(1)
        work(2)
        asynctrack.flush_sync()
        with open(path, "ab") as f:
            f.write(b'{"id": "abc", "calls": [')
        errors: list[tuple[Path, int, str]] = []
        logs = list(read_logs(path, on_error=lambda *e: errors.append(e)))
        assert len(logs) == 2 and len(errors) == 1 and errors[0][1] == 3
        with pytest.raises(FileNotFoundError):
            list(read_logs(tmp_path / "missing.jsonl"))

    def test_bad_arguments(self) -> None:
        """
        Wrong FileSink arguments are ConfigErrors naming the argument.
        """
        with pytest.raises(asynctrack.ConfigError, match="fsync"):
            FileSink("x", fsync="always")
        with pytest.raises(asynctrack.ConfigError, match="max_bytes"):
            FileSink("x", max_bytes=-1)


class TestConfigureErrors:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            pytest.param({"batch_sise": 1}, "unknown option.*batch_sise", id="unknown"),
            pytest.param({"batch_size": 0}, "batch_size must be an int >= 1", id="batch"),
            pytest.param({"on_full": "wait"}, "on_full must be 'drop' or 'block'", id="on_full"),
            pytest.param({"level": "LOUD"}, "unknown level 'LOUD'", id="level"),
            pytest.param(
                {"sinks": [object()]}, r"sinks\[0\] must be an asynctrack.Sink", id="sink"
            ),
            pytest.param({"flush_interval": 0}, "flush_interval must be", id="interval"),
            pytest.param({"sinks": [MemorySink(), MemorySink()]}, "named 'memory'", id="dup"),
        ],
    )
    def test_errors_name_the_option(self, options: dict[str, Any], message: str) -> None:
        """
        Bad options raise ConfigError naming the option.
        """
        with pytest.raises(asynctrack.ConfigError, match=message):
            asynctrack.configure(**options)


class TestBatching:
    def test_drain_and_batches_keep_order_around_barriers(self) -> None:
        """
        The intake hands items over in order; the dispatcher cuts full batches of logs
        and ends a batch at each flush barrier, whatever the mix.
        """
        from asynctrack._delivery.counters import Counters
        from asynctrack._delivery.dispatcher import Dispatcher
        from asynctrack._delivery.intake import Barrier, Intake
        from asynctrack._delivery.worker import WorkerOptions
        from asynctrack.testing import capture

        with capture() as made:
            for i in range(23):
                work(i)
        counters = Counters()
        intake = Intake(
            max_queue=1000, batch_size=4, on_full="drop", block_timeout=0.0, counters=counters
        )
        items: list[Any] = [*made[:9], Barrier(), *made[9:10], Barrier(), Barrier(), *made[10:]]
        for item in items:
            intake.put_control(item)
        assert intake.drain(0) == [] and len(intake) == len(items)
        first = intake.drain(3)
        assert first == items[:3] and len(intake) == len(items) - 3
        for item in reversed(first):
            intake._dq.appendleft(item)

        dispatcher = Dispatcher(
            intake, [], flush_interval=1.0, options=WorkerOptions(), counters=counters
        )
        handed: list[Any] = []
        dispatcher._submit = handed.append  # type: ignore[method-assign, assignment]
        dispatcher._drain()
        assert len(intake) == 0
        assert [len(b) for b in handed] == [4, 4, 1, 1, 4, 4, 4, 1]
        assert [log for batch in handed for log in batch] == list(made)
        assert all(b.done for b in items if isinstance(b, Barrier))
