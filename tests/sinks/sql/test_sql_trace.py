"""
SQLSink and the trace model v2 (#17): the new columns on every engine, JSONB on
PostgreSQL, the upgrade of a database written by 0.1, and users' own tables without
the new columns.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.asyncio import create_async_engine

from asynctrack import Call, Log
from asynctrack.sinks._sql.sink import SQLSink
from asynctrack.testing import capture
from tests.sinks.sql import test_sql_sink as base
from tests.sinks.sql.test_sql_sink import (
    dicts,
    make_log,
    own_models,
    read_all,
    without_trace_fields,
)

# The SQL sink tests' fixtures: asyncio, each database, sinks dropped after the test.
anyio_backend = base.anyio_backend
db_url = base.db_url
make_sink = base.make_sink

pytestmark = pytest.mark.anyio

UTC = dt.UTC


def tables_01(metadata: sa.MetaData, prefix: str) -> tuple[sa.Table, sa.Table]:
    """
    The default tables exactly as asynctrack 0.1 created them.
    """
    datetime = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    logs = sa.Table(
        f"{prefix}logs",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("started_at", datetime, nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("dropped_calls", sa.Integer(), nullable=False, default=0, server_default="0"),
        sa.Column("info", sa.JSON(), nullable=True),
        sa.Index(f"ix_{prefix}logs_started_at", "started_at"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    calls = sa.Table(
        f"{prefix}calls",
        metadata,
        sa.Column("log_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("function", sa.String(255), nullable=False),
        sa.Column("tracker", sa.String(255), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("offset_us", sa.BigInteger(), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", text, nullable=True),
        sa.Index(f"ix_{prefix}calls_function", "function"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    return logs, calls


async def write_01_database(url: str, prefix: str) -> None:
    """
    Create the 0.1 tables and write one log the way 0.1 did (its columns only).
    """
    metadata = sa.MetaData()
    logs, calls = tables_01(metadata, prefix)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                logs.insert(),
                [
                    {
                        "id": "0" * 31 + "1",
                        "parent_id": None,
                        "started_at": dt.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
                        "duration_us": 120,
                        "complete": True,
                        "dropped_calls": 0,
                        "info": {"user": "old"},
                    }
                ],
            )
            await conn.execute(
                calls.insert(),
                [
                    {
                        "log_id": "0" * 31 + "1",
                        "seq": seq,
                        "depth": seq,
                        "function": f"app.f{seq}",
                        "tracker": "app",
                        "level": "DEFAULT",
                        "params": {},
                        "data": {},
                        "offset_us": seq,
                        "duration_us": 100 - seq,
                        "status": "ok",
                        "error": None,
                    }
                    for seq in range(2)
                ],
            )
    finally:
        await engine.dispose()


async def columns_of(sink: SQLSink, table: sa.Table) -> dict[str, Any]:
    assert sink.engine is not None
    async with sink.engine.connect() as conn:

        def get(sync_conn: sa.Connection) -> dict[str, Any]:
            inspector = sa.inspect(sync_conn)
            return {c["name"]: c["type"] for c in inspector.get_columns(table.name)}

        return await conn.run_sync(get)


class TestUpgradeFrom01:
    async def test_a_01_database_gets_the_new_columns_and_keeps_working(
        self, make_sink: Callable[..., SQLSink], db_url: str, table_prefix: str
    ) -> None:
        """
        A database written by 0.1: at open the sink adds trace_id, parent_seq and
        remote_parent to its logs table and parent_seq and traceback to its calls
        table (trace_id indexed); old rows read back with parent and trace_id None,
        new logs round-trip with every field, and a second open changes nothing.
        """
        await write_01_database(db_url, table_prefix)
        sink = make_sink()
        await sink.open()
        log_columns = await columns_of(sink, sink.logs_table)
        call_columns = await columns_of(sink, sink.calls_table)
        assert {"trace_id", "parent_seq", "remote_parent"} <= set(log_columns)
        assert {"parent_seq", "traceback"} <= set(call_columns)
        new = [make_log(n) for n in range(3, 7)]
        await sink.write(new)
        old, *back = await read_all(sink)
        assert old.id == "0" * 31 + "1" and old.info == {"user": "old"}
        assert old.trace_id is None and old.parent_seq is None and old.remote_parent is None
        assert [(c.seq, c.parent, c.traceback) for c in old.calls] == [(0, None, None)] * 1 + [
            (1, None, None)
        ]
        assert dicts(back) == dicts(new)
        await sink.close()
        again = make_sink()
        await again.open()
        assert dicts(await read_all(again))[1:] == dicts(new)
        assert sink.engine is None

    async def test_json_columns_are_jsonb_on_postgresql(
        self, make_sink: Callable[..., SQLSink], db_url: str
    ) -> None:
        """
        New tables on PostgreSQL store info, params, data and traceback as JSONB.
        """
        sink = make_sink()
        await sink.open()
        types = {
            **await columns_of(sink, sink.logs_table),
            **{f"calls.{k}": v for k, v in (await columns_of(sink, sink.calls_table)).items()},
        }
        jsonb = {k for k, t in types.items() if isinstance(t, postgresql.JSONB)}
        if db_url.startswith("postgresql"):
            assert jsonb == {"info", "calls.params", "calls.data", "calls.traceback"}
        else:
            assert jsonb == set()


class TestOwnTablesWithoutNewColumns:
    async def test_missing_new_columns_are_reported_once(
        self,
        make_sink: Callable[..., SQLSink],
        table_prefix: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """
        A user's own tables without the 0.2 columns are written without those fields,
        reported once per table at open, never an error.
        """
        MyLog, MyCall = own_models(table_prefix)
        sink = make_sink(logs_table=MyLog.__table__, calls_table=MyCall.__table__)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            await sink.write([make_log(1)])
            await sink.write([make_log(2)])
        reports = [r.getMessage() for r in caplog.records if "added in asynctrack" in r.message]
        assert len(reports) == 2
        assert "'trace_id', 'parent_seq', 'remote_parent'" in reports[0]
        assert "'parent_seq', 'traceback'" in reports[1]
        assert dicts(await read_all(sink)) == without_trace_fields(
            dicts([make_log(1), make_log(2)])
        )


class TestProbedRoundTrip:
    async def test_probed_tree_with_continuation_round_trips(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        Logs recorded by probes — parents, a traceback, a continuation with its
        parent_seq and trace_id — come back from the database unchanged.
        """
        import asynctrack

        tr = asynctrack.get_tracker("tests.sql_trace")
        late: list[Any] = []

        @tr.probe
        def inner() -> None:
            raise KeyError("k")

        @tr.probe
        def outer() -> None:
            asynctrack.add_info("user", "alice")
            try:
                inner()
            except KeyError:
                pass
            late.append(asynctrack.propagate(inner))

        with capture() as logs:
            outer()
            try:
                late[0]()
            except KeyError:
                pass
        first, second = logs
        assert second.parent_id == first.id and second.parent_seq == 0
        assert second.trace_id == first.trace_id and second.info == {"user": "alice"}
        sink = make_sink()
        await sink.write(list(logs))
        back = await read_all(sink)
        assert dicts(back) == dicts(list(logs))
        assert back[0].calls[1].traceback == first.calls[1].traceback is not None
        assert [c.span_id for c in back[0].calls] == [c.span_id for c in first.calls]


def test_hand_built_logs_keep_their_fields() -> None:
    """
    A Log built by hand keeps trace_id None unless given (records of 0.1 stay so).
    """
    log = Log(id="a" * 32, started_at="2026-01-01T00:00:00+00:00", calls=[])
    assert log.trace_id is None
    call = Call(seq=0, depth=0, function="f", tracker="t")
    log.calls = [call]
    assert call.span_id == Log.from_dict(log.to_dict()).calls[0].span_id
