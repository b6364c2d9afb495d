"""
``asynctrack stats`` on 1,000,000 logs x 3 calls (50 functions, 2,000 users).

Generates the same logs as a JSON-lines file, a SQLite database and PostgreSQL
tables (MariaDB with ``--backends ...,mysql``), then times ``asynctrack stats`` on
each, every run in its own process: wall time, and peak memory from the child's
``rusage`` (``ru_maxrss``). Targets (issue #8): PostgreSQL <= 1 s, SQLite <= 2 s,
JSON lines <= 4 s, peak memory < 150 MB.

Not on pyperf, unlike the per-operation groups: each figure is one whole command over
a million logs (three runs, the median), with the client's CPU time and peak RSS that
pyperf does not take, and pyperf's worker processes would each generate the 1.5 GB of
data again (see docs/performance.md).

Run it alone, it is heavy::

    python benchmarks/bench_stats.py                  # full size
    python benchmarks/bench_stats.py --logs 20000     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import orjson

POSTGRES_URL = os.environ.get(
    "ASYNCTRACK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("ASYNCTRACK_TEST_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306/test")
PREFIX = "bench_stats_"
FUNCTIONS = 50
USERS = 2000
TARGETS = {"postgresql": 1.0, "sqlite": 2.0, "file": 4.0, "mysql": None}
PEAK_MB = 150


# -- data -------------------------------------------------------------------------------------
def generate(n_logs: int, seed: int = 8) -> Iterator[tuple[Any, ...]]:
    """
    Yield ``(id, started_at, duration_us, user, calls)``; calls are 3 tuples
    ``(seq, depth, function, offset_us, duration_us, status, error, params)``.
    """
    rnd = random.Random(seed)
    names = [f"app.module{i % 7}.function_{i:02d}" for i in range(FUNCTIONS)]
    # Some functions are slow, some fast: per-function scale of a log-normal.
    scale = [rnd.uniform(4.0, 9.0) for _ in range(FUNCTIONS)]
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    gauss = rnd.gauss
    randrange = rnd.randrange
    rand = rnd.random
    for i in range(n_logs):
        root = randrange(FUNCTIONS)
        picks = (root, randrange(FUNCTIONS), randrange(FUNCTIONS))
        calls = []
        offset = 0
        for seq, f in enumerate(picks):
            duration = int(2.718281828 ** (scale[f] + gauss(0, 1.0)))
            failed = rand() < 0.02
            calls.append(
                (
                    seq,
                    0 if seq == 0 else 1,
                    names[f],
                    offset,
                    duration,
                    "error" if failed else "ok",
                    "ValueError: simulated" if failed else None,
                    {"doc_id": randrange(100_000)},
                )
            )
            offset += 3
        started = t0 + dt.timedelta(microseconds=i * 2_591)  # ~30 days in all
        total = max(c[4] for c in calls) + 6
        yield f"{i:032x}", started, total, f"user{randrange(USERS):04d}", calls


def write_jsonl(path: str, n_logs: int) -> None:
    """Write the logs in the FileSink's JSON form."""
    dumps = orjson.dumps
    with open(path, "wb") as out:
        buf = bytearray()
        for ident, started, total, user, calls in generate(n_logs):
            buf += dumps(
                {
                    "id": ident,
                    "parent_id": None,
                    "started_at": started.isoformat(timespec="microseconds"),
                    "duration_us": total,
                    "complete": True,
                    "info": {"user": user, "app_version": "1.4.2"},
                    "calls": [
                        {
                            "seq": c[0],
                            "depth": c[1],
                            "function": c[2],
                            "tracker": "app",
                            "level": "DEFAULT",
                            "params": c[7],
                            "data": {},
                            "offset_us": c[3],
                            "duration_us": c[4],
                            "status": c[5],
                            "error": c[6],
                        }
                        for c in calls
                    ],
                }
            )
            buf += b"\n"
            if len(buf) > 1 << 22:
                out.write(buf)
                buf.clear()
        out.write(buf)


def _tables() -> Any:
    from sqlalchemy import (
        JSON,
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Integer,
        MetaData,
        String,
        Table,
        Text,
    )
    from sqlalchemy.dialects import mysql

    md = MetaData()
    stamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    Table(
        f"{PREFIX}logs",
        md,
        Column("id", String(32), primary_key=True),
        Column("parent_id", String(32)),
        Column("started_at", stamp, index=True),
        Column("duration_us", BigInteger),
        Column("complete", Boolean),
        Column("dropped_calls", Integer),
        Column("user", String(64)),
        Column("info", JSON),
    )
    Table(
        f"{PREFIX}calls",
        md,
        Column("log_id", String(32), primary_key=True),
        Column("seq", Integer, primary_key=True),
        Column("depth", Integer),
        Column("function", String(255), index=True),
        Column("tracker", String(255)),
        Column("level", String(16)),
        Column("params", JSON),
        Column("data", JSON),
        Column("offset_us", BigInteger),
        Column("duration_us", BigInteger),
        Column("status", String(16)),
        Column("error", Text),
    )
    return md


def _rows(n_logs: int, stamp: Any) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    info = '{"app_version": "1.4.2"}'
    for ident, started, total, user, calls in generate(n_logs):
        log = (ident, None, stamp(started), total, True, 0, user, info)
        rows = [
            (
                ident,
                c[0],
                c[1],
                c[2],
                "app",
                "DEFAULT",
                orjson.dumps(c[7]).decode(),
                "{}",
                c[3],
                c[4],
                c[5],
                c[6],
            )
            for c in calls
        ]
        yield log, rows


def write_sqlite(path: str, n_logs: int) -> None:
    """Create the SQL sink's tables in a SQLite file and fill them with raw sqlite3."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{path}")
    _tables().create_all(engine)
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    logs: list[tuple[Any, ...]] = []
    calls: list[tuple[Any, ...]] = []

    def stamp(t: dt.datetime) -> str:
        return t.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def flush() -> None:
        conn.executemany(f"INSERT INTO {PREFIX}logs VALUES (?,?,?,?,?,?,?,?)", logs)
        conn.executemany(f"INSERT INTO {PREFIX}calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", calls)
        logs.clear()
        calls.clear()

    for log, rows in _rows(n_logs, stamp):
        logs.append(log)
        calls.extend(rows)
        if len(logs) >= 50_000:
            flush()
    flush()
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


async def _server(url: str, n_logs: int, drop_only: bool = False) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    md = _tables()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(md.drop_all)
            if drop_only:
                return
            await conn.run_sync(md.create_all)
        if url.startswith("postgresql"):
            async with engine.connect() as conn:
                raw: Any = (await conn.get_raw_connection()).driver_connection
                logs: list[tuple[Any, ...]] = []
                calls: list[tuple[Any, ...]] = []
                for log, rows in _rows(n_logs, lambda t: t):
                    logs.append(log)
                    calls.extend(rows)
                    if len(logs) >= 100_000:
                        await raw.copy_records_to_table(f"{PREFIX}logs", records=logs)
                        await raw.copy_records_to_table(f"{PREFIX}calls", records=calls)
                        logs.clear()
                        calls.clear()
                await raw.copy_records_to_table(f"{PREFIX}logs", records=logs)
                await raw.copy_records_to_table(f"{PREFIX}calls", records=calls)
                # What autovacuum does to a table after a bulk load: without it the
                # first scan also sets every row's hint bits (writes, not reads).
                await raw.execute(f"VACUUM ANALYZE {PREFIX}logs")
                await raw.execute(f"VACUUM ANALYZE {PREFIX}calls")
                await raw.execute("CHECKPOINT")
        else:
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
                async with raw.cursor() as cur:
                    batch_l: list[tuple[Any, ...]] = []
                    batch_c: list[tuple[Any, ...]] = []
                    naive = lambda t: t.replace(tzinfo=None)  # noqa: E731
                    for log, rows in _rows(n_logs, naive):
                        batch_l.append(log)
                        batch_c.extend(rows)
                        if len(batch_l) >= 20_000:
                            await _mysql_flush(cur, batch_l, batch_c)
                    await _mysql_flush(cur, batch_l, batch_c)
                await raw.commit()
    finally:
        await engine.dispose()


async def _mysql_flush(cur: Any, logs: list[tuple[Any, ...]], calls: list[tuple[Any, ...]]) -> None:
    await cur.executemany(f"INSERT INTO {PREFIX}logs VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", logs)
    await cur.executemany(
        f"INSERT INTO {PREFIX}calls VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", calls
    )
    logs.clear()
    calls.clear()


# -- measurement ------------------------------------------------------------------------------
# A small launcher process runs the command and reports its child's peak RSS: measured
# from this (large) process, a forked child would first inherit this process's RSS.
_LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(elapsed, usage.ru_maxrss, code, usage.ru_utime + usage.ru_stime)
"""


#: Each command runs this many times; the run with the median wall time is reported.
REPEATS = 3


def measure(args: list[str]) -> tuple[float, float, int, float]:
    """
    Run ``asynctrack stats ARGS`` in a child process, :data:`REPEATS` times.

    Returns the run with the median wall time, as:
        (wall seconds, peak MB, exit code, CPU seconds of the client process). On a
        busy machine the CPU time is closer to what the run takes on an idle one (for
        PostgreSQL and MariaDB the server's work is not in it).
    """
    cmd = [sys.executable, "-m", "asynctrack", "stats", *args, "--format", "json"]
    runs = []
    for _ in range(REPEATS):
        out = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, *cmd],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        runs.append((float(out[0]), int(out[1]) / 1024, int(out[2]), float(out[3])))
    runs.sort()
    return runs[len(runs) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=1_000_000, help="logs to generate (1e6)")
    parser.add_argument("--backends", default="postgresql,sqlite,file", help="comma-separated")
    parser.add_argument("--workdir", help="where to put the file and the SQLite database")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the file and SQLite database already in --workdir (time only)",
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    # A temporary directory (no --workdir) is removed at the end: 1.5 GB at full size.
    workdir = args.workdir or tempfile.mkdtemp(prefix="asynctrack-bench-")
    os.makedirs(workdir, exist_ok=True)
    sources: dict[str, str] = {}
    print(f"{args.logs:,} logs x 3 calls, {FUNCTIONS} functions, {USERS} users", flush=True)
    for backend in backends:
        start = time.perf_counter()
        if backend == "file":
            path = os.path.join(workdir, "track.jsonl")
            if not (args.reuse and os.path.exists(path)):
                write_jsonl(path, args.logs)
            sources[backend] = path
        elif backend == "sqlite":
            path = os.path.join(workdir, "track.db")
            if not (args.reuse and os.path.exists(path)):
                if os.path.exists(path):
                    os.unlink(path)
                write_sqlite(path, args.logs)
            sources[backend] = f"sqlite:///{path}"
        elif backend in ("postgresql", "mysql"):
            url = POSTGRES_URL if backend == "postgresql" else MYSQL_URL
            asyncio.run(_server(url, args.logs))
            sources[backend] = url
        else:
            parser.error(f"unknown backend {backend!r}")
        print(f"  generated {backend} in {time.perf_counter() - start:.1f} s", flush=True)
    # Time the queries, not the write-back of 1.5 GB of freshly generated data: flush
    # the page cache's dirty pages (and PostgreSQL's, in _server) before timing.
    os.sync()
    variants = [
        ("stats", []),
        ("stats --exact", ["--exact"]),
        ("stats --by user", ["--by", "user"]),
    ]
    print()
    print(
        f"{'backend':<11} {'command':<16} {'time':>8} {'cpu':>8} {'peak MB':>8} {'target':>8}"
        "  verdict"
    )
    failed = False
    try:
        for backend, source in sources.items():
            for label, extra in variants:
                prefix = ["--table-prefix", PREFIX] if "://" in source else []
                elapsed, peak, code, cpu = measure([source, *prefix, *extra])
                target = TARGETS[backend] if label == "stats" else None
                ok = code == 0 and peak < PEAK_MB and (target is None or elapsed <= target)
                failed |= not ok
                shown = f"{target:.1f} s" if target else "-"
                print(
                    f"{backend:<11} {label:<16} {elapsed:>6.2f} s {cpu:>6.2f} s {peak:>8.0f} "
                    f"{shown:>8}  "
                    f"{'ok' if ok else 'MISSED'}{'' if code == 0 else f' (exit {code})'}",
                    flush=True,
                )
        print(f"load average after timing: {os.getloadavg()[0]:.1f}")
    finally:
        for backend in ("postgresql", "mysql"):
            if backend in sources:
                asyncio.run(_server(sources[backend], 0, drop_only=True))
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
