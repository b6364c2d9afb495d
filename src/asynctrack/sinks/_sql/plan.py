"""
The write plan of an SQLSink: everything decided at ``open()`` from the tables found in
the database (column types, text limits, optional columns, the insert statements).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from asynctrack._exceptions import ConfigError
from asynctrack.sinks._sql.schema import (
    CALL_FIELDS,
    CALL_OPTIONAL,
    LOG_FIELDS,
    LOG_OPTIONAL,
    InfoColumn,
    TextLimit,
    compatible,
    describe,
    text_limit,
)
from asynctrack.sinks._sql.upgrade import (
    jsonb_safe,
    optional_present,
)
from asynctrack.sinks._sql.values import (
    TIMESTAMPS,
    Converter,
    default_maker,
    fits_checker,
    make_converter,
    python_defaults,
)

__all__ = ["WritePlan", "make_plan"]


@dataclass
class WritePlan:
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


def make_plan(
    conn: sa.Connection,
    name: str,
    logs_table: sa.Table,
    calls_table: sa.Table,
    info_columns: list[InfoColumn],
    sink_name: str,
) -> WritePlan:
    """
    Decide how to write into the tables found in the database (at ``open()``).

    Raises:
        ConfigError: a table or column is missing or has an unusable type.
    """
    dialect = conn.dialect
    logs_types = _reflect(conn, logs_table, LOG_FIELDS, info_columns, name)
    calls_types = _reflect(conn, calls_table, CALL_FIELDS, [], name)
    log_optional = optional_present(conn, name, logs_table, LOG_OPTIONAL, sink_name)
    call_optional = optional_present(conn, name, calls_table, CALL_OPTIONAL, sink_name)
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
    for info in info_columns:
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
    log_columns = [*LOG_FIELDS, *log_optional, *(c.column for c in info_columns)]
    call_columns = [*CALL_FIELDS, *call_optional]
    # Python-side defaults of the user's extra columns: bulk inserts must apply them.
    log_defaults = python_defaults(logs_table, log_columns)
    call_defaults = python_defaults(calls_table, call_columns)
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

    return WritePlan(
        dialect=name,
        logs=logs_table,
        calls=calls_table,
        info=list(info_columns),
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
        insert_logs=insert(logs_table, log_columns, "id"),
        insert_calls=insert(calls_table, call_columns, "log_id"),
        log_defaults=[default_maker(d) for _, d in log_defaults],
        call_defaults=[default_maker(d) for _, d in call_defaults],
        known={k: set() for k in ("function", "tracker", "level", "status")},
    )


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
