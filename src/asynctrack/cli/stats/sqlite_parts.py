"""
Per-function durations from a SQLite database, streamed and aggregated in Python, a
large calls table split by rowid between worker processes (``asynctrack stats``).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asynctrack.cli.stats.db import SQLiteDatabase
from asynctrack.cli.stats.parallel import cpu_count, start_parts
from asynctrack.cli.stats.percentiles import (
    DurationAccumulator,
)

if TYPE_CHECKING:
    from asynctrack.cli.stats.sql import Tables

__all__ = ["PART_ROWS", "SQLITE_BATCH", "accumulate", "sqlite_part", "start_sqlite_durations"]

#: Rows fetched from SQLite at a time.
SQLITE_BATCH = 10_000


def accumulate(
    batch: Sequence[tuple[Any, ...]],
    accs: dict[str, DurationAccumulator],
    appends: dict[str, Callable[[int], None]],
    exact: bool,
) -> None:
    """
    Add ``(function, error flag, duration)`` rows to the per-function accumulators.

    ``appends`` caches each function's bound ``buf.append``.
    """
    for function, failed, duration in batch:
        append = appends.get(function)
        if append is None:
            acc = accs[function] = DurationAccumulator(exact)
            append = appends[function] = acc.buf.append
        append(duration)
        if failed:
            accs[function].errors += 1
    for acc in accs.values():
        acc.maybe_fold()


@dataclass(frozen=True)
class _RowRange:
    """
    The calls of a SQLite query whose rowid is in ``[low, high)`` (None: all of them).
    """

    uri: str
    sql: str
    params: dict[str, Any]
    exact: bool
    low: int | None = None
    high: int | None = None


#: A SQLite calls table is read by one process per CPU, each at least this many rows.
PART_ROWS = 250_000


def sqlite_part(part: _RowRange) -> dict[str, DurationAccumulator]:
    """
    Stream one rowid range of a SQLite query into accumulators (in a worker process).
    """
    params = dict(part.params)
    sql = part.sql
    if part.low is not None:
        params["row_low"], params["row_high"] = part.low, part.high
    conn = sqlite3.connect(part.uri, uri=True)
    try:
        cursor = conn.execute(sql, params)
        accs: dict[str, DurationAccumulator] = {}
        appends: dict[str, Callable[[int], None]] = {}
        while batch := cursor.fetchmany(SQLITE_BATCH):
            accumulate(batch, accs, appends, part.exact)
    finally:
        conn.close()
    for acc in accs.values():
        acc.fold()  # what goes back to the parent is the histogram, not the durations
    return accs


async def start_sqlite_durations(
    db: SQLiteDatabase,
    t: Tables,
    sql: str,
    conds: list[str],
    params: dict[str, Any],
    exact: bool,
) -> Callable[[], dict[str, DurationAccumulator]]:
    """
    Start streaming ``(function, error flag, duration)`` from SQLite, one rowid range
    per CPU; return the function that waits for the merged accumulators.

    SQLite's ``GROUP BY`` sorts every row (measured 3x slower than streaming them), so
    the rows are aggregated in Python; a large table is split by rowid between worker
    processes (SQLite reads a rowid range directly), whose results are merged.
    """
    parts = [_RowRange(db.uri, sql, params, exact)]
    cpus = cpu_count()
    if cpus > 1:
        try:
            # Two queries: SQLite reads MIN or MAX alone from the B-tree's ends, but
            # both together with a full scan.
            low = (await db.fetch(f"SELECT MIN(rowid) FROM {t.calls}"))[0][0]
            high = (await db.fetch(f"SELECT MAX(rowid) FROM {t.calls}"))[0][0]
        except sqlite3.Error:  # a WITHOUT ROWID table: one part
            low = high = None
        if low is not None and high is not None:
            pieces = min(cpus, (high - low + 1) // PART_ROWS)
            if pieces > 1:
                # The query ends with its WHERE clause (if any).
                ranged = sql + (" AND" if conds else " WHERE")
                ranged += " c.rowid >= :row_low AND c.rowid < :row_high"
                bounds = [low + (high + 1 - low) * i // pieces for i in range(pieces + 1)]
                parts = [
                    _RowRange(db.uri, ranged, params, exact, a, b)
                    for a, b in itertools.pairwise(bounds)
                ]
    pending = start_parts(sqlite_part, parts)

    def collect() -> dict[str, DurationAccumulator]:
        accs: dict[str, DurationAccumulator] = {}
        for result in pending():
            for function, acc in result.items():
                mine = accs.get(function)
                if mine is None:
                    accs[function] = acc
                else:
                    mine.merge(acc)
        return accs

    return collect
