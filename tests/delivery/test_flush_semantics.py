"""
Flush semantics (issue #14, section 5): with a timeout, ``flush`` waits for delivery
while its deadline allows — spilled logs are replayed when the sink recovers — and
reports spilled logs only when the deadline passes; without a timeout it returns once
every log is written or durably spilled, never waiting on a sink that stays down.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import asynctrack
from asynctrack import FlushResult
from tests.helpers import FlakySink
from tests.reliability._support import wait_for

tr = asynctrack.get_tracker("tests.flush_semantics")


@tr.probe
def work(n: int) -> int:
    return n


def _configure(sink: asynctrack.Sink, tmp_path: Path) -> None:
    asynctrack.configure(
        sinks=[sink], spill_dir=tmp_path, retry_attempts=1, max_backoff=0.05, batch_size=64
    )


class TestFlushWithTimeout:
    def test_waits_for_a_sink_that_recovers_within_the_deadline(self, tmp_path: Path) -> None:
        """
        A sink down when the flush starts and back before its deadline: the flush
        returns with every log written, the spilled ones replayed, ``spilled == 0``.
        """
        sink = FlakySink()
        sink.failing.set()
        _configure(sink, tmp_path)
        for i in range(500):
            work(i)
        results: list[FlushResult] = []
        flusher = threading.Thread(target=lambda: results.append(asynctrack.flush_sync(60)))
        flusher.start()
        assert wait_for(lambda: asynctrack.stats().spilled >= 500, 30)
        assert not results  # still waiting: the deadline allows more
        sink.failing.clear()
        flusher.join(60)
        (result,) = results
        assert len(set(sink.ids)) == 500
        assert result.spilled == 0 and result.written == {"flaky": 500}

    @pytest.mark.anyio
    async def test_async_flush_waits_for_the_replay(self, tmp_path: Path) -> None:
        """
        ``await flush(timeout=60)`` on asyncio and trio: same as the blocking form.
        """
        sink = FlakySink()
        sink.failing.set()
        _configure(sink, tmp_path)
        for i in range(100):
            work(i)
        result: list[FlushResult] = []

        async def flusher() -> None:
            result.append(await asynctrack.flush(timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(flusher)
            spilled = await anyio.to_thread.run_sync(
                wait_for, lambda: asynctrack.stats().spilled >= 100, 30
            )
            assert spilled
            sink.failing.clear()
        assert result[0].spilled == 0
        assert len(set(sink.ids)) == 100

    def test_reports_spilled_logs_when_the_deadline_passes(self, tmp_path: Path) -> None:
        """
        A sink that stays down: the flush returns at its deadline with the logs
        counted as spilled (they are on disk), and raises nothing.
        """
        sink = FlakySink()
        sink.failing.set()
        _configure(sink, tmp_path)
        for i in range(50):
            work(i)
        result = asynctrack.flush_sync(timeout=0.5)
        assert result.spilled == 50
        assert sink.ids == []


class TestFlushWithoutTimeout:
    def test_returns_once_everything_is_on_disk(self, tmp_path: Path) -> None:
        """
        ``flush(timeout=None)`` on a sink that stays down returns (it does not wait
        for a recovery) with every log durably spilled.
        """
        sink = FlakySink()
        sink.failing.set()
        _configure(sink, tmp_path)
        for i in range(50):
            work(i)
        result = asynctrack.flush_sync(timeout=None)
        assert result.spilled == 50
        assert asynctrack.stats().pending == 0
        spilled = [p for p in tmp_path.iterdir() if p.name.endswith(".spill.jsonl")]
        assert sum(1 for p in spilled for _ in asynctrack.sinks.read_logs(p)) == 50
