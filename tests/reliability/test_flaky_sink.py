"""
Flaky and poisoned sinks (issue #7, item 6): failures never reach the application,
retries deliver every log once, the dispatcher survives, a poison log is set aside.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from pathlib import Path

import asynctrack
from asynctrack import Log
from asynctrack._delivery import pipeline as _pipeline
from asynctrack.sinks import FileSink, read_logs
from asynctrack.testing import capture
from tests.conftest import Configure

from . import _support as s

tr = asynctrack.get_tracker("rel.flaky")


@tr.probe
def work(i: int) -> int:
    return i


class EveryThird(asynctrack.Sink):
    """
    Fails every third write (before writing anything); records the batches it took.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.batches: list[list[str]] = []

    @property
    def name(self) -> str:
        return "every-third"

    async def write(self, logs: Sequence[Log]) -> None:
        self.calls += 1
        if self.calls % 3 == 0:
            self.failures += 1
            raise ConnectionResetError("injected: every third batch fails")
        self.batches.append([log.id for log in logs])


class PoisonFile(FileSink):
    """
    A FileSink that refuses any batch holding the log of ``work(poison)``.
    """

    def __init__(self, path: Path, poison: int) -> None:
        super().__init__(path)
        self.poison = poison

    async def write(self, logs: Sequence[Log]) -> None:
        if any(log.calls[0].params.get("i") == self.poison for log in logs):
            raise ValueError("value too long for type character varying(64)")
        await super().write(logs)


class TestFlakySink:
    def test_every_third_batch_fails_over_1000_batches(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        A sink failing every third write, over 1,000+ batches of 10: the application
        sees no exception, each failed batch is retried and written once, nothing is
        spilled or dropped, and the dispatcher keeps working afterwards.
        """
        sink = EveryThird()
        configured(sink, batch_size=10, flush_interval=0.01, max_backoff=0.002, retry_attempts=3)
        with capture() as produced:
            for i in range(10_000):
                assert work(i) == i
        asynctrack.flush_sync(timeout=60)
        written = [i for batch in sink.batches for i in batch]
        s.figure("flaky", batches=len(sink.batches), failures=sink.failures)
        assert len(sink.batches) >= 1000
        assert len(written) == len(set(written)) == 10_000
        assert set(written) == {log.id for log in produced}
        st = asynctrack.stats()
        # A failure is retried after a backoff, or (while a flush waits) at once by
        # writing the batch's two halves: either way it is written, never set aside.
        assert st.failed == sink.failures > 300 and st.retried <= st.failed
        assert st.spilled == 0 and st.dropped == 0 and st.dead_lettered == 0
        assert not list(tmp_path.glob("*.jsonl")), "no spill or dead-letter file"
        pipeline = _pipeline.current()
        assert pipeline is not None and pipeline.dispatcher.alive
        work(-1)
        asynctrack.flush_sync(timeout=10)
        assert sum(map(len, sink.batches)) == 10_001

    def test_one_poison_log_out_of_500_goes_to_dead_letters(self, tmp_path: Path) -> None:
        """
        One log the sink always refuses: it alone lands in the dead-letter file (0600),
        the other 499 in the output file, each once.
        """
        out = tmp_path / "out.jsonl"
        spill = tmp_path / "spill"
        asynctrack.configure(
            sinks=[PoisonFile(out, 250)],
            spill_dir=spill,
            retry_attempts=1,
            max_backoff=0.01,
            batch_size=64,
        )
        with capture() as produced:
            for i in range(500):
                work(i)
        asynctrack.flush_sync(timeout=60)
        by_param = {log.calls[0].params["i"]: log.id for log in produced}
        ids = [log.id for log in read_logs(out)]
        assert len(ids) == len(set(ids)) == 499
        assert set(ids) == set(by_param.values()) - {by_param[250]}
        (dead,) = spill.glob("*.dead.jsonl")
        assert [json.loads(x)["id"] for x in dead.read_text().splitlines()] == [by_param[250]]
        assert stat.S_IMODE(dead.stat().st_mode) == 0o600
        st = asynctrack.stats()
        assert st.dead_lettered == 1 and st.dropped == 0 and st.spilled == 0
