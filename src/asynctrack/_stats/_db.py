"""
Read-only database access for the CLI: SQLite through ``sqlite3``, the rest through
SQLAlchemy's asyncio engine, behind one small interface.

SQLite is opened read-only with the standard library (fast, no event loop work per
row, and a missing file is an error rather than a new empty database). PostgreSQL and
MariaDB/MySQL go through SQLAlchemy with their async drivers; a URL without a driver
(``postgresql://``, ``mysql://``) gets the installed async one.
"""

from __future__ import annotations

import datetime as _dt
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ._model import UTC, SourceError

__all__ = ["Database", "connect"]

_ASYNC_DRIVERS = {"postgresql": ("asyncpg",), "mysql": ("asyncmy", "aiomysql")}
_BATCH = 10_000
_CONNECT_TIMEOUT = 10


class Database:
    """
    A read-only connection: ``fetch`` small results, ``stream`` large ones in batches.
    """

    dialect = ""

    def __init__(self, display: str) -> None:
        self.display = display
        self._time_layout: tuple[str, str] | None = None

    async def fetch(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""
        raise NotImplementedError

    def stream(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Sequence[tuple[Any, ...]]]:
        """Run a query and yield its rows in batches, with bounded memory."""
        raise NotImplementedError

    async def columns(self, table: str) -> list[str]:
        """
        Return the column names of ``table``.

        Raises:
            SourceError: the table does not exist.
        """
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection."""

    def quote(self, name: str) -> str:
        """Quote an identifier for this dialect."""
        if self.dialect == "mysql":
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    async def time_param(self, moment: _dt.datetime, logs_table: str) -> Any:
        """
        Return ``moment`` as a parameter comparable with the ``started_at`` column.
        """
        moment = moment.astimezone(UTC)
        if self.dialect == "postgresql":
            return moment
        if self.dialect == "mysql":
            return moment.replace(tzinfo=None)
        # SQLite stores text; compare in the layout the sink used (SQLAlchemy writes
        # "YYYY-MM-DD HH:MM:SS.ffffff", always UTC).
        if self._time_layout is None:
            rows = await self.fetch(f"SELECT started_at FROM {self.quote(logs_table)} LIMIT 1")
            sample = str(rows[0][0]) if rows and rows[0][0] is not None else ""
            sep = "T" if len(sample) > 10 and sample[10] == "T" else " "
            suffix = sample[26:] if len(sample) > 26 and sample[19] == "." else ""
            self._time_layout = (sep, suffix)
        sep, suffix = self._time_layout
        return moment.replace(tzinfo=None).isoformat(sep=sep, timespec="microseconds") + suffix


class _SQLite(Database):
    dialect = "sqlite"

    def __init__(self, path: str, display: str) -> None:
        super().__init__(display)
        file = pathlib.Path(path)
        if not file.is_file():
            raise SourceError(f"no such database file: {path}")
        try:
            self._conn = sqlite3.connect(file.resolve().as_uri() + "?mode=ro", uri=True)
            self._conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise SourceError(f"cannot open {path}: {exc}") from None

    async def fetch(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, dict(params or {})).fetchall()

    async def stream(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Sequence[tuple[Any, ...]]]:
        cursor = self._conn.execute(sql, dict(params or {}))
        try:
            while batch := cursor.fetchmany(_BATCH):
                yield batch
        finally:
            cursor.close()

    async def columns(self, table: str) -> list[str]:
        rows = self._conn.execute(f"PRAGMA table_info({self.quote(table)})").fetchall()
        if not rows:
            raise SourceError(f"table {table} not found in {self.display}")
        return [str(row[1]) for row in rows]

    async def close(self) -> None:
        self._conn.close()


class _Engine(Database):
    def __init__(self, url: Any, display: str) -> None:
        super().__init__(display)
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        self.dialect = "postgresql" if url.get_backend_name() == "postgresql" else "mysql"
        connect_args: dict[str, Any] = {}
        if url.get_driver_name() == "asyncpg":
            connect_args["timeout"] = _CONNECT_TIMEOUT
        elif url.get_driver_name() in ("asyncmy", "aiomysql"):
            connect_args["connect_timeout"] = _CONNECT_TIMEOUT
        try:
            self._engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
        except Exception as exc:  # unknown driver, bad options
            raise SourceError(f"cannot use {display}: {_one_line(exc)}") from None
        self._conn: Any = None

    async def open(self) -> None:
        try:
            self._conn = await self._engine.connect()
            if self.dialect == "postgresql":
                # JIT-compiling the bucket expression costs seconds and saves nothing.
                await self._conn.exec_driver_sql("SET jit = off")
        except Exception as exc:  # refused, unknown host, bad credentials, timeout
            await self._engine.dispose()
            raise SourceError(f"cannot connect to {self.display}: {_one_line(exc)}") from None

    async def fetch(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        from sqlalchemy import text

        result = await self._conn.execute(text(sql), dict(params or {}))
        return [tuple(row) for row in result.all()]

    async def stream(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Sequence[tuple[Any, ...]]]:
        from sqlalchemy import text

        result = await self._conn.stream(text(sql), dict(params or {}))
        try:
            async for part in result.partitions(_BATCH):
                yield [tuple(row) for row in part]
        finally:
            await result.close()

    async def columns(self, table: str) -> list[str]:
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        try:
            result = await self._conn.execute(
                text(f"SELECT * FROM {self.quote(table)} WHERE 1 = 0")
            )
        except DBAPIError:
            await self._conn.rollback()
            raise SourceError(f"table {table} not found in {self.display}") from None
        keys = list(result.keys())
        result.close()
        return keys

    async def close(self) -> None:
        try:
            if self._conn is not None:
                await self._conn.close()
        finally:
            await self._engine.dispose()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


async def connect(url: str) -> Database:
    """
    Open ``url`` read-only.

    Raises:
        SourceError: the URL is invalid, its driver unknown, or the server unreachable.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise SourceError(f"invalid database URL {url!r}: {_one_line(exc)}") from None
    display = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise SourceError(f"{display}: an in-memory database holds no logs")
        return _SQLite(parsed.database, display)
    if backend == "mariadb":
        backend = "mysql"
        parsed = parsed.set(
            drivername="mysql+" + (parsed.drivername.partition("+")[2] or "asyncmy")
        )
    if backend not in _ASYNC_DRIVERS:
        raise SourceError(
            f"unsupported database URL {display!r}: use sqlite, postgresql or mysql/mariadb"
        )
    driver = parsed.drivername.partition("+")[2]
    if driver not in _ASYNC_DRIVERS[backend]:
        parsed = parsed.set(drivername=f"{backend}+{_ASYNC_DRIVERS[backend][0]}")
    engine = _Engine(parsed, display)
    await engine.open()
    return engine
