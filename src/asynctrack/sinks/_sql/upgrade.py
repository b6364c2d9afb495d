"""
The columns added in 0.2 (#17): adding them to a 0.1 database, finding which ones a
user's own tables have, and JSON text that PostgreSQL's JSONB accepts.

The sink's own default tables of a database written by 0.1 get the missing columns at
open (``ALTER TABLE … ADD COLUMN``); a user's own tables are never altered: a missing
optional column is reported once and its field is not stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import sqlalchemy as sa

from asynctrack._core.jsonb import NEG_ZERO, needs_nul_escape, nul_escape
from asynctrack._core.jsonsafe import jsonable
from asynctrack._core.selfwarn import report
from asynctrack._exceptions import ConfigError
from asynctrack.sinks._sql.layout import MIN_LENGTH
from asynctrack.sinks._sql.schema import compatible, describe, index_name
from asynctrack.sinks._sql.values import dumps

__all__ = [
    "add_new_columns",
    "json_text",
    "jsonb_dumps",
    "jsonb_safe",
    "needs_jsonb_care",
    "optional_present",
]


def add_new_columns(conn: sa.Connection, dialect: str, table: sa.Table, fields: Any) -> None:
    """
    Add the optional ``fields`` that the database's ``table`` lacks (a 0.1 database).

    One transaction on SQLite and PostgreSQL; MariaDB commits each ALTER TABLE, so
    the table gets all its columns in one statement.
    """
    inspector = sa.inspect(conn)
    prep = conn.dialect.identifier_preparer
    found = {c["name"].lower() for c in inspector.get_columns(table.name, table.schema)}
    missing = [table.columns[n] for n in fields if n.lower() not in found]
    if not missing:
        return
    clauses = [
        f"ADD COLUMN {prep.format_column(c)} {c.type.compile(dialect=conn.dialect)} NULL"
        for c in missing
    ]
    target = prep.format_table(table)
    if dialect == "mysql":
        conn.exec_driver_sql(f"ALTER TABLE {target} {', '.join(clauses)}")
    else:
        for clause in clauses:
            conn.exec_driver_sql(f"ALTER TABLE {target} {clause}")
    if any(c.name == "trace_id" for c in missing):
        sa.Index(index_name(table.name, "trace_id"), table.c.trace_id).create(conn)


def optional_present(
    conn: sa.Connection,
    dialect: str,
    table: sa.Table,
    fields: Mapping[str, str],
    sink_name: str,
) -> dict[str, Any]:
    """
    Return the optional columns both ``table`` and the database have, with their types.

    A user's table without some of them is written without them (reported once).

    Raises:
        ConfigError: a column exists with a type that cannot hold its field.
    """
    inspector = sa.inspect(conn)
    found = {c["name"].lower(): c["type"] for c in inspector.get_columns(table.name, table.schema)}
    present: dict[str, Any] = {}
    missing: list[str] = []
    for column, kind in fields.items():
        t = found.get(column.lower())
        if column not in table.columns or t is None:
            missing.append(column)
            continue
        if not compatible(kind, t, dialect, MIN_LENGTH.get(column, 0)):
            raise ConfigError(
                f"SQLSink: table {table.fullname!r} in the database, column {column!r} has "
                f"type {t!r}; expected {describe(kind)}"
            )
        present[column] = t
    if missing:
        report(
            f"sql-optional-columns:{sink_name}:{table.fullname}",
            f"asynctrack: SQLSink {sink_name}: table {table.fullname!r} has no column "
            f"{', '.join(map(repr, missing))} (added in asynctrack 0.2, trace model); "
            "those fields are not stored",
        )
    return present


# A float orjson writes with a positive exponent ("1e20"): JSONB stores it as an exact
# numeric and gives it back as the integer 100000000000000000000.
# -0.0: JSONB's numbers have no negative zero.
_POSITIVE_EXPONENT = re.compile(r"[0-9][eE]\+?[0-9]|-0\.0(?![0-9])")


def needs_jsonb_care(text: str) -> bool:
    """
    Return True when JSON ``text`` would not come back from JSONB as written.
    """
    return needs_nul_escape(text) or _POSITIVE_EXPONENT.search(text) is not None


def jsonb_ready(obj: Any) -> Any:
    """
    Return ``obj`` ready for JSONB: NUL characters escaped (reversibly), large
    integral floats written as ``100000000000000000000.0`` so that they stay floats,
    integers beyond 64 bits as they are (orjson would refuse them), -0.0 as a marked
    string that readers turn back into -0.0.
    """
    if isinstance(obj, str):
        return nul_escape(obj)
    if type(obj) is float:
        if obj == 0.0 and math.copysign(1.0, obj) < 0:
            return NEG_ZERO
        if obj.is_integer() and b"e" in orjson.dumps(obj):
            return orjson.Fragment(b"%d.0" % int(obj))
        return obj
    if type(obj) is int and not -(2**63) <= obj < 2**64:
        try:
            return orjson.Fragment(b"%d" % obj)  # orjson refuses ints beyond 64 bits
        except ValueError:  # beyond CPython's int-to-text limit: the general path
            return obj
    if isinstance(obj, dict):
        return {nul_escape(k): jsonb_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonb_ready(v) for v in obj]
    return obj


def jsonb_dumps(obj: Any) -> str:
    """
    Encode ``obj`` as JSON text that JSONB gives back unchanged.
    """
    try:
        return orjson.dumps(jsonb_ready(obj)).decode()
    except (TypeError, ValueError):
        pass
    # What orjson refuses (lone surrogates, ints past CPython's digit limit): the
    # encoder's last resort first, as the other databases get it.
    safe = jsonable(obj)
    try:
        return orjson.dumps(jsonb_ready(safe)).decode()
    except (TypeError, ValueError):  # pragma: no cover - jsonable's output encodes
        return dumps(nul_escape(safe))


def json_text(obj: Any, jsonb: bool) -> str:
    """
    Encode ``obj`` for a JSON column; for a JSONB one, see :func:`jsonb_dumps`.
    """
    text = dumps(obj)
    if jsonb and needs_jsonb_care(text):
        text = jsonb_dumps(obj)
    return text


def jsonb_safe(
    convert: Callable[[Any], tuple[Any, bool]],
) -> Callable[[Any], tuple[Any, bool]]:
    """
    Wrap the converter of a JSONB info column (see :func:`jsonb_dumps`).
    """

    def safe(value: Any) -> tuple[Any, bool]:
        stored, exact = convert(value)
        if isinstance(stored, str) and needs_jsonb_care(stored):
            return jsonb_dumps(value), exact
        return stored, exact

    return safe
