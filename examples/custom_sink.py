"""
A custom sink: one CSV row per log (time, root function, status, duration, user).

Subclass asynctrack.Sink and implement write(); open() and close() are optional.
All three run in asynctrack's background thread, on its own event loop, so blocking
file I/O goes to a worker thread. Run it:

    python examples/custom_sink.py
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import asynctrack
from asynctrack import Log, Sink


class CSVSink(Sink):
    """
    Append one summary row per log to a CSV file.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    @property
    def name(self) -> str:
        # Names this sink's counters in stats() and its spill file if it fails.
        return f"csv-{self.path.name}"

    async def open(self) -> None:
        self._file = await asyncio.to_thread(self.path.open, "a", newline="", encoding="utf-8")

    async def write(self, logs: Sequence[Log]) -> None:
        # Raising here means "retry this batch": asynctrack retries, then spills the
        # batch to disk and replays it when the sink works again.
        rows = [
            (
                log.started_at.isoformat(),
                log.calls[0].function,
                log.calls[0].status,
                log.duration_us,
                log.info.get("user", ""),
            )
            for log in logs
        ]
        await asyncio.to_thread(self._append, rows)

    def _append(self, rows: Sequence[tuple[object, ...]]) -> None:
        assert self._file is not None
        csv.writer(self._file).writerows(rows)
        self._file.flush()

    async def close(self) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None


tracker = asynctrack.get_tracker("shop")


@tracker.probe
async def checkout(user: str, cart_id: int) -> str:
    asynctrack.add_info("user", user)
    await asyncio.sleep(0.01)
    return "paid"


async def main() -> None:
    asynctrack.configure(sinks=[CSVSink("activity.csv")])
    await asyncio.gather(checkout("alice", 1), checkout("bob", 2))
    await asynctrack.shutdown()


asyncio.run(main())

with open("activity.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
for row in rows:
    print(row)
assert sorted(row[4] for row in rows) == ["alice", "bob"]
assert all(row[2] == "ok" for row in rows)
