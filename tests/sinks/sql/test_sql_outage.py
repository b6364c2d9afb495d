"""
SQLSink under the pipeline: a PostgreSQL restart during a load, and a poison log
(issue #4). Stopping the server runs only with ASYNCTRACK_REQUIRE_SERVERS=1 or
ASYNCTRACK_ALLOW_SERVER_STOP=1.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import asynctrack
from asynctrack import Log
from asynctrack._core.decode import decode_line
from asynctrack.sinks._sql.sink import SQLSink
from asynctrack.testing import capture
from tests.helpers import drop_tables, wait_for
from tests.reliability._support import ALLOW_SERVER_STOP, pg_accepting, pg_cluster


async def _rows(url: str, prefix: str) -> tuple[list[str], int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            ids = (await conn.execute(sa.text(f"SELECT id FROM {prefix}logs"))).scalars().all()
            calls = (await conn.execute(sa.text(f"SELECT COUNT(*) FROM {prefix}calls"))).scalar()
        return [str(i) for i in ids], int(calls or 0)
    finally:
        await engine.dispose()


class TestPostgresRestart:
    @pytest.mark.slow
    @pytest.mark.skipif(
        not ALLOW_SERVER_STOP, reason="stops PostgreSQL: set ASYNCTRACK_ALLOW_SERVER_STOP=1"
    )
    def test_every_log_written_exactly_once(
        self, postgres_url: str, table_prefix: str, tmp_path: Path
    ) -> None:
        """
        PostgreSQL stopped and restarted during 20,000 logs: each log is in the table once.
        """
        total, stop_at, start_at = 20_000, 5_000, 12_000
        tracker = asynctrack.get_tracker("tests.sql_outage")

        @tracker.probe
        def handle(i: int, payload: dict[str, Any]) -> int:
            asynctrack.add_info("user", f"user{i % 7}")
            asynctrack.add_data("i", i)
            return i

        sink = SQLSink(postgres_url, table_prefix=table_prefix, columns={"user": "string(64)"})
        asynctrack.configure(
            sinks=[sink],
            spill_dir=tmp_path,
            batch_size=500,
            flush_interval=0.05,
            max_backoff=0.5,
            on_full="block",
            write_timeout=10.0,
        )
        stopped = False
        try:
            with capture() as logs:
                for i in range(total):
                    handle(i, {"n": i, "text": "x" * 50})
                    if i % 200 == 0:
                        time.sleep(0.01)  # a steady load, not one burst
                    if i == stop_at:
                        pg_cluster("stop")
                        stopped = True
                    elif i == start_at:
                        pg_cluster("start")
                        stopped = False
            flushed = asynctrack.flush_sync(timeout=60)
            # Spilled logs are replayed in the background once the server is back.
            wait_for(lambda: (st := asynctrack.stats()).replayed >= st.spilled, 60, 0.1)
            stats = asynctrack.stats()
        finally:
            if stopped or not pg_accepting():
                pg_cluster("start")
            asynctrack.shutdown_sync(timeout=30)
        try:
            ids, calls = asyncio.run(_rows(postgres_url, table_prefix))
        finally:
            asyncio.run(drop_tables(postgres_url, table_prefix))
        expected = {log.id for log in logs}
        assert len(expected) == total
        assert len(ids) == total, (len(ids), stats, flushed)
        assert set(ids) == expected
        assert calls == total
        assert stats.failed > 0  # the outage was seen, and recovered from
        assert stats.dropped == 0


class TestPoisonLog:
    def test_refused_log_goes_to_dead_letters(self, tmp_path: Path) -> None:
        """
        Through the pipeline, a log the database refuses is set aside; the rest is written.
        """
        url = f"sqlite+aiosqlite:///{tmp_path / 'track.db'}"
        tracker = asynctrack.get_tracker("tests.sql_poison")

        @tracker.probe
        def handle(i: int) -> int:
            return i

        asynctrack.configure(
            sinks=[SQLSink(url)],
            spill_dir=tmp_path / "spill",
            retry_attempts=1,
            max_backoff=0.05,
            processors=[_poison],
        )
        with capture() as logs:
            for i in range(20):
                handle(i)
        asynctrack.flush_sync(timeout=60)
        stats = asynctrack.stats()
        asynctrack.shutdown_sync(timeout=30)

        async def stored() -> list[str]:
            sink = SQLSink(url)
            async with sink:
                return [log.id async for log in sink.read_logs()]

        ids = asyncio.run(stored())
        poisoned = [log.id for log in logs if log.calls[0].params["i"] == 7]
        assert len(ids) == 19
        assert poisoned[0] not in ids
        assert stats.dead_lettered == 1
        (dead,) = (tmp_path / "spill").glob("*.dead.jsonl")
        (line,) = dead.read_bytes().splitlines()
        assert decode_line(line).id == poisoned[0]


def _poison(log: Log) -> Log:
    # A duration beyond 64 bits: no database column can hold it.
    if log.calls[0].params.get("i") == 7:
        log._t1 = log._t0 + 2**70 * 1000
    return log
