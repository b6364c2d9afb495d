"""
SQLSink: logs into SQL tables through SQLAlchemy's asyncio engine.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) and MariaDB/MySQL
(asyncmy) serve many application servers. SQLAlchemy provides the engine, the pool,
the schema, reflection and the reads; the inserts use each driver's fastest bulk path
(measured, issue #9):

* SQLite: one ``BEGIN IMMEDIATE`` transaction, ``INSERT OR IGNORE`` handed by
  ``exec_driver_sql`` straight to the driver's ``executemany``, skipping Core's
  per-row compilation (Core's executemany measured ~0.3 M rows/s, the driver ~0.7 M);
* PostgreSQL: ``COPY`` (asyncpg ``copy_records_to_table``, ~3x ``executemany``); when
  the batch was already (partly) written — a replay — the transaction is rolled back
  and the batch goes again as ``INSERT ... ON CONFLICT DO NOTHING``;
* MariaDB/MySQL: a multi-row ``INSERT ... ON DUPLICATE KEY UPDATE id = id``.

So every batch is one transaction and re-writing a batch never duplicates a row.
Values are bound parameters, never SQL text; identifiers come from configuration and
are validated (``_sql_schema``). A value that does not fit its column (too long, a NUL
on PostgreSQL) never fails the batch: the column gets a shortened copy and the exact
value is kept in the JSON, so :meth:`SQLSink.read_logs` returns the log unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from asynctrack._core.records import Log
from asynctrack._core.slices import in_slices
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink
from asynctrack.sinks._sql.plan import WritePlan, make_plan
from asynctrack.sinks._sql.rows import rows
from asynctrack.sinks._sql.schema import (
    CALL_FIELDS,
    CALL_OPTIONAL,
    LOG_FIELDS,
    LOG_OPTIONAL,
    check_table,
    default_tables,
    parse_columns,
)
from asynctrack.sinks._sql.upgrade import (
    add_new_columns,
)
from asynctrack.sinks._sql.url import parse_url, shown_url
from asynctrack.sinks._sql.values import (
    dumps,
    loads,
)

__all__ = ["SQLSink", "default_tables", "dumps", "loads"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: Engines forgotten in a forked child: kept referenced so that garbage collection in
#: the child never closes a connection the parent is still using.
_INHERITED: list[AsyncEngine] = []


def _is_data_error(exc: BaseException) -> bool:
    """
    True for errors that retrying the same rows can never fix (value too long, ...).
    """
    if isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return False
    if isinstance(exc, (UnicodeError, OverflowError)):
        return True
    module = type(exc).__module__ or ""
    if module.startswith("asyncpg"):
        import asyncpg

        return isinstance(
            exc,
            (
                asyncpg.exceptions.DataError,
                asyncpg.exceptions.IntegrityConstraintViolationError,
                asyncpg.exceptions.ProgramLimitExceededError,
            ),
        )
    return False


class SQLSink(Sink):
    """
    Write logs into SQL tables: ``{prefix}logs`` (one row per log) and ``{prefix}calls``.

    Args:
        url: a SQLAlchemy URL. ``sqlite+aiosqlite:///track.db`` (the default),
            ``postgresql+asyncpg://user:pw@host/db`` (``pip install asynctrack[postgres]``),
            ``mysql+asyncmy://user:pw@host/db`` (``pip install asynctrack[mysql]``); a URL
            without a driver (``postgresql://...``) gets the async driver named here.
        table_prefix: prefix of the default tables' names.
        columns: info keys that get their own (indexed) column in the logs table, e.g.
            ``{"user": "string(64)", "tenant": "integer"}`` — type names ``string(N)``,
            ``string``, ``text``, ``integer``, ``bigint``, ``float``, ``boolean``,
            ``datetime``, ``json`` or SQLAlchemy types; ``(column_name, type)`` renames
            the column. With ``logs_table``, it maps info keys to that table's columns:
            ``{"user": "user_name"}``. Other info keys go to the ``info`` JSON column.
        logs_table: the user's own ``sqlalchemy.Table`` for logs (``MyLog.__table__``);
            it needs the fixed columns of the default schema.
        calls_table: the user's own ``sqlalchemy.Table`` for calls.
        create_tables: create missing tables on open.
        pool_size: the engine's pool size (SQLAlchemy's default when ``None``).
        echo: log SQL statements (parameters are never logged).
        connect_timeout: seconds to wait for a connection (PostgreSQL, MariaDB).
        busy_timeout: seconds a SQLite writer waits for another process's transaction.
        engine_options: more keyword arguments for ``create_async_engine``.
        name: the sink's name (default: ``sql-<dialect>-<hash of URL and tables>``).

    Raises:
        ConfigError: a bad option, an unsupported database, a missing driver, or own
            tables that do not fit (missing column, wrong type, unknown info column).

    The methods run on asyncio (the pipeline's dispatcher thread always uses asyncio).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        url: str | URL = "sqlite+aiosqlite:///track.db",
        *,
        table_prefix: str = "track_",
        columns: Mapping[str, Any] | None = None,
        logs_table: sa.Table | None = None,
        calls_table: sa.Table | None = None,
        create_tables: bool = True,
        pool_size: int | None = None,
        echo: bool = False,
        connect_timeout: float = 10.0,
        busy_timeout: float = 30.0,
        engine_options: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self._url = parse_url(url)
        self._shown_url = shown_url(self._url, url)
        dialect = self._url.get_backend_name()
        self._dialect = "mysql" if dialect == "mariadb" else dialect
        _preload(self._url)
        for option, value in (("create_tables", create_tables), ("echo", echo)):
            if not isinstance(value, bool):
                raise ConfigError(f"SQLSink({option}=...) must be a bool, got {quote(value)}")
        if pool_size is not None and (
            isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1
        ):
            raise ConfigError(f"SQLSink(pool_size=...) must be an int >= 1, got {quote(pool_size)}")
        for option, number in (
            ("connect_timeout", connect_timeout),
            ("busy_timeout", busy_timeout),
        ):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
                raise ConfigError(
                    f"SQLSink({option}=...) must be a number > 0, got {quote(number)}"
                )
        if engine_options is not None and not isinstance(engine_options, Mapping):
            raise ConfigError("SQLSink(engine_options=...) must be a mapping")
        if name is not None and (not isinstance(name, str) or not _NAME_RE.match(name)):
            raise ConfigError(
                "SQLSink(name=...) must be 1-100 characters among letters, digits, '_.-', "
                f"got {quote(name)}"
            )
        self._create = create_tables
        self._pool_size = pool_size
        self._echo = echo
        self._connect_timeout = float(connect_timeout)
        self._busy_timeout = float(busy_timeout)
        self._engine_options = dict(engine_options or {})

        metadata = sa.MetaData()
        #: Own default tables (not the user's): upgraded in place from 0.1 at open.
        self._upgrade = (logs_table is None, calls_table is None)
        if logs_table is None:
            defaults = default_tables(metadata, table_prefix, columns)
            self._logs_table = defaults[0]
            self._info = parse_columns(columns)
        else:
            own = getattr(logs_table, "name", None)
            requested = parse_columns(columns, own_table=str(own))
            self._info = check_table(logs_table, "logs_table", LOG_FIELDS, requested, dialect)
            self._logs_table = logs_table
            defaults = default_tables(metadata, table_prefix)
        if calls_table is None:
            self._calls_table = defaults[1]
        else:
            check_table(calls_table, "calls_table", CALL_FIELDS, dialect=dialect)
            self._calls_table = calls_table
        if self._logs_table.fullname == self._calls_table.fullname:
            raise ConfigError("SQLSink: logs_table and calls_table are the same table")

        safe = self._url._replace(password=None).render_as_string(hide_password=False)
        digest = hashlib.sha1(
            f"{safe}|{self._logs_table.fullname}|{self._calls_table.fullname}".encode()
        ).hexdigest()[:10]
        self._name = name or f"sql-{dialect}-{digest}"
        self._engine: AsyncEngine | None = None
        self._plan: WritePlan | None = None

    # -- public attributes ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        """
        The database URL, password hidden.
        """
        return self._shown_url

    @property
    def engine(self) -> AsyncEngine | None:
        """
        The SQLAlchemy engine while the sink is open, else ``None``.
        """
        return self._engine

    @property
    def logs_table(self) -> sa.Table:
        """
        The logs table (the default one or the user's).
        """
        return self._logs_table

    @property
    def calls_table(self) -> sa.Table:
        """
        The calls table (the default one or the user's).
        """
        return self._calls_table

    def __repr__(self) -> str:
        return f"<SQLSink {self._name!r} url={self.url!r}>"

    def __str__(self) -> str:
        # Warnings name the sink by its URL (password hidden), not only by its hash name.
        return f"{self.url} ({self._name})"

    # -- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        """
        Create the engine, create missing tables, and check that the tables fit.

        Raises:
            ConfigError: a table or column is missing or has an incompatible type.
            sqlalchemy.exc.OperationalError: the database is unreachable.
        """
        if self._engine is not None:
            return
        engine = self._create_engine()
        try:
            for attempt in range(3):
                try:
                    async with engine.begin() as conn:
                        if self._create:
                            await conn.run_sync(self._create_missing)
                            await conn.run_sync(self._add_new_columns)
                        plan = await conn.run_sync(self._make_plan)
                    break
                except sa_exc.DBAPIError:
                    # Two processes creating the same tables at once: one loses the race.
                    if attempt == 2 or not self._create:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
        except BaseException:
            await engine.dispose()
            raise
        self._engine, self._plan = engine, plan

    async def close(self) -> None:
        """
        Dispose of the engine: close every pooled connection.
        """
        engine, self._engine, self._plan = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    def after_fork(self) -> None:
        """
        Forget the parent's engine without closing its connections.
        """
        if self._engine is not None:
            _INHERITED.append(self._engine)
        self._engine = None
        self._plan = None

    async def __aenter__(self) -> SQLSink:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _create_engine(self) -> AsyncEngine:
        options: dict[str, Any] = {
            "pool_pre_ping": True,
            "hide_parameters": True,
            "echo": self._echo,
            "json_serializer": dumps,
            "json_deserializer": loads,
        }
        url = self._url
        connect_args: dict[str, Any] = {}
        if self._dialect == "sqlite":
            connect_args["timeout"] = self._busy_timeout
            _create_private(url.database)
        elif self._dialect == "postgresql" and url.get_driver_name() == "asyncpg":
            connect_args["timeout"] = self._connect_timeout
        elif self._dialect == "mysql":
            connect_args["connect_timeout"] = max(1, int(self._connect_timeout))
            if "charset" not in url.query:
                url = url.update_query_dict({"charset": "utf8mb4"})
        if self._pool_size is not None:
            options["pool_size"] = self._pool_size
        options["connect_args"] = connect_args
        options.update(self._engine_options)
        try:
            engine = create_async_engine(url, **options)
        except (TypeError, sa_exc.ArgumentError) as exc:
            raise ConfigError(f"SQLSink({self.url!r}): bad engine option: {exc}") from None
        if self._dialect == "sqlite":
            busy_ms = int(self._busy_timeout * 1000)

            def on_connect(dbapi_connection: Any, record: Any) -> None:
                # Transactions are begun explicitly (below), not by the sqlite3 module.
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                    cursor.execute("PRAGMA journal_mode = WAL")
                    cursor.execute("PRAGMA synchronous = NORMAL")
                finally:
                    cursor.close()

            def on_begin(conn: sa.Connection) -> None:
                # A transaction that reads then writes fails with "database is locked"
                # despite the busy timeout unless it takes the write lock first.
                if conn.get_execution_options().get("asynctrack_read"):
                    conn.exec_driver_sql("BEGIN")
                else:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")

            event.listen(engine.sync_engine, "connect", on_connect)
            event.listen(engine.sync_engine, "begin", on_begin)
        return engine

    def _create_missing(self, conn: sa.Connection) -> None:
        inspector = sa.inspect(conn)
        for table in (self._logs_table, self._calls_table):
            if not inspector.has_table(table.name, schema=table.schema):
                table.create(conn, checkfirst=True)

    def _add_new_columns(self, conn: sa.Connection) -> None:
        # A database written by 0.1: the sink's own tables get the columns of 0.2.
        if self._upgrade[0]:
            add_new_columns(conn, self._dialect, self._logs_table, LOG_OPTIONAL)
        if self._upgrade[1]:
            add_new_columns(conn, self._dialect, self._calls_table, CALL_OPTIONAL)

    def _make_plan(self, conn: sa.Connection) -> WritePlan:
        return make_plan(
            conn, self._dialect, self._logs_table, self._calls_table, self._info, self._name
        )

    # -- writing -----------------------------------------------------------------------
    async def write(self, logs: Sequence[Log]) -> None:
        """
        Write a batch in one transaction; raise to have it retried.

        Connection errors propagate at once. When the database refuses some logs as
        invalid (a value out of range, a constraint of the user's own table), the batch
        is split to write every other log, then the database's error is raised: the
        pipeline retries, finds the same logs refused, and sets them aside in its
        dead-letter file, while the rest of the batch was written without delay.
        """
        if not logs:
            return
        if self._engine is None:
            await self.open()
        batch = list(logs)
        refused = await self._write(batch)
        if refused:
            error = refused[0][1]
            ids = ", ".join(repr(str(log.id)[:40]) for log, _ in refused[:5])
            error.add_note(
                f"SQLSink {self._name}: the database refused {len(refused)} of {len(batch)} "
                f"logs ({ids}); the others were written"
            )
            raise error

    async def _write(self, logs: list[Log]) -> list[tuple[Log, Exception]]:
        plan = self._plan
        engine = self._engine
        if plan is None or engine is None:  # closed while writing
            raise RuntimeError(f"SQLSink {self._name!r} is closed")
        # In chunks, the GIL released between them past a slice (docs/pipeline.md,
        # "The dispatcher's slices"); ids repeated across chunks are still left out.
        seen: set[str] = set()
        log_rows: list[tuple[Any, ...]] = []
        call_rows: list[Any] = []
        refused: list[tuple[Log, Exception]] = []
        for part in in_slices(lambda chunk: rows(plan, chunk, seen), logs):
            log_rows += part[0]
            call_rows += part[1]
            refused += part[2]
        if not log_rows:
            return refused
        try:
            if plan.dialect == "postgresql" and self._url.get_driver_name() == "asyncpg":
                await _insert_asyncpg(engine, plan, log_rows, call_rows)
            else:
                async with engine.begin() as conn:
                    await conn.exec_driver_sql(plan.insert_logs, log_rows)
                    if call_rows:
                        await conn.exec_driver_sql(plan.insert_calls, call_rows)
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            if len(logs) == 1:
                return [(logs[0], exc)]
            middle = len(logs) // 2
            # Halves are separate transactions: retried rows are idempotent anyway.
            return [*await self._write(logs[:middle]), *await self._write(logs[middle:])]
        return refused

    # -- reading -----------------------------------------------------------------------
    async def read_logs(
        self,
        *,
        since: _dt.datetime | str | None = None,
        until: _dt.datetime | str | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Log]:
        """
        Yield the logs stored in the tables, in id order (which is creation order).

        Args:
            since: only logs that started at or after this time (aware, or naive UTC,
                or an ISO 8601 string).
            until: only logs that started before this time.
            ids: only these log ids.
            limit: at most this many logs.

        Raises:
            ValueError: a bad ``since``, ``until`` or ``limit``.

        Opens the sink if needed. Info keys stored in their own columns are merged back
        into ``info``; the round trip ``Log`` → database → ``Log`` is lossless.
        """
        from asynctrack.sinks._sql.read import read_logs

        if self._engine is None:
            await self.open()
        engine, plan = self._engine, self._plan
        assert engine is not None
        assert plan is not None
        async for log in read_logs(engine, plan, since=since, until=until, ids=ids, limit=limit):
            yield log


async def _insert_asyncpg(
    engine: AsyncEngine, plan: WritePlan, log_rows: list[Any], call_rows: list[Any]
) -> None:
    """
    Insert through asyncpg's COPY; on a replayed batch, ``INSERT ... ON CONFLICT``.
    """
    import asyncpg

    async with engine.connect() as conn:
        try:
            fairy = await conn.get_raw_connection()
            driver = fairy.driver_connection
            assert driver is not None
            try:
                async with driver.transaction():
                    await _copy(driver, plan.logs, plan.log_columns, log_rows)
                    if call_rows:
                        await _copy(driver, plan.calls, plan.call_columns, call_rows)
            except asyncpg.exceptions.UniqueViolationError:
                async with driver.transaction():
                    await driver.executemany(plan.insert_logs, log_rows)
                    if call_rows:
                        await driver.executemany(plan.insert_calls, call_rows)
        except BaseException:
            await _invalidate(conn)
            raise


async def _copy(driver: Any, table: sa.Table, columns: list[str], rows: list[Any]) -> None:
    await driver.copy_records_to_table(
        table.name, schema_name=table.schema, columns=columns, records=rows
    )


async def _invalidate(conn: AsyncConnection) -> None:
    # The driver's state is unknown after an error raised outside SQLAlchemy: drop the
    # connection instead of returning it to the pool.
    with contextlib.suppress(Exception):
        await conn.invalidate()


def _preload(url: URL) -> None:
    # Import the dialect and its driver now, in the thread that builds the sink, not
    # lazily in the dispatcher thread: a fork while another thread is half-way through
    # an import leaves the child with a half-imported module.
    with contextlib.suppress(Exception):
        url.get_dialect().import_dbapi()


def _create_private(database: str | None) -> None:
    # Logs hold user data: an SQLite file asynctrack creates is 0600 (SQLite gives its
    # -wal and -shm files the same mode).
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)


SQLSink.__module__ = "asynctrack"
