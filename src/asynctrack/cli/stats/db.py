"""
Read-only database access for the CLI, behind one small interface.

SQLite is opened read-only with the standard library (fast, no event loop work per
row, and a missing file is an error rather than a new empty database). PostgreSQL is
read with asyncpg directly: SQLAlchemy's import alone costs more than the whole query
budget of ``asynctrack stats``. MariaDB/MySQL go through SQLAlchemy's asyncio engine
(asyncmy, or aiomysql when the URL names it). The SQL is written once with ``:name``
parameters.
"""

from __future__ import annotations

import abc
import datetime as _dt
import pathlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from asynctrack._core.redact import mask_url
from asynctrack.cli.stats.model import UTC, SourceError

__all__ = ["Database", "PostgresDatabase", "SQLiteDatabase", "connect"]

_MYSQL_DRIVERS = ("asyncmy", "aiomysql")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\+([A-Za-z0-9_]+))?://")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_BATCH = 10_000
_CONNECT_TIMEOUT = 10


class Database(abc.ABC):
    """
    A read-only connection: ``fetch`` small results, ``stream`` large ones in batches.

    Implemented for SQLite (stdlib ``sqlite3``), PostgreSQL (asyncpg) and MariaDB
    (SQLAlchemy's asyncio engine) below.
    """

    dialect = ""

    def __init__(self, display: str) -> None:
        self.display = display
        self._time_layout: tuple[str, str] | None = None

    @abc.abstractmethod
    async def fetch(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""

    @abc.abstractmethod
    def stream(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Sequence[tuple[Any, ...]]]:
        """Run a query and yield its rows in batches, with bounded memory."""

    @abc.abstractmethod
    async def columns(self, table: str) -> list[str]:
        """
        Return the column names of ``table``.

        Raises:
            SourceError: the table does not exist.
        """

    async def column_kinds(self, table: str) -> dict[str, str]:
        """
        Return ``{column: kind}`` for the columns of ``table`` whose values need
        decoding to their JSON form: ``"bool"`` (SQLite and MariaDB give 0/1) and
        ``"json"`` (JSON text).
        """
        return {}

    async def close(self) -> None:  # noqa: B027 - optional: only pooled backends close
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


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str, display: str) -> None:
        super().__init__(display)
        file = pathlib.Path(path)
        if not file.is_file():
            raise SourceError(f"no such database file: {path}")
        #: The read-only URI of the file, for more connections (worker processes).
        self.uri = file.resolve().as_uri() + "?mode=ro"
        try:
            self._conn = sqlite3.connect(self.uri, uri=True)
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

    async def column_kinds(self, table: str) -> dict[str, str]:
        rows = self._conn.execute(f"PRAGMA table_info({self.quote(table)})").fetchall()
        return _kinds((str(row[1]), str(row[2] or "")) for row in rows)

    async def close(self) -> None:
        self._conn.close()


class _Engine(Database):
    dialect = "mysql"

    def __init__(self, url: Any, display: str) -> None:
        super().__init__(display)
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        connect_args = {"connect_timeout": _CONNECT_TIMEOUT}
        try:
            self._engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
        except Exception as exc:  # unknown driver, bad options
            raise SourceError(f"cannot use {display}: {_one_line(exc)}") from None
        self._conn: Any = None

    async def open(self) -> None:
        try:
            self._conn = await self._engine.connect()
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

    async def column_kinds(self, table: str) -> dict[str, str]:
        # MariaDB stores BOOLEAN as TINYINT(1) and JSON as LONGTEXT checked by json_valid.
        rows = await self.fetch(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t",
            {"t": table},
        )
        kinds = _kinds((str(name), str(kind)) for name, kind in rows)
        try:
            checks = await self.fetch(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :t",
                {"t": table},
            )
        except Exception:  # MySQL before 8.0.16 has no such view
            checks = []
        for (clause,) in checks:
            found = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(clause), re.I)
            if found:
                kinds[found[1].replace("``", "`")] = "json"
        return kinds

    async def close(self) -> None:
        try:
            if self._conn is not None:
                await self._conn.close()
        finally:
            await self._engine.dispose()


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, dsn: str, display: str) -> None:
        super().__init__(display)
        self._dsn = dsn
        self._conn: Any = None

    async def open(self) -> None:
        import asyncpg

        try:
            self._conn = await asyncpg.connect(self._dsn, timeout=_CONNECT_TIMEOUT)
            # JIT-compiling the bucket expression costs seconds and saves nothing; the
            # --by join spills to disk with the default 4 MB (this session only).
            await self._conn.execute("SET jit = off; SET work_mem = '64MB'")
        except Exception as exc:  # refused, unknown host, bad credentials, timeout, bad DSN
            raise SourceError(f"cannot connect to {self.display}: {_one_line(exc)}") from None

    @staticmethod
    def _numbered(sql: str, params: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        # ``:name`` -> ``$n`` (asyncpg's style), one number per distinct name.
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match[1]
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        text = _PARAM.sub(number, sql)
        values = dict(params or {})
        return text, [values[name] for name in names]

    async def fetch(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        text, args = self._numbered(sql, params)
        return [tuple(record) for record in await self._conn.fetch(text, *args)]

    async def stream(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Sequence[tuple[Any, ...]]]:
        text, args = self._numbered(sql, params)
        async with self._conn.transaction():
            cursor = await self._conn.cursor(text, *args)
            while batch := await cursor.fetch(_BATCH):
                yield [tuple(record) for record in batch]

    async def settings(self, sql: str) -> None:
        """Run ``SET`` statements (several, separated by ``;``) for this session."""
        await self._conn.execute(sql)

    async def columns(self, table: str) -> list[str]:
        import asyncpg

        try:
            statement = await self._conn.prepare(f"SELECT * FROM {self.quote(table)} WHERE 1 = 0")
        except asyncpg.UndefinedTableError:
            raise SourceError(f"table {table} not found in {self.display}") from None
        return [attribute.name for attribute in statement.get_attributes()]

    async def column_kinds(self, table: str) -> dict[str, str]:
        statement = await self._conn.prepare(f"SELECT * FROM {self.quote(table)} WHERE 1 = 0")
        return _kinds((a.name, a.type.name) for a in statement.get_attributes())

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


def _kinds(columns: Iterable[tuple[str, str]]) -> dict[str, str]:
    """
    Classify ``(name, declared type)`` pairs: booleans and JSON columns.
    """
    out = {}
    for name, declared in columns:
        low = declared.strip().lower()
        if low.startswith("bool") or low == "tinyint(1)":
            out[name] = "bool"
        elif low in ("json", "jsonb"):
            out[name] = "json"
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def _sqlite_path(url: str, display: str) -> str:
    # SQLAlchemy's forms: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (memory).
    rest = url.partition("://")[2].partition("?")[0]
    if rest in ("", "/", "/:memory:"):
        raise SourceError(f"{display}: an in-memory database holds no logs")
    if not rest.startswith("/"):
        raise SourceError(f"invalid database URL {display!r}: use sqlite:///path/to/file.db")
    return rest[1:]


async def connect(url: str) -> Database:
    """
    Open ``url`` read-only.

    Raises:
        SourceError: the URL is invalid, its driver unknown, or the server unreachable.
    """
    match = _SCHEME.match(url)
    if match is None:
        raise SourceError(f"invalid database URL {url!r}: expected scheme://...")
    display = mask_url(url)
    backend, driver = match[1].lower(), (match[2] or "").lower()
    if backend == "sqlite":
        return SQLiteDatabase(_sqlite_path(url, display), display)
    if backend in ("postgresql", "postgres"):
        pg = PostgresDatabase("postgresql://" + url[match.end() :], display)
        await pg.open()
        return pg
    if backend not in ("mysql", "mariadb"):
        raise SourceError(
            f"unsupported database URL {display!r}: use sqlite, postgresql or mysql/mariadb"
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    driver = driver if driver in _MYSQL_DRIVERS else _MYSQL_DRIVERS[0]
    try:
        parsed = make_url(f"mysql+{driver}://" + url[match.end() :])
    except (ArgumentError, ValueError) as exc:
        raise SourceError(f"invalid database URL {display!r}: {_one_line(exc)}") from None
    engine = _Engine(parsed, display)
    await engine.open()
    return engine
