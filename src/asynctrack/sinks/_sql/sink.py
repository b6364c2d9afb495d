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
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from asynctrack._core.records import Call, Log
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink
from asynctrack.sinks._sql.schema import (
    CALL_FIELDS,
    CALL_OPTIONAL,
    LOG_FIELDS,
    LOG_OPTIONAL,
    MISSING,
    RESERVED_KEY,
    InfoColumn,
    TextLimit,
    check_table,
    compatible,
    default_tables,
    describe,
    parse_columns,
    text_limit,
)
from asynctrack.sinks._sql.upgrade import (
    add_new_columns,
    json_text,
    jsonb_dumps,
    jsonb_safe,
    needs_jsonb_care,
    optional_present,
)
from asynctrack.sinks._sql.url import parse_url, shown_url
from asynctrack.sinks._sql.values import (
    TIMESTAMPS,
    Converter,
    default_maker,
    dumps,
    fit_json,
    fits_checker,
    loads,
    make_converter,
    overflow,
    python_defaults,
    with_reserved,
)

__all__ = ["SQLSink", "default_tables", "dumps", "loads"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_NAME_COLUMNS = ("function", "tracker", "level", "status")
#: Engines forgotten in a forked child: kept referenced so that garbage collection in
#: the child never closes a connection the parent is still using.
_INHERITED: list[AsyncEngine] = []


# -- the plan: everything decided at open() from the tables found in the database ---------
@dataclass
class _Plan:
    dialect: str
    logs: sa.Table
    calls: sa.Table
    info: list[InfoColumn]
    converters: list[Converter]
    started: Callable[[_dt.datetime], Any]
    ts_mode: str
    limits: dict[str, TextLimit]
    fits: dict[str, Callable[[str], bool]]
    log_columns: list[str]
    call_columns: list[str]
    #: The optional (0.2) columns the tables have, written after the fixed ones.
    log_optional: list[str]
    call_optional: list[str]
    #: JSON columns of type JSONB (PostgreSQL), which cannot hold NUL characters.
    jsonb: set[str]
    insert_logs: str
    insert_calls: str
    log_defaults: list[Callable[[], Any]] = field(default_factory=list)
    call_defaults: list[Callable[[], Any]] = field(default_factory=list)
    known: dict[str, set[str]] = field(default_factory=dict)


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
        self._plan: _Plan | None = None

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

    def _make_plan(self, conn: sa.Connection) -> _Plan:
        dialect = conn.dialect
        name = self._dialect
        logs_types = _reflect(conn, self._logs_table, LOG_FIELDS, self._info, name)
        calls_types = _reflect(conn, self._calls_table, CALL_FIELDS, [], name)
        log_optional = optional_present(conn, name, self._logs_table, LOG_OPTIONAL, self._name)
        call_optional = optional_present(conn, name, self._calls_table, CALL_OPTIONAL, self._name)
        started_type = logs_types["started_at"]
        if name == "sqlite":
            ts_mode = "sqlite"
        elif name == "postgresql" and getattr(started_type, "timezone", False):
            ts_mode = "aware"
        else:
            ts_mode = "naive"
        limits: dict[str, TextLimit] = {}
        for col in ("id", "parent_id"):
            limits[col] = text_limit(logs_types[col], name)
        for col in ("function", "tracker", "level", "status", "error"):
            limits[col] = text_limit(calls_types[col], name)
        for col in ("params", "data"):
            limits[col] = text_limit(calls_types[col], name)
        for col in log_optional:
            limits[col] = text_limit(log_optional[col], name)
        if "traceback" in call_optional:
            limits["traceback"] = text_limit(call_optional["traceback"], name)
        # JSONB refuses the \u0000 escape that json and the other databases accept.
        jsonb = {
            col
            for col, t in (
                ("info", logs_types["info"]),
                ("params", calls_types["params"]),
                ("data", calls_types["data"]),
                ("traceback", call_optional.get("traceback")),
            )
            if isinstance(t, postgresql.JSONB)
        }
        limits["info"] = text_limit(logs_types["info"], name)
        converters = []
        for info in self._info:
            t = logs_types[info.column]
            kind = info.kind
            bits = 64
            if kind in ("integer", "bigint"):
                type_name = type(t).__name__.upper()
                if isinstance(t, sa.BigInteger):
                    bits = 64
                elif isinstance(t, sa.SmallInteger) or type_name == "SMALLINT":
                    bits = 16
                elif type_name == "TINYINT":
                    bits = 8
                elif type_name == "MEDIUMINT":
                    bits = 24
                else:
                    bits = 32
            col_ts = ts_mode
            if kind == "datetime" and name == "postgresql":
                col_ts = "aware" if getattr(t, "timezone", False) else "naive"
            exact_float = name == "sqlite" or isinstance(t, sa.Double)
            convert = make_converter(kind, text_limit(t, name), bits, exact_float, col_ts)
            if kind == "json" and isinstance(t, postgresql.JSONB):
                convert = jsonb_safe(convert)
            converters.append(convert)
        log_columns = [*LOG_FIELDS, *log_optional, *(c.column for c in self._info)]
        call_columns = [*CALL_FIELDS, *call_optional]
        # Python-side defaults of the user's extra columns: bulk inserts must apply them.
        log_defaults = python_defaults(self._logs_table, log_columns)
        call_defaults = python_defaults(self._calls_table, call_columns)
        log_columns += [column for column, _ in log_defaults]
        call_columns += [column for column, _ in call_defaults]
        prep = dialect.identifier_preparer

        def insert(table: sa.Table, columns: list[str], key: str) -> str:
            style = dialect.paramstyle
            if style == "qmark":
                marks = ["?"] * len(columns)
            elif style in ("format", "pyformat"):
                marks = ["%s"] * len(columns)
            elif style == "numeric_dollar":
                marks = [f"${i}" for i in range(1, len(columns) + 1)]
            elif style == "numeric":
                marks = [f":{i}" for i in range(1, len(columns) + 1)]
            else:  # pragma: no cover - every supported driver is listed above
                raise ConfigError(f"SQLSink: unsupported driver paramstyle {style!r}")
            head = (
                f"INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in columns)}) "
                f"VALUES ({', '.join(marks)})"
            )
            if name == "sqlite":
                return f"INSERT OR IGNORE {head}"
            if name == "postgresql":
                return f"INSERT {head} ON CONFLICT DO NOTHING"
            quoted = prep.quote(key)
            return f"INSERT {head} ON DUPLICATE KEY UPDATE {quoted} = {quoted}"

        return _Plan(
            dialect=name,
            logs=self._logs_table,
            calls=self._calls_table,
            info=list(self._info),
            converters=converters,
            started=TIMESTAMPS[ts_mode],
            ts_mode=ts_mode,
            limits=limits,
            fits={k: fits_checker(v) for k, v in limits.items()},
            log_columns=log_columns,
            call_columns=call_columns,
            log_optional=list(log_optional),
            call_optional=list(call_optional),
            jsonb=jsonb,
            insert_logs=insert(self._logs_table, log_columns, "id"),
            insert_calls=insert(self._calls_table, call_columns, "log_id"),
            log_defaults=[default_maker(d) for _, d in log_defaults],
            call_defaults=[default_maker(d) for _, d in call_defaults],
            known={k: set() for k in ("function", "tracker", "level", "status")},
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
        log_rows, call_rows, refused = self._rows(plan, logs)
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

    def _rows(
        self, plan: _Plan, logs: list[Log]
    ) -> tuple[list[tuple[Any, ...]], list[Any], list[tuple[Log, Exception]]]:
        """
        Build the rows of a batch: ``(log_rows, call_rows, refused)`` in column order;
        ``refused`` holds the logs whose id cannot be stored.
        """
        fits = plan.fits
        fits_id = fits["id"]
        fits_parent = fits["parent_id"]
        started = plan.started
        info_columns = plan.info
        converters = plan.converters
        pairs = list(zip(info_columns, converters, strict=True))
        limits = plan.limits
        info_limit = limits["info"]
        check_json = {k: limits[k].bytes is not None for k in ("info", "params", "data")}
        log_rows: list[tuple[Any, ...]] = []
        call_rows: list[tuple[Any, ...]] = []
        known = plan.known
        known_function = known["function"]
        known_tracker = known["tracker"]
        known_level = known["level"]
        known_status = known["status"]
        fits_error = fits["error"]
        log_defaults = plan.log_defaults
        fast = not plan.call_defaults and not check_json["params"] and not check_json["data"]
        log_optional = plan.log_optional
        jsonb = plan.jsonb
        # The calls of the default schema: parent and traceback after the fixed columns.
        both = plan.call_optional == ["parent_seq", "traceback"]
        fast = fast and (both or not plan.call_optional) and "traceback" not in check_json
        nul_checked = bool(jsonb & {"params", "data"})
        orjson_dumps = orjson.dumps
        seen: set[str] = set()
        refused: list[tuple[Log, Exception]] = []
        for log in logs:
            lid = log.id
            if type(lid) is not str or not fits_id(lid):
                refused.append((log, ValueError(f"log id {lid!r:.50} does not fit the id column")))
                continue
            if lid in seen:
                continue
            seen.add(lid)
            extra: dict[str, Any] | None = None
            parent = log.parent_id
            if parent is not None and (type(parent) is not str or not fits_parent(parent)):
                extra = {"parent_id": parent}
                parent = None
            optional: list[Any] = []
            for col in log_optional:
                value = getattr(log, col)
                if value is not None and (
                    type(value) is not int
                    if col == "parent_seq"
                    else type(value) is not str or not fits[col](value)
                ):
                    # Kept exactly in the info JSON, like a parent_id that does not fit.
                    extra = {**(extra or {}), col: value}
                    value = None
                optional.append(value)
            info = log.info
            values: list[Any] = []
            if pairs:
                rest = dict(info)
                for column, convert in pairs:
                    value = rest.pop(column.key, MISSING)
                    if value is MISSING:
                        values.append(None)
                        continue
                    stored, exact = convert(value)
                    values.append(stored)
                    if not exact:
                        rest[column.key] = value
                info = rest
            if extra is not None or RESERVED_KEY in info:
                info = with_reserved(info, extra)
            try:
                info_text = orjson_dumps(info).decode()
            except TypeError:
                info_text = dumps(info)
            if "info" in jsonb and needs_jsonb_care(info_text):
                info_text = jsonb_dumps(info)
            if check_json["info"]:
                info_text = fit_json(info_text, info_limit)
            log_rows.append(
                (
                    lid,
                    parent,
                    started(log.started_at),
                    log.duration_us,
                    bool(log.complete),
                    log.dropped_calls,
                    info_text,
                    *optional,
                    *values,
                    *[make() for make in log_defaults],
                )
            )
            if fast:
                for call in log.calls:
                    # The common case, kept lean: names already known to fit, no error
                    # or a short one, JSON that orjson encodes directly (issue #9).
                    function = call.function
                    tracker = call.tracker
                    level = call.level
                    status = call.status
                    error = call.error
                    data = call.data
                    if (
                        function in known_function
                        and tracker in known_tracker
                        and level in known_level
                        and status in known_status
                        and (error is None or (type(error) is str and fits_error(error)))
                        and RESERVED_KEY not in data
                    ):
                        try:
                            params_text = orjson_dumps(call.params).decode()
                            data_text = orjson_dumps(data).decode()
                            row: tuple[Any, ...] = (
                                lid,
                                call.seq,
                                call.depth,
                                function,
                                tracker,
                                level,
                                params_text,
                                data_text,
                                call.offset_us,
                                call.duration_us,
                                status,
                                error,
                            )
                            if not nul_checked or not (
                                needs_jsonb_care(params_text) or needs_jsonb_care(data_text)
                            ):
                                tb = call.traceback
                                if not both:
                                    call_rows.append(row)
                                    continue
                                if tb is None:
                                    call_rows.append((*row, call.parent, None))
                                    continue
                                tb_text = orjson_dumps(tb).decode()
                                if "traceback" not in jsonb or not needs_jsonb_care(tb_text):
                                    call_rows.append((*row, call.parent, tb_text))
                                    continue
                        except TypeError:
                            pass
                    call_rows.append(self._call_row(plan, lid, call))
            else:
                call_rows.extend(self._call_row(plan, lid, call) for call in log.calls)
        return log_rows, call_rows, refused

    def _call_row(self, plan: _Plan, lid: str, call: Call) -> tuple[Any, ...]:
        """
        Build one call's row, making every value fit its column (the general path).
        """
        limits = plan.limits
        texts = [call.function, call.tracker, call.level, call.status]
        over: dict[str, Any] | None = None
        for i, column in enumerate(_NAME_COLUMNS):
            text = texts[i]
            known = plan.known[column]
            if text in known:
                continue
            if type(text) is str and plan.fits[column](text):
                if len(known) < 10_000:
                    known.add(text)
                continue
            texts[i], over = overflow(column, text, limits[column], over)
        error = call.error
        if error is not None and (type(error) is not str or not plan.fits["error"](error)):
            error, over = overflow("error", error, limits["error"], over)
        data = call.data
        if over is not None or RESERVED_KEY in data:
            data = with_reserved(data, over)
        jsonb = plan.jsonb
        params_text = fit_json(json_text(call.params, "params" in jsonb), limits["params"])
        data_text = fit_json(json_text(data, "data" in jsonb), limits["data"])
        optional: list[Any] = []
        for column in plan.call_optional:
            if column == "parent_seq":
                optional.append(call.parent)
            elif call.traceback is None:
                optional.append(None)
            else:
                text = json_text(call.traceback, "traceback" in jsonb)
                optional.append(fit_json(text, limits["traceback"]))
        return (
            lid,
            call.seq,
            call.depth,
            texts[0],
            texts[1],
            texts[2],
            params_text,
            data_text,
            call.offset_us,
            call.duration_us,
            texts[3],
            error,
            *optional,
            *[make() for make in plan.call_defaults],
        )

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
    engine: AsyncEngine, plan: _Plan, log_rows: list[Any], call_rows: list[Any]
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


def _reflect(
    conn: sa.Connection,
    table: sa.Table,
    fields: Mapping[str, str],
    info: list[InfoColumn],
    dialect: str,
) -> dict[str, Any]:
    """
    Check the table as it exists in the database; return the types of the used columns.

    Raises:
        ConfigError: the table or a column is missing, or a column has the wrong type.
    """
    inspector = sa.inspect(conn)
    where = f"table {table.fullname!r} in the database"
    if not inspector.has_table(table.name, schema=table.schema):
        raise ConfigError(f"SQLSink: {where} does not exist (create_tables=False)")
    found = {c["name"]: c["type"] for c in inspector.get_columns(table.name, schema=table.schema)}
    lower = {k.lower(): v for k, v in found.items()}
    types: dict[str, Any] = {}
    wanted: list[tuple[str, str, str | None]] = [(f, k, None) for f, k in fields.items()]
    wanted += [(c.column, c.kind, c.key) for c in info]
    for column, kind, key in wanted:
        for_key = f" for info key {key!r}" if key is not None else ""
        t = found.get(column, lower.get(column.lower()))
        if t is None:
            raise ConfigError(
                f"SQLSink: {where} has no column {column!r}{for_key}; add the column, or use "
                "another table (table_prefix=...)"
            )
        min_length = 32 if column in ("id", "parent_id", "log_id") and key is None else 0
        if not compatible(kind, t, dialect, min_length):
            raise ConfigError(
                f"SQLSink: {where}, column {column!r}{for_key} has type {t!r}; "
                f"expected {describe(kind)}"
            )
        types[column] = t
    return types


SQLSink.__module__ = "asynctrack"


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
