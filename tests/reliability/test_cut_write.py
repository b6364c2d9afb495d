"""
A FileSink write cut short (the shutdown deadline cancels the worker, or the write
timeout runs out) after its thread began writing lands in the file all the same: it is
counted written, never spilled or retried as well (#15). The starved-exit test read
512 logs more in the file than were counted written: the batch in flight, written by
its thread while the deadline cancelled the worker, was also spilled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log
from asynctrack._delivery.counters import Counters
from asynctrack._delivery.worker import SinkWorker, WorkerOptions
from asynctrack.sinks import FileSink, read_logs
from asynctrack.sinks._file import _WriteJob
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.cut_write")


@tr.probe
def work(n: int) -> int:
    return n


def make_logs(n: int) -> list[Log]:
    with capture() as logs:
        for i in range(n):
            work(i)
    return list(logs)


class CutExecutor(ThreadPoolExecutor):
    """
    Runs jobs at once in the calling thread; the ``cut``-th batch write (1-based) is
    cut: ``cancel`` is scheduled in the loop before the write's result can reach it,
    with the write done already (``begun``) or held back until after the cut.
    """

    def __init__(self, cut: int, begun: bool) -> None:
        super().__init__(max_workers=1)
        self.cut = cut
        self.begun = begun
        self.writes = 0
        self.cancel: Callable[[], Any] = lambda: None
        self.held: list[Callable[[], Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if isinstance(getattr(fn, "__self__", None), _WriteJob):
            self.writes += 1
            if self.writes == self.cut:
                # Scheduled before the result is: the worker sees the cut, not the result.
                asyncio.get_running_loop().call_soon(self.cancel)
                if not self.begun:
                    self.held.append(lambda: fn(*args, **kwargs))  # its future was cancelled
                    return future
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def run(
    tmp: Path, batches: list[list[Log]], cut: int, begun: bool
) -> tuple[SinkWorker, list[str], list[str]]:
    """
    Deliver ``batches`` through a FileSink whose ``cut``-th write is cut by the
    shutdown deadline; return the worker, the ids in the file and the ids in the spill files.
    """
    path = tmp / "out.jsonl"
    executor = CutExecutor(cut, begun)

    async def main() -> SinkWorker:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(executor)
        options = WorkerOptions(spill_dir=tmp, min_backoff=0.001, max_backoff=0.002)
        worker = SinkWorker(FileSink(path), options, Counters())
        worker.start()
        assert worker.task is not None
        task = worker.task
        executor.cancel = task.cancel
        for batch in batches:
            worker.submit(batch)
        with pytest.raises(asyncio.CancelledError):
            await task
        for job in executor.held:  # the held write runs after the cut: it must not write
            job()
        await worker.sink.close()
        return worker

    worker = asyncio.run(main())
    in_file = [log.id for log in read_logs(path)] if path.exists() else []
    in_spill = [log.id for p in tmp.glob("*.spill.jsonl") for log in read_logs(p, rotated=False)]
    return worker, in_file, in_spill


class TestCutWrite:
    @settings(max_examples=40, deadline=None)
    @given(
        sizes=st.lists(st.integers(1, 30), min_size=1, max_size=5),
        cut=st.integers(1, 5),
        begun=st.booleans(),
    )
    def test_deadline_cut_counts_each_log_once(
        self, sizes: list[int], cut: int, begun: bool
    ) -> None:
        """
        The shutdown deadline cancels the worker during any batch's write, before or
        after its thread began: every log is in the file or in a spill file, never
        both, and the counters say which (written = lines in the file, spilled = lines
        in the spill files).
        """
        import tempfile

        logs = make_logs(sum(sizes))
        batches, start = [], 0
        for n in sizes:
            batches.append(logs[start : start + n])
            start += n
        cut = min(cut, len(batches))
        with tempfile.TemporaryDirectory() as tmp:
            worker, in_file, in_spill = run(Path(tmp), batches, cut, begun)
        ids = [log.id for log in logs]
        assert len(in_file) == len(set(in_file)) and len(in_spill) == len(set(in_spill))
        assert not set(in_file) & set(in_spill), "a log both written and spilled"
        assert set(in_file) | set(in_spill) == set(ids)
        c = worker.counters
        assert c.written.get("file-out.jsonl", 0) == len(in_file)
        assert c.spilled == len(in_spill) and c.dropped == 0
        cut_batch = {log.id for log in batches[cut - 1]}
        assert cut_batch <= set(in_file) if begun else cut_batch <= set(in_spill)
