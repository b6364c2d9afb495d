"""
SQL safety end to end (issue #7, item 14): hostile names are refused when the sink is
configured; hostile values travel through the pipeline as bound parameters, are
stored as data, and leave the schema unchanged.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

import asynctrack
from asynctrack import ConfigError
from asynctrack._core.jsonb import nul_unescape
from tests.conftest import Configure

DROP = 'x"; DROP TABLE track_logs;--'
HOSTILE_NAMES = [
    pytest.param({"table_prefix": DROP}, "table_prefix", id="prefix"),
    pytest.param({"columns": {DROP: "string(64)"}}, "columns", id="info-key"),
    pytest.param({"columns": {"user": (DROP, "string(64)")}}, "columns", id="column-name"),
    pytest.param({"columns": {"user": "string(64)); DROP TABLE t;--"}}, "columns", id="type"),
    pytest.param({"name": DROP}, "name", id="sink-name"),
]


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """
    Every SQL statement text any engine sends to a cursor while the test runs.
    """
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    event.remove(sa.engine.Engine, "before_cursor_execute", record)


def hostile_values(marker: str) -> list[str]:
    return [
        f"'); DROP TABLE track_logs;-- {marker}",
        f"' OR '1'='1 {marker}",
        f'"; DELETE FROM track_calls; -- {marker}',
        f"\\'; SELECT pg_sleep(10); -- {marker}",
        f"$$; DROP TABLE track_logs; $$ {marker}",
        f"{marker}\x00nul",
    ]


@asynctrack.get_tracker("rel.sql").probe
def benign() -> None:
    asynctrack.add_info("user", "alice")


def produce(marker: str) -> list[str]:
    """
    Track calls whose info keys, info values, parameters, data and function names are
    hostile; return the values used.
    """
    tr = asynctrack.get_tracker(f'shop"; DROP TABLE track_calls;-- {marker}')

    @tr.probe(fname=f"f'); DROP TABLE track_logs;-- {marker}")
    def handler(text: str) -> str:
        asynctrack.add_info("user", text)
        asynctrack.add_info(DROP, text)
        asynctrack.add_data(f"k'); DROP TABLE x;-- {marker}", text)
        return text

    values = hostile_values(marker)
    for value in values:
        handler(value)
    return values


class TestSQLSafety:
    @pytest.mark.parametrize(("options", "what"), HOSTILE_NAMES)
    def test_hostile_names_are_refused_at_configuration(
        self, options: dict[str, Any], what: str
    ) -> None:
        """
        Table prefixes, info keys, column names, column types and sink names that are
        not plain identifiers raise ConfigError naming the option.
        """
        with pytest.raises(ConfigError, match=what):
            asynctrack.SQLSink("sqlite+aiosqlite:///never.db", **options)

    def test_hostile_names_in_a_config_file(self, tmp_path: Path) -> None:
        """
        The same names from a configuration file are refused too, before anything runs.
        """
        toml = tmp_path / "track.toml"
        toml.write_text(
            '[asynctrack]\n[[asynctrack.sinks]]\ntype = "sql"\n'
            f'url = "sqlite+aiosqlite:///{tmp_path / "x.db"}"\n'
            "table_prefix = 'x\"; DROP TABLE track_logs;--'\n"
        )
        with pytest.raises(ConfigError, match="table_prefix"):
            asynctrack.configure_from_file(toml)
        assert not (tmp_path / "x.db").exists()

    def test_sqlite_values_are_data(
        self, configured: Configure, tmp_path: Path, statements: list[str]
    ) -> None:
        """
        Through the pipeline into SQLite: hostile values are stored verbatim as data,
        the schema is unchanged, and no value ever appears in a statement's text.
        """
        db = tmp_path / "track.db"
        sink = asynctrack.SQLSink(f"sqlite+aiosqlite:///{db}", columns={"user": "string(200)"})
        configured(sink)
        benign()
        asynctrack.flush_sync(timeout=30)  # tables created
        with sqlite3.connect(db) as conn:
            schema = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
        marker = f"INJ{secrets.token_hex(8)}"
        values = produce(marker)
        asynctrack.shutdown_sync(timeout=30)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall() == schema
            users = sorted(r[0] for r in conn.execute("SELECT user FROM track_logs"))
            functions = {r[0] for r in conn.execute("SELECT function FROM track_calls")}
        assert users == sorted([*values, "alice"])
        assert functions == {
            f"f'); DROP TABLE track_logs;-- {marker}",
            "tests.reliability.test_sql_safety.benign",
        }
        assert any("INSERT" in x for x in statements)
        assert not [x for x in statements if marker in x]

    def test_postgres_values_are_data(
        self, configured: Configure, postgres_url: str, table_prefix: str
    ) -> None:
        """
        The same through the pipeline into PostgreSQL (COPY): stored verbatim (NUL kept
        in the JSON copy, the column gets a cleaned copy), the schema unchanged.
        """
        sink = asynctrack.SQLSink(
            postgres_url, table_prefix=table_prefix, columns={"user": "string(200)"}
        )
        configured(sink)
        benign()
        asynctrack.flush_sync(timeout=30)
        schema_sql = sa.text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, column_name"
        )

        async def query(sql: Any) -> list[Any]:
            engine = create_async_engine(postgres_url)
            try:
                async with engine.connect() as conn:
                    return list((await conn.execute(sql)).all())
            finally:
                await engine.dispose()

        before = asyncio.run(query(schema_sql))
        marker = f"INJ{secrets.token_hex(8)}"
        try:
            values = produce(marker)
            asynctrack.shutdown_sync(timeout=30)
            after = asyncio.run(query(schema_sql))
            rows = asyncio.run(query(sa.text(f"SELECT info FROM {table_prefix}logs")))
        finally:

            async def drop() -> None:
                engine = create_async_engine(postgres_url)
                try:
                    async with engine.begin() as conn:
                        for name in ("calls", "logs"):
                            await conn.execute(
                                sa.text(f"DROP TABLE IF EXISTS {table_prefix}{name}")
                            )
                finally:
                    await engine.dispose()

            asyncio.run(drop())
        assert [r for r in after if r[0].startswith(table_prefix)] == [
            r for r in before if r[0].startswith(table_prefix)
        ]
        # JSONB cannot hold NUL: raw SQL sees the documented reversible escape
        # (docs/sql.md), which the sink's readers undo.
        infos = [r[0] for r in rows if DROP in r[0]]
        assert sorted(nul_unescape(i[DROP]) for i in infos) == sorted(values)
