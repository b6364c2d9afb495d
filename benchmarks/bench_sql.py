"""
SQLSink throughput against the raw drivers (issue #9).

Rows/s of ``SQLSink.write`` (logs and calls rows together, row building included)
against the same rows inserted in one transaction by:

* SQLite: stdlib ``sqlite3.executemany`` (same schema, same WAL pragmas);
* PostgreSQL: asyncpg ``copy_records_to_table`` and ``executemany``;
* MariaDB: asyncmy ``executemany`` (multi-row INSERT).

Usage::

    python -m benchmarks.bench_sql [--quick | --smoke] [--logs 20000] [--calls 3]
        [--batch 512] [--postgres URL] [--mysql URL] [--no-postgres] [--no-mysql]
        [pyperf options: -p 6, -n 3, -o result.json, ...]

Each case is timed with pyperf (``_timing.py``): worker processes, each with its own
event loop, run the case's untimed setup (a new database file or new tables), the
timed write of the whole batch, and an untimed teardown; the figure is the median time
per row. Prints a Markdown table per database. The target of issue #9: SQLSink on
SQLite at least 0.5x raw ``sqlite3.executemany``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from asynctrack import Call, Log, SQLSink
from asynctrack.sinks._sql.rows import rows as sink_rows_for

from ._timing import Option, Variant, measure, now, parse_args

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


#: One thing to time: its name, an untimed setup giving the state, the timed run on
#: that state, and an untimed teardown (tables dropped, files removed).
Case = tuple[
    str,
    Callable[[], Awaitable[Any]],
    Callable[[Any], Awaitable[None] | None],
    Callable[[Any], Awaitable[None] | None],
]


def timed(loop: asyncio.AbstractEventLoop, case: Case) -> Callable[[int], int]:
    """
    A :class:`~benchmarks._timing.Variant` run for ``case``: ``n`` rounds of setup, run
    and teardown on the group's event loop; only the runs are timed.
    """
    _, setup, run, teardown = case

    async def rounds(n: int) -> int:
        elapsed = 0
        for _ in range(n):
            state = await setup()
            t0 = now()
            result = run(state)
            if result is not None:
                await result
            elapsed += now() - t0
            done = teardown(state)
            if done is not None:
                await done
        return elapsed

    return lambda n: loop.run_until_complete(rounds(n))


async def sink_rows(url: str, logs: list[Log]) -> tuple[list[Any], list[Any], SQLSink]:
    """
    The exact rows SQLSink would insert for ``logs`` (its own row builder).
    """
    sink = SQLSink(url, table_prefix=f"b{uuid.uuid4().hex[:8]}_", columns=COLUMNS)
    await sink.open()
    assert sink._plan is not None
    log_rows, call_rows, _ = sink_rows_for(sink._plan, logs)
    return log_rows, call_rows, sink


def sink_rows_of(plan: Any, logs: list[Log]) -> tuple[list[Any], list[Any]]:
    """
    The rows of one batch, built as SQLSink builds them.
    """
    log_rows, call_rows, _ = sink_rows_for(plan, logs)
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


class Lazy:
    """
    The rows and plan a backend's cases share, prepared on first use: a pyperf worker
    process runs one case, and prepares only what that case needs.
    """

    def __init__(self, prepare: Callable[[], Awaitable[Any]]) -> None:
        self._prepare = prepare
        self._value: Any = None

    async def get(self) -> Any:
        if self._value is None:
            self._value = await self._prepare()
        return self._value


def sqlite_cases(logs: list[Log], batch: int, tmp: Path) -> list[Case]:
    """
    Raw ``sqlite3.executemany`` and SQLSink on SQLite, each run on a new database file.
    """
    dialect = sa.create_engine("sqlite://").dialect
    files = itertools.count()

    async def prepare() -> tuple[Any, Any, list[Any], list[Any], list[Any]]:
        log_rows, call_rows, probe = await sink_rows(f"sqlite+aiosqlite:///{tmp / 'p.db'}", logs)
        plan = probe._plan
        await probe.close()
        batches = [sink_rows_of(plan, logs[i : i + batch]) for i in range(0, len(logs), batch)]
        return probe, plan, log_rows, call_rows, batches

    shared = Lazy(prepare)

    def fresh_file() -> Path:
        return tmp / f"run{next(files)}.db"

    def remove(state: Any) -> None:
        path = Path(state[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def raw_setup() -> tuple[sqlite3.Connection, Path, Any]:
        probe, plan, log_rows, call_rows, batches = await shared.get()
        path = fresh_file()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for t in (probe.logs_table, probe.calls_table):
            conn.execute(str(sa.schema.CreateTable(t).compile(dialect=dialect)))
            for index in t.indexes:
                conn.execute(str(sa.schema.CreateIndex(index).compile(dialect=dialect)))
        return conn, path, (plan, log_rows, call_rows, batches)

    def raw_run(state: Any) -> None:
        # The very statements and rows SQLSink sends, through the stdlib driver.
        conn, _, (plan, log_rows, call_rows, _) = state
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(plan.insert_logs, log_rows)
        conn.executemany(plan.insert_calls, call_rows)
        conn.execute("COMMIT")
        conn.close()

    def raw_batches(state: Any) -> None:
        conn, _, (plan, _, _, batches) = state
        for logs_part, calls_part in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(plan.insert_logs, logs_part)
            conn.executemany(plan.insert_calls, calls_part)
            conn.execute("COMMIT")
        conn.close()

    async def sink_setup() -> tuple[SQLSink, Path]:
        probe = (await shared.get())[0]
        path = fresh_file()
        sink = SQLSink(
            f"sqlite+aiosqlite:///{path}", table_prefix=probe.logs_table.name[:-4], columns=COLUMNS
        )
        await sink.open()
        return sink, path

    async def sink_one(state: tuple[SQLSink, Path]) -> None:
        await state[0].write(logs)
        await state[0].close()

    async def sink_batches(state: tuple[SQLSink, Path]) -> None:
        for i in range(0, len(logs), batch):
            await state[0].write(logs[i : i + batch])
        await state[0].close()

    return [
        ("sqlite3.executemany, one transaction", raw_setup, raw_run, remove),
        ("SQLSink.write, one batch", sink_setup, sink_one, remove),
        (f"sqlite3.executemany, transactions of {batch} logs", raw_setup, raw_batches, remove),
        (f"SQLSink.write, batches of {batch}", sink_setup, sink_batches, remove),
    ]


def server_cases(url: str, logs: list[Log], batch: int, postgres: bool) -> list[Case]:
    """
    The driver's own bulk insert and SQLSink on PostgreSQL or MariaDB, each run into
    new tables, dropped after the run.
    """

    async def prepare() -> tuple[list[Any], list[Any]]:
        log_rows, call_rows, probe = await sink_rows(url, logs)
        await drop(probe)
        return log_rows, call_rows

    shared = Lazy(prepare)

    async def fresh_sink() -> tuple[SQLSink, list[Any], list[Any]]:
        log_rows, call_rows = await shared.get()
        sink = SQLSink(url, table_prefix=f"b{uuid.uuid4().hex[:8]}_", columns=COLUMNS)
        await sink.open()
        return sink, log_rows, call_rows

    async def dropped(state: tuple[SQLSink, list[Any], list[Any]]) -> None:
        await drop(state[0])

    async def pg_driver(state: tuple[SQLSink, list[Any], list[Any]], copy: bool) -> None:
        sink, log_rows, call_rows = state
        assert sink.engine is not None
        assert sink._plan is not None
        plan = sink._plan
        async with sink.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            async with driver.transaction():
                if copy:
                    await driver.copy_records_to_table(
                        sink.logs_table.name, columns=plan.log_columns, records=log_rows
                    )
                    await driver.copy_records_to_table(
                        sink.calls_table.name, columns=plan.call_columns, records=call_rows
                    )
                else:
                    await driver.executemany(plan.insert_logs, log_rows)
                    await driver.executemany(plan.insert_calls, call_rows)

    async def copy_run(state: tuple[SQLSink, list[Any], list[Any]]) -> None:
        await pg_driver(state, True)

    async def many_run(state: tuple[SQLSink, list[Any], list[Any]]) -> None:
        await pg_driver(state, False)

    async def mysql_driver(state: tuple[SQLSink, list[Any], list[Any]]) -> None:
        sink, log_rows, call_rows = state
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

    async def sink_one(state: tuple[SQLSink, list[Any], list[Any]]) -> None:
        await state[0].write(logs)

    async def sink_batches(state: tuple[SQLSink, list[Any], list[Any]]) -> None:
        for i in range(0, len(logs), batch):
            await state[0].write(logs[i : i + batch])

    raw: list[Case] = (
        [
            ("asyncpg copy_records_to_table, one transaction", fresh_sink, copy_run, dropped),
            ("asyncpg executemany ON CONFLICT, one transaction", fresh_sink, many_run, dropped),
        ]
        if postgres
        else [("asyncmy executemany, one transaction", fresh_sink, mysql_driver, dropped)]
    )
    return [
        *raw,
        ("SQLSink.write, one batch", fresh_sink, sink_one, dropped),
        (f"SQLSink.write, batches of {batch}", fresh_sink, sink_batches, dropped),
    ]


def table(title: str, rows: int, results: list[tuple[str, float]]) -> str:
    """
    One backend's Markdown table from ``(method, ns per row)``, first row the baseline.
    """
    baseline = results[0][1]
    lines = [
        f"### {title} ({rows:,} rows)",
        "",
        "| method | seconds | rows/s | ratio to first |",
        "|---|---:|---:|---:|",
    ]
    for name, ns_per_row in results:
        rate = 1e9 / ns_per_row
        seconds = ns_per_row * rows / 1e9
        lines.append(f"| {name} | {seconds:.3f} | {rate:,.0f} | {baseline / ns_per_row:.2f} |")
    return "\n".join(lines)


#: The group's own options (worker processes receive them too).
OPTIONS: list[Option] = [
    ("--logs", {"type": int, "default": 20_000, "help": "logs per batch (20,000)"}),
    ("--calls", {"type": int, "default": 3, "help": "calls per log"}),
    ("--batch", {"type": int, "default": 512, "help": "logs per write in the batched cases"}),
    ("--postgres", {"default": POSTGRES_URL, "help": "PostgreSQL URL"}),
    ("--mysql", {"default": MYSQL_URL, "help": "MariaDB URL"}),
    ("--no-postgres", {"action": "store_true", "help": "skip PostgreSQL"}),
    ("--no-mysql", {"action": "store_true", "help": "skip MariaDB"}),
]


#: Each value is a whole batch (a second or so): fewer worker processes than the
#: per-call groups, which time operations of microseconds.
MODES: dict[str, dict[str, float]] = {
    "full": {"processes": 3, "values": 3},
    "quick": {"processes": 2, "values": 2},
}


def main(argv: list[str] | None = None) -> None:
    """
    Time every case with pyperf and print a Markdown table per database.
    """
    args = parse_args(
        __doc__.splitlines()[1],
        argv,
        module=__spec__.name,
        clock="wall",
        options=OPTIONS,
        modes=MODES,
    )
    settings = args.settings
    n_logs = min(args.logs, 200) if settings.smoke else args.logs
    logs = make_logs(n_logs, args.calls)
    rows = n_logs * (1 + args.calls)
    for log in logs:  # materialise lazily computed fields once, outside the timings
        _ = log.id
    loop = asyncio.new_event_loop()
    tmp = tempfile.TemporaryDirectory(prefix="bench_sql_")
    backends = [("SQLite", sqlite_cases(logs, args.batch, Path(tmp.name)))]
    if not args.no_postgres:
        backends.append(("PostgreSQL", server_cases(args.postgres, logs, args.batch, True)))
    if not args.no_mysql:
        backends.append(("MariaDB", server_cases(args.mysql, logs, args.batch, False)))
    variants = [
        Variant(f"{title}: {case[0]}", timed(loop, case), per_iter=rows)
        for title, cases in backends
        for case in cases
    ]
    # A worker process measures its one variant and exits inside measure().
    results = measure(variants, settings)
    loop.close()
    tmp.cleanup()
    print(f"{n_logs:,} logs x {args.calls} calls; {settings.describe()}; wall clock\n")
    for title, cases in backends:
        figures = [(name, results[f"{title}: {name}"].median) for name, *_ in cases]
        print(table(title, rows, figures))
        print()


if __name__ == "__main__":
    main()
