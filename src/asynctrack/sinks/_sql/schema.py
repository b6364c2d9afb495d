"""
The SQL sink's schema: identifiers, info column types, the default tables, the checks
that a user's own tables (or tables found in the database) fit, and how values are
made to fit typed columns.

Two tables, ``{prefix}logs`` and ``{prefix}calls``::

    {prefix}logs   id PK, parent_id, started_at (indexed), duration_us, complete,
                   dropped_calls, info (JSON), trace_id (indexed), parent_seq,
                   remote_parent, one column per declared info key
    {prefix}calls  (log_id, seq) PK, depth, function (indexed), tracker, level,
                   params (JSON), data (JSON), offset_us, duration_us, status, error,
                   parent_seq (the call's parent), traceback (JSON)

JSON columns are ``JSONB`` on PostgreSQL (indexable, comparable). The columns added
in 0.2 (:data:`LOG_OPTIONAL`, :data:`CALL_OPTIONAL`) are optional: the sink adds them
to its own tables of a 0.1 database, and writes a user's own tables without them.

Every identifier that reaches SQL text comes from configuration and must match
:data:`IDENTIFIER`; values are always bound parameters.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import TypeEngine

from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._sql.layout import (
    CALL_FIELDS,
    CALL_OPTIONAL,
    LOG_FIELDS,
    LOG_OPTIONAL,
    MIN_LENGTH,
    RESERVED_KEY,
    table_names,
)

__all__ = [
    "CALL_FIELDS",
    "CALL_OPTIONAL",
    "IDENTIFIER",
    "LOG_FIELDS",
    "LOG_OPTIONAL",
    "MISSING",
    "RESERVED_KEY",
    "InfoColumn",
    "TextLimit",
    "check_identifier",
    "check_table",
    "compatible",
    "default_tables",
    "parse_columns",
    "text_limit",
    "type_kind",
]

#: What a table, column or info key name must look like (63 characters at most, the
#: PostgreSQL limit; MariaDB allows 64).
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_MIN_LENGTH = MIN_LENGTH

KINDS = ("string", "text", "integer", "bigint", "float", "boolean", "datetime", "json")
_ACCEPTED = (
    '"string(N)", "string" (= string(255)), "text", "integer", "bigint", "float", '
    '"boolean", "datetime", "json" (any case), or a SQLAlchemy type such as String(64)'
)
_EXPECTED = {
    "string": "a string type (VARCHAR or TEXT)",
    "text": "a string type (TEXT)",
    "integer": "an integer type",
    "bigint": "BIGINT",
    "float": "a floating-point type",
    "boolean": "BOOLEAN (or an integer type)",
    "datetime": "DATETIME/TIMESTAMP",
    "json": "JSON (or an unbounded TEXT type)",
}
_STRING_RE = re.compile(r"^string\s*\(\s*(\d+)\s*\)$")
_MAX_STRING = 16383  # the longest VARCHAR MariaDB allows in utf8mb4
_INDEXED_STRING = 255  # longer strings are not indexed (B-tree entry limits)
_MYSQL_TEXT_BYTES = {"TINYTEXT": 255, "TEXT": 65535, "MEDIUMTEXT": 16777215}

#: Types of the default schema. MariaDB needs microseconds and LONGTEXT spelled out.
_DATETIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: JSONB on PostgreSQL: users query these columns, and ``json`` cannot be indexed or
#: compared.
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_UTC = _dt.UTC
#: Marks a missing mapping value.
MISSING: Any = object()


@dataclass(frozen=True)
class InfoColumn:
    """
    An info key stored in its own column of the logs table.

    Attributes:
        key: the info key (``add_info(key, ...)``).
        column: the column's name.
        kind: one of :data:`KINDS`.
        length: the declared length of a ``string`` column, else ``None``.
    """

    key: str
    column: str
    kind: str
    length: int | None = None


@dataclass(frozen=True)
class TextLimit:
    """
    What a text column can hold: characters, UTF-8 bytes, NUL characters.
    """

    chars: int | None = None
    bytes: int | None = None
    nul: bool = True


def check_identifier(value: Any, what: str) -> str:
    """
    Return ``value`` if it is a valid SQL identifier for asynctrack.

    Raises:
        ConfigError: naming ``what``, when ``value`` is not a str matching
            :data:`IDENTIFIER`.
    """
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise ConfigError(
            f"{what} {quote(value)} is not a valid identifier (letters, digits and _, "
            "not starting with a digit, at most 63 characters)"
        )
    return value


def _kind_of_name(key: str, spec: str) -> tuple[str, int | None]:
    text = spec.strip().lower()
    match = _STRING_RE.match(text)
    if match:
        length = int(match.group(1))
        if not 1 <= length <= _MAX_STRING:
            raise ConfigError(
                f"SQLSink(columns=...): info key {quote(key)}: string length must be "
                f"1..{_MAX_STRING}, got {length}"
            )
        return "string", length
    if text == "string":
        return "string", 255
    if text in KINDS:
        return text, None
    raise ConfigError(
        f"SQLSink(columns=...): info key {quote(key)}: unknown column type {quote(spec)}; "
        f"accepted: {_ACCEPTED}"
    )


def type_kind(t: TypeEngine[Any]) -> tuple[str, int | None] | None:
    """
    Classify a SQLAlchemy type as one of :data:`KINDS` (with a length for strings).

    Returns:
        ``(kind, length)``, or ``None`` for a type the sink cannot store values in.
    """
    if isinstance(t, (sa.Enum, sa.Interval)):
        return None
    if isinstance(t, sa.Boolean):
        return "boolean", None
    if isinstance(t, sa.BigInteger):
        return "bigint", None
    if isinstance(t, sa.Integer):
        return "integer", None
    if isinstance(t, sa.Float):
        return "float", None
    if isinstance(t, sa.DateTime):
        return "datetime", None
    if isinstance(t, sa.JSON):
        return "json", None
    if isinstance(t, sa.String):
        length = t.length
        return ("text", None) if length is None else ("string", int(length))
    return None


def _kind_of_spec(key: str, spec: Any) -> tuple[str, int | None]:
    if isinstance(spec, str):
        return _kind_of_name(key, spec)
    if isinstance(spec, type) and issubclass(spec, TypeEngine):
        try:
            spec = spec()
        except Exception:
            raise ConfigError(
                f"SQLSink(columns=...): info key {quote(key)}: cannot instantiate {spec.__name__}; "
                f"accepted: {_ACCEPTED}"
            ) from None
    if isinstance(spec, TypeEngine):
        found = type_kind(spec)
        if found is None:
            raise ConfigError(
                f"SQLSink(columns=...): info key {quote(key)}: unsupported column type "
                f"{quote(spec)}; "
                f"accepted: {_ACCEPTED}"
            )
        kind, length = found
        if kind == "string" and length is not None and not 1 <= length <= _MAX_STRING:
            raise ConfigError(
                f"SQLSink(columns=...): info key {quote(key)}: string length must be "
                f"1..{_MAX_STRING}, got {length}"
            )
        return kind, length
    raise ConfigError(
        f"SQLSink(columns=...): info key {quote(key)}: expected a column type, got "
        f"{type(spec).__name__}; accepted: {_ACCEPTED}"
    )


def parse_columns(columns: Any, *, own_table: str | None = None) -> list[InfoColumn]:
    """
    Validate the ``columns`` option: which info keys get their own column.

    Args:
        columns: ``None`` or a mapping. For the default tables each value is a type
            (a name such as ``"string(64)"`` or a SQLAlchemy type) or a
            ``(column_name, type)`` pair; with the user's own logs table
            (``own_table`` is its name) each value is the name of an existing column.
        own_table: the name of the user's logs table, or ``None`` for the default one.

    Returns:
        The info columns; the kind is ``""`` for own tables until the table is checked.

    Raises:
        ConfigError: a bad key, type, column name, or two keys on one column.
    """
    if columns is None:
        return []
    if not isinstance(columns, Mapping):
        raise ConfigError(
            "SQLSink(columns=...) must be a mapping of info keys to column types "
            f"(or, with logs_table=..., to column names), got {type(columns).__name__}"
        )
    result: list[InfoColumn] = []
    seen: dict[str, str] = {}
    for key, spec in columns.items():
        check_identifier(key, "SQLSink(columns=...): info key")
        if key == RESERVED_KEY:
            raise ConfigError(f"SQLSink(columns=...): info key {quote(key)} is reserved")
        if own_table is not None:
            if not isinstance(spec, str):
                raise ConfigError(
                    f"SQLSink(columns=...): info key {quote(key)}: with logs_table=..., columns "
                    f"maps info keys to column names of {own_table!r}, got "
                    f"{type(spec).__name__}"
                )
            column, kind, length = spec, "", None
        else:
            column = key
            if isinstance(spec, (tuple, list)):  # a TOML file gives a list
                if len(spec) != 2:
                    raise ConfigError(
                        f"SQLSink(columns=...): info key {quote(key)}: expected a type or a "
                        "(column_name, type) pair"
                    )
                column, spec = spec[0], spec[1]
            kind, length = _kind_of_spec(key, spec)
        check_identifier(column, f"SQLSink(columns=...): column for info key {quote(key)}")
        if column.lower() in LOG_FIELDS:
            raise ConfigError(
                f"SQLSink(columns=...): info key {quote(key)}: column {column!r} is a fixed "
                "column of the logs table; map the key to another column"
            )
        other = seen.get(column.lower())
        if other is not None:
            raise ConfigError(
                f"SQLSink(columns=...): info keys {quote(other)} and {quote(key)} both map to "
                f"column {column!r}"
            )
        seen[column.lower()] = key
        result.append(InfoColumn(key, column, kind, length))
    return result


def sa_type(kind: str, length: int | None = None) -> TypeEngine[Any]:
    """
    Return the column type the default schema uses for ``kind``.
    """
    if kind == "string":
        return sa.String(length or 255)
    if kind == "text":
        return _TEXT
    if kind == "integer":
        return sa.Integer()
    if kind == "bigint":
        return sa.BigInteger()
    if kind == "float":
        return sa.Double()
    if kind == "boolean":
        return sa.Boolean()
    if kind == "datetime":
        return _DATETIME
    if kind == "json":
        return _JSON
    raise ValueError(f"unknown kind {kind!r}")  # pragma: no cover - kinds are validated


def _index_name(table: str, column: str) -> str:
    name = f"ix_{table}_{column}"
    if len(name) > 63:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:52]}_{digest}"
    return name


def _table_names(prefix: Any) -> tuple[str, str]:
    if not isinstance(prefix, str):
        raise ConfigError(f"SQLSink(table_prefix=...) must be a str, got {type(prefix).__name__}")
    logs, calls = table_names(prefix)
    check_identifier(logs, "SQLSink(table_prefix=...): table name")
    check_identifier(calls, "SQLSink(table_prefix=...): table name")
    return logs, calls


def default_tables(
    metadata: sa.MetaData, prefix: str = "track_", columns: Any = None
) -> tuple[sa.Table, sa.Table]:
    """
    Define the sink's default tables in ``metadata``: ``{prefix}logs`` and ``{prefix}calls``.

    Args:
        metadata: where to add the tables.
        prefix: table name prefix.
        columns: info keys with their own column, as for ``SQLSink(columns=...)``.

    Returns:
        ``(logs_table, calls_table)``.

    Raises:
        ConfigError: a bad prefix or ``columns`` entry.

    .. versionadded:: 0.1
    """
    logs_name, calls_name = _table_names(prefix)
    info_columns = parse_columns(columns)
    logs = sa.Table(
        logs_name,
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("started_at", _DATETIME, nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("dropped_calls", sa.Integer(), nullable=False, default=0, server_default="0"),
        *[sa.Column(c.column, sa_type(c.kind, c.length), nullable=True) for c in info_columns],
        sa.Column("info", _JSON, nullable=True),
        *optional_columns(LOG_OPTIONAL),
        sa.Index(_index_name(logs_name, "started_at"), "started_at"),
        sa.Index(_index_name(logs_name, "trace_id"), "trace_id"),
        *[
            sa.Index(_index_name(logs_name, c.column), c.column)
            for c in info_columns
            if c.kind not in ("text", "json")
            and not (c.kind == "string" and (c.length or 0) > _INDEXED_STRING)
        ],
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    calls = sa.Table(
        calls_name,
        metadata,
        sa.Column("log_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("function", sa.String(255), nullable=False),
        sa.Column("tracker", sa.String(255), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("params", _JSON, nullable=True),
        sa.Column("data", _JSON, nullable=True),
        sa.Column("offset_us", sa.BigInteger(), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", _TEXT, nullable=True),
        *optional_columns(CALL_OPTIONAL),
        sa.Index(_index_name(calls_name, "function"), "function"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    return logs, calls


def optional_columns(fields: Mapping[str, str]) -> list[sa.Column[Any]]:
    """
    Return the default schema's (nullable) columns for the optional ``fields``.
    """
    return [
        sa.Column(name, sa_type(kind, MIN_LENGTH.get(name)), nullable=True)
        for name, kind in fields.items()
    ]


def index_name(table: str, column: str) -> str:
    """
    Return the name of the default schema's index of ``column`` in ``table``.
    """
    return _index_name(table, column)


def compatible(kind: str, t: TypeEngine[Any], dialect: str, min_length: int = 0) -> bool:
    """
    Return True when a column of type ``t`` can store values of ``kind``.

    ``t`` may come from the user's ``Table`` or from reflection (MariaDB reflects JSON
    as LONGTEXT and BOOLEAN as TINYINT, both accepted).
    """
    if isinstance(t, (sa.Enum, sa.Interval)):
        return False
    if kind in ("string", "text"):
        if not isinstance(t, sa.String):
            return False
        length = t.length
        return length is None or length >= min_length
    if kind == "integer":
        return isinstance(t, sa.Integer) and not isinstance(t, sa.Boolean)
    if kind == "bigint":
        # SQLite's INTEGER is 64-bit whatever it is called.
        return isinstance(t, sa.BigInteger) or (dialect == "sqlite" and isinstance(t, sa.Integer))
    if kind == "float":
        return isinstance(t, sa.Float)
    if kind == "boolean":
        return isinstance(t, (sa.Boolean, sa.Integer))
    if kind == "datetime":
        return isinstance(t, sa.DateTime)
    if kind == "json":
        return isinstance(t, sa.JSON) or (isinstance(t, sa.String) and t.length is None)
    return False  # pragma: no cover - kinds are validated


def text_limit(t: TypeEngine[Any], dialect: str) -> TextLimit:
    """
    Return what a (reflected) string column of type ``t`` can hold on ``dialect``.
    """
    chars = getattr(t, "length", None)
    size: int | None = None
    if dialect in ("mysql", "mariadb"):
        size = _MYSQL_TEXT_BYTES.get(type(t).__name__.upper())
    # PostgreSQL text cannot contain NUL (U+0000); JSON escapes it as \u0000.
    return TextLimit(chars=chars, bytes=size, nul=dialect != "postgresql")


def describe(kind: str) -> str:
    """
    Return a human description of the column types accepted for ``kind``.
    """
    return _EXPECTED[kind]


def _columns_by_name(table: sa.Table) -> dict[str, sa.Column[Any]]:
    return {c.name: c for c in table.columns}


def _has_unique(table: sa.Table, names: Iterable[str]) -> bool:
    wanted = set(names)
    if {c.name for c in table.primary_key.columns} == wanted:
        return True
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            if {c.name for c in constraint.columns} == wanted:
                return True
    for index in table.indexes:
        if index.unique and {getattr(c, "name", None) for c in index.expressions} == wanted:
            return True
    return any(c.unique and {c.name} == wanted for c in table.columns)


def check_table(
    table: Any,
    role: str,
    fields: Mapping[str, str],
    info: list[InfoColumn] | None = None,
    dialect: str = "",
) -> list[InfoColumn]:
    """
    Check that the user's own ``table`` can serve as the logs or calls table.

    Args:
        table: the user's ``sqlalchemy.Table`` (e.g. ``MyLog.__table__``).
        role: ``"logs_table"`` or ``"calls_table"`` (named in error messages).
        fields: the fixed columns required and their kinds.
        info: the info columns mapped onto this table (logs table only).
        dialect: the database's dialect name (SQLite accepts INTEGER for BIGINT).

    Returns:
        The info columns with their kinds taken from the table.

    Raises:
        ConfigError: naming the table, column and info key that do not fit.
    """
    if not isinstance(table, sa.Table):
        raise ConfigError(
            f"SQLSink({role}=...) must be a sqlalchemy.Table (e.g. MyModel.__table__), "
            f"got {type(table).__name__}"
        )
    name = check_identifier(table.name, f"SQLSink({role}=...): table name")
    if table.schema is not None:
        check_identifier(table.schema, f"SQLSink({role}=...): schema name")
    columns = _columns_by_name(table)
    for field, kind in fields.items():
        column = columns.get(field)
        if column is None:
            raise ConfigError(
                f"SQLSink({role}=...): table {name!r} has no column {field!r} "
                f"(required: {', '.join(fields)})"
            )
        if not compatible(kind, column.type, dialect, _MIN_LENGTH.get(field, 0)):
            raise ConfigError(
                f"SQLSink({role}=...): table {name!r}, column {field!r} has type "
                f"{column.type!r}; expected {describe(kind)}"
                + (f" of at least {_MIN_LENGTH[field]} characters" if field in _MIN_LENGTH else "")
            )
    key_columns = ("id",) if "id" in fields else ("log_id", "seq")
    if not _has_unique(table, key_columns):
        raise ConfigError(
            f"SQLSink({role}=...): table {name!r} needs a primary key or unique constraint on "
            f"({', '.join(key_columns)}) so that a replayed batch creates no duplicates"
        )
    resolved: list[InfoColumn] = []
    for col in info or []:
        column = columns.get(col.column)
        if column is None:
            raise ConfigError(
                f"SQLSink(columns=...): table {name!r} has no column {col.column!r} for info "
                f"key {col.key!r}"
            )
        found = type_kind(column.type)
        if found is None:
            raise ConfigError(
                f"SQLSink(columns=...): table {name!r}, column {col.column!r} for info key "
                f"{col.key!r} has unsupported type {column.type!r}; expected a string, "
                "integer, float, boolean, datetime or JSON type"
            )
        resolved.append(InfoColumn(col.key, col.column, found[0], found[1]))
    used = set(fields) | {c.column for c in resolved}
    for column in table.columns:
        if column.name in used:
            continue
        default = column.default
        if default is not None and not (
            getattr(default, "is_scalar", False) or getattr(default, "is_callable", False)
        ):
            raise ConfigError(
                f"SQLSink({role}=...): table {name!r}, column {column.name!r} has a SQL "
                "expression as Python-side default, which the sink's bulk inserts cannot "
                "apply; use server_default=... instead"
            )
        if column.nullable or default is not None or column.server_default is not None:
            continue
        if (
            column.primary_key
            and column.autoincrement is not False
            and isinstance(column.type, sa.Integer)
        ):
            continue
        raise ConfigError(
            f"SQLSink({role}=...): table {name!r}, column {column.name!r} is NOT NULL without "
            "a default, and the sink does not write it"
        )
    return resolved
