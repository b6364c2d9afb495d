"""
SQLSink throughput against the raw drivers (issue #9).

Rows/s of ``SQLSink.write`` (logs and calls rows together, row building included)
against the same rows inserted in one transaction by:

* SQLite: stdlib ``sqlite3.executemany`` (same schema, same WAL pragmas);
* PostgreSQL: asyncpg ``copy_records_to_table`` and ``executemany``;
* MariaDB: asyncmy ``executemany`` (multi-row INSERT).

Usage::

    python benchmarks/bench_sql.py [--logs 20000] [--calls 3] [--repeat 3]
        [--postgres URL] [--mysql URL] [--no-postgres] [--no-mysql]

Prints a Markdown table. The target of issue #9: SQLSink on SQLite at least 0.5x raw
``sqlite3.executemany``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from asynctrack import Call, Log, SQLSink

POSTGRES_URL = os.environ.get(
    "ASYNCTRACK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("ASYNCTRACK_TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306/test")
COLUMNS = {"user": "string(64)"}


def make_logs(n: int, calls: int) -> list[Log]:
    """
    ``n`` logs of ``calls`` calls each, with typical params, data and info.
    """
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    logs = []
    for i in range(n):
        logs.append(
            Log(
                id=f"{i:032x}",
                started_at=base + dt.timedelta(milliseconds=i),
                duration_us=1500 + i % 1000,
                info={"user": f"user{i % 500}", "app_version": "1.4.2"},
                calls=[
                    Call(
                        seq=s,
                        depth=s,
                        function=f"shop.views.step{s}",
                        tracker="shop.views",
                        params={"cart_id": i, "item": "sku-123", "qty": 2},
                        data={"rows": s} if s else {},
                        offset_us=100 * s,
                        duration_us=1000 - 100 * s,
                        status="ok",
                    )
                    for s in range(calls)
                ],
            )
        )
    return logs


Case = tuple[str, Callable[[], Awaitable[Any]], Callable[[Any], Any]]


async def measure(repeat: int, cases: list[Case]) -> list[tuple[str, float]]:
    """
    Best wall time of each case's ``run(setup())`` (setup not timed); the cases take
    turns in every round, so that a busy machine slows them alike.
    """
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(repeat):
        for name, setup, run in cases:
            state = await setup()
            t0 = time.perf_counter()
            result = run(state)
            if asyncio.iscoroutine(result):
                await result
            times[name].append(time.perf_counter() - t0)
    return [(name, min(times[name])) for name, _, _ in cases]


async def sink_rows(url: str, logs: list[Log]) -> tuple[list[Any], list[Any], SQLSink]:
    """
    The exact rows SQLSink would insert for ``logs`` (its own row builder).
    """
    sink = SQLSink(url, table_prefix=f"b{uuid.uuid4().hex[:8]}_", columns=COLUMNS)
    await sink.open()
    assert sink._plan is not None
    log_rows, call_rows, _ = sink._rows(sink._plan, logs)
    return log_rows, call_rows, sink


def sink_rows_of(plan: Any, logs: list[Log]) -> tuple[list[Any], list[Any]]:
    """
    The rows of one batch, built as SQLSink builds them (on a throwaway sink state).
    """
    sink = SQLSink("sqlite+aiosqlite://")
    log_rows, call_rows, _ = sink._rows(plan, logs)
    return log_rows, call_rows


async def drop(sink: SQLSink) -> None:
    """
    Drop the sink's tables and close it.
    """
    await sink.open()
    assert sink.engine is not None
    async with sink.engine.begin() as conn:
        await conn.run_sync(lambda c: sink.calls_table.drop(c, checkfirst=True))
        await conn.run_sync(lambda c: sink.logs_table.drop(c, checkfirst=True))
    await sink.close()


async def bench_sqlite(logs: list[Log], repeat: int, batch: int) -> list[tuple[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench_sql_"))
    log_rows, call_rows, probe = await sink_rows(f"sqlite+aiosqlite:///{tmp / 'probe.db'}", logs)
    plan = probe._plan
    assert plan is not None
    await probe.close()
    dialect = sa.create_engine("sqlite://").dialect
    counter = [0]

    def fresh_file() -> Path:
        counter[0] += 1
        return tmp / f"run{counter[0]}.db"

    async def raw_setup() -> sqlite3.Connection:
        conn = sqlite3.connect(fresh_file(), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for t in (probe.logs_table, probe.calls_table):
            conn.execute(str(sa.schema.CreateTable(t).compile(dialect=dialect)))
            for index in t.indexes:
                conn.execute(str(sa.schema.CreateIndex(index).compile(dialect=dialect)))
        return conn

    def raw_run(conn: sqlite3.Connection) -> None:
        # The very statements and rows SQLSink sends, through the stdlib driver.
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(plan.insert_logs, log_rows)
        conn.executemany(plan.insert_calls, call_rows)
        conn.execute("COMMIT")
        conn.close()

    batches = [sink_rows_of(plan, logs[i : i + batch]) for i in range(0, len(logs), batch)]

    def raw_batches(conn: sqlite3.Connection) -> None:
        for logs_part, calls_part in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(plan.insert_logs, logs_part)
            conn.executemany(plan.insert_calls, calls_part)
            conn.execute("COMMIT")
        conn.close()

    async def sink_setup() -> SQLSink:
        sink = SQLSink(
            f"sqlite+aiosqlite:///{fresh_file()}",
            table_prefix=probe.logs_table.name[:-4],
            columns=COLUMNS,
        )
        await sink.open()
        return sink

    async def sink_one(sink: SQLSink) -> None:
        await sink.write(logs)
        await sink.close()

    async def sink_batches(sink: SQLSink) -> None:
        for i in range(0, len(logs), batch):
            await sink.write(logs[i : i + batch])
        await sink.close()

    return await measure(
        repeat,
        [
            ("sqlite3.executemany, one transaction", raw_setup, raw_run),
            ("SQLSink.write, one batch", sink_setup, sink_one),
            (f"sqlite3.executemany, transactions of {batch} logs", raw_setup, raw_batches),
            (f"SQLSink.write, batches of {batch}", sink_setup, sink_batches),
        ],
    )


async def bench_postgres(
    url: str, logs: list[Log], repeat: int, batch: int
) -> list[tuple[str, float]]:
    log_rows, call_rows, probe = await sink_rows(url, logs)
    plan = probe._plan
    assert plan is not None
    sinks: list[SQLSink] = [probe]

    async def fresh_sink() -> SQLSink:
        sink = SQLSink(url, table_prefix=f"b{uuid.uuid4().hex[:8]}_", columns=COLUMNS)
        await sink.open()
        sinks.append(sink)
        return sink

    async def driver_run(sink: SQLSink, copy: bool) -> None:
        assert sink.engine is not None
        async with sink.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            async with driver.transaction():
                if copy:
                    cols = plan.log_columns
                    await driver.copy_records_to_table(
                        sink.logs_table.name, columns=cols, records=log_rows
                    )
                    await driver.copy_records_to_table(
                        sink.calls_table.name, columns=plan.call_columns, records=call_rows
                    )
                else:
                    assert sink._plan is not None
                    await driver.executemany(sink._plan.insert_logs, log_rows)
                    await driver.executemany(sink._plan.insert_calls, call_rows)

    async def copy_run(sink: SQLSink) -> None:
        await driver_run(sink, True)

    async def many_run(sink: SQLSink) -> None:
        await driver_run(sink, False)

    async def sink_one(sink: SQLSink) -> None:
        await sink.write(logs)

    async def sink_batches(sink: SQLSink) -> None:
        for i in range(0, len(logs), batch):
            await sink.write(logs[i : i + batch])

    try:
        return await measure(
            repeat,
            [
                ("asyncpg copy_records_to_table, one transaction", fresh_sink, copy_run),
                ("asyncpg executemany ON CONFLICT, one transaction", fresh_sink, many_run),
                ("SQLSink.write, one batch", fresh_sink, sink_one),
                (f"SQLSink.write, batches of {batch}", fresh_sink, sink_batches),
            ],
        )
    finally:
        for sink in sinks:
            await drop(sink)


async def bench_mysql(
    url: str, logs: list[Log], repeat: int, batch: int
) -> list[tuple[str, float]]:
    log_rows, call_rows, probe = await sink_rows(url, logs)
    sinks: list[SQLSink] = [probe]

    async def fresh_sink() -> SQLSink:
        sink = SQLSink(url, table_prefix=f"b{uuid.uuid4().hex[:8]}_", columns=COLUMNS)
        await sink.open()
        sinks.append(sink)
        return sink

    async def driver_run(sink: SQLSink) -> None:
        assert sink.engine is not None
        assert sink._plan is not None
        plan = sink._plan
        async with sink.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            async with driver.cursor() as cursor:
                await cursor.executemany(plan.insert_logs, log_rows)
                await cursor.executemany(plan.insert_calls, call_rows)
            await driver.commit()

    async def sink_one(sink: SQLSink) -> None:
        await sink.write(logs)

    async def sink_batches(sink: SQLSink) -> None:
        for i in range(0, len(logs), batch):
            await sink.write(logs[i : i + batch])

    try:
        return await measure(
            repeat,
            [
                ("asyncmy executemany, one transaction", fresh_sink, driver_run),
                ("SQLSink.write, one batch", fresh_sink, sink_one),
                (f"SQLSink.write, batches of {batch}", fresh_sink, sink_batches),
            ],
        )
    finally:
        for sink in sinks:
            await drop(sink)


def table(title: str, rows: int, results: list[tuple[str, float]]) -> str:
    baseline = rows / results[0][1]
    lines = [
        f"### {title} ({rows:,} rows)",
        "",
        "| method | seconds | rows/s | ratio to first |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in results:
        rate = rows / seconds
        lines.append(f"| {name} | {seconds:.3f} | {rate:,.0f} | {rate / baseline:.2f} |")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    logs = make_logs(args.logs, args.calls)
    rows = args.logs * (1 + args.calls)
    for log in logs:  # materialise lazily computed fields once, outside the timings
        _ = log.id
    print(f"{args.logs:,} logs x {args.calls} calls, best of {args.repeat}\n")
    print(table("SQLite", rows, await bench_sqlite(logs, args.repeat, args.batch)))
    if not args.no_postgres:
        print()
        print(
            table(
                "PostgreSQL",
                rows,
                await bench_postgres(args.postgres, logs, args.repeat, args.batch),
            )
        )
    if not args.no_mysql:
        print()
        print(table("MariaDB", rows, await bench_mysql(args.mysql, logs, args.repeat, args.batch)))


def main(argv: list[str] | None = None) -> None:
    """
    Run the benchmark and print a Markdown table.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--logs", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--mysql", default=MYSQL_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-mysql", action="store_true")
    asyncio.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
