"""
A failed batch is split to tell a poison log from an outage (#14). An outage that
begins while the split is under way is an outage at every depth of the split: what it
kept from the sink is spilled and replayed, never set aside as poison. (The SQLite
disk-full test lost exactly 50 logs this way: a batch of 100 whose first half went
through before the disk filled had its whole second half dead-lettered.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log
from asynctrack._delivery.counters import Counters
from asynctrack._delivery.intake import Barrier
from asynctrack._delivery.worker import SinkWorker, WorkerOptions
from asynctrack.testing import capture
from tests.helpers import wait_for_async

tr = asynctrack.get_tracker("tests.split_outage")


@tr.probe
def work(n: int) -> int:
    return n


def make_logs(n: int) -> list[Log]:
    with capture() as logs:
        for i in range(n):
            work(i)
    return list(logs)


class OutageSink(asynctrack.Sink):
    """
    Refuses its first write (the batch; the flush waiting behind it cuts its retries
    short, so the split begins at once), accepts the writes before call number
    ``down_from``, and refuses every write from then on while ``down``.
    """

    def __init__(self, down_from: int) -> None:
        self.down_from = down_from
        self.down = True
        self.calls = 0
        self.ids: list[str] = []

    @property
    def name(self) -> str:
        return "outage"

    async def write(self, logs: Sequence[Log]) -> None:
        self.calls += 1
        if self.calls == 1 or (self.down and self.calls >= self.down_from):
            raise ConnectionError("injected: database or disk is full")
        self.ids.extend(log.id for log in logs)


async def deliver(logs: list[Log], sink: OutageSink, spill: Path) -> tuple[SinkWorker, set[str]]:
    """
    Hand ``logs`` to a worker as one batch, let the split run into the outage, end
    the outage and let the spill replay; return the worker and the dead-lettered ids.
    """
    options = WorkerOptions(
        retry_attempts=1, min_backoff=0.001, max_backoff=0.002, spill_dir=spill, replay_batch=7
    )
    worker = SinkWorker(sink, options, Counters())
    worker.start()
    worker.submit(list(logs))
    barrier = Barrier()
    barrier.expect(1)
    worker.submit_barrier(barrier)
    # The batch is settled (written, spilled or set aside) before the barrier passes.
    assert await asyncio.to_thread(barrier.wait, 30)
    sink.down = False
    assert await wait_for_async(lambda: not worker.spill.has_backlog, 60)
    worker.stop(asyncio.get_running_loop().time() + 5)
    assert worker.task is not None
    await worker.task
    dead = spill / "asynctrack-outage.dead.jsonl"
    lines = dead.read_text().splitlines() if dead.exists() else []
    return worker, {json.loads(line)["id"] for line in lines}


class TestOutageDuringSplit:
    def test_outage_after_the_first_half_condemns_nothing(self, tmp_path: Path) -> None:
        """
        A batch of 100: the first half is written, then the sink goes down (both
        quarters of the second half fail): the second half is spilled and replayed
        once the sink is back, nothing is dead-lettered, every log written once.
        """
        logs = make_logs(100)
        sink = OutageSink(down_from=3)  # call 2: the first half; 3: the second
        worker, dead = asyncio.run(deliver(logs, sink, tmp_path))
        c = worker.counters
        assert dead == set() and c.dead_lettered == 0
        assert sorted(sink.ids) == sorted(log.id for log in logs)
        assert c.spilled == 50 and c.replayed == 50 and c.dropped == 0
        assert c.written == {"outage": 100}

    @settings(max_examples=60, deadline=None)
    @given(n=st.integers(2, 40), down_from=st.integers(2, 60))
    def test_an_outage_starting_anywhere_in_the_split(self, n: int, down_from: int) -> None:
        """
        Whatever write of the split the outage begins at: every log ends in the sink
        exactly once or in the dead-letter file, never both; the only log the outage
        can condemn is one being retried alone as it began (a lone log refused while
        the rest went through is what a poison log looks like); the counters say what
        happened: written once each, every spilled log replayed.
        """
        import tempfile

        logs = make_logs(n)
        sink = OutageSink(down_from=down_from)
        with tempfile.TemporaryDirectory() as tmp:
            worker, dead = asyncio.run(deliver(logs, sink, Path(tmp)))
        ids = [log.id for log in logs]
        assert len(sink.ids) == len(set(sink.ids)), "a log written twice"
        assert set(sink.ids) | dead == set(ids) and not set(sink.ids) & dead
        assert len(dead) <= 1
        c = worker.counters
        assert c.dead_lettered == len(dead) and c.dropped == 0
        assert c.written == ({"outage": len(sink.ids)} if sink.ids else {})
        assert c.spilled == c.replayed
