"""
Log selection over the SQL sink's tables (``asynctrack show``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asynctrack._core.records import Call, Log
from asynctrack.cli.stats.db import connect
from asynctrack.cli.stats.model import LogSelection, decode_json, utc
from asynctrack.cli.stats.sql import LOG_COLUMNS, Tables

__all__ = ["logs_from_rows", "sql_select_logs"]

#: The SQL sink keeps, under this key of ``info``/``data``, exact values that did not
#: fit their columns (sinks/_sql_schema.py RESERVED_KEY); ``show`` puts them back.
RESERVED_KEY = "__asynctrack__"


async def sql_select_logs(url: str, selection: LogSelection) -> list[Log]:
    """
    Return the selected logs from the SQL sink's tables at ``url``, oldest first.

    Raises:
        SourceError: bad URL, unreachable server, missing tables.
    """
    db = await connect(url)
    try:
        t = await Tables.load(db, selection.table_prefix)
        params: dict[str, Any] = {}
        select = f"SELECT * FROM {t.logs} l"
        if selection.id is not None:
            params["id"] = selection.id
            rows = await db.fetch(select + " WHERE l.id = :id", params)
        elif selection.user is None:
            rows = await db.fetch(
                select + f" ORDER BY l.started_at DESC, l.id DESC LIMIT {int(selection.last)}",
                params,
            )
        else:
            rows = await _rows_of_user(t, selection, params)
        return await logs_from_rows(t, rows)
    finally:
        await db.close()


async def _rows_of_user(
    t: Tables, selection: LogSelection, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """
    Return the latest ``selection.last`` rows whose info key is ``selection.user``.

    The SQL condition may let a few other rows through (see ``Tables.key_filter``):
    each row is checked with the canonical key text, and the query is repeated with a
    larger limit while rows were left out and more may follow.
    """
    key, value, want = selection.user_key, str(selection.user), int(selection.last)
    cond = t.key_filter(key, value, params)
    columns = t.log_columns
    has_column = key in columns and key not in LOG_COLUMNS
    limit = want
    while True:
        rows = await t.db.fetch(
            f"SELECT * FROM {t.logs} l WHERE {cond} "
            f"ORDER BY l.started_at DESC, l.id DESC LIMIT {limit}",
            params,
        )
        kept = []
        for row in rows:
            record = dict(zip(columns, row, strict=True))
            info = record.get("info")
            doc = "D" + info.decode() if isinstance(info, bytes) else "D" + str(info or "{}")
            column = record.get(key) if has_column else None
            if t.key_of(key, doc, column) == value:
                kept.append(row)
        if len(kept) >= want or len(rows) < limit:
            return kept[:want]
        limit *= 4


async def logs_from_rows(t: Tables, rows: list[tuple[Any, ...]]) -> list[Log]:
    """
    Return the logs of rows of the logs table (all its columns), with their calls,
    oldest first.
    """
    columns = t.log_columns
    logs = [_log_from_row(t, dict(zip(columns, row, strict=True))) for row in rows]
    logs.sort(key=lambda log: (log.started_at, log.id))
    if not logs:
        return logs
    by_id = {log.id: log for log in logs}
    id_params = {f"i{i}": ident for i, ident in enumerate(by_id)}
    marks = ", ".join(f":{name}" for name in id_params)
    calls = await t.db.fetch(
        "SELECT log_id, seq, depth, function, tracker, level, params, data, offset_us, "
        f"duration_us, status, error FROM {t.calls} WHERE log_id IN ({marks}) "
        "ORDER BY log_id, seq",
        id_params,
    )
    for row in calls:
        by_id[row[0]].calls.append(_call_from_row(row))
    return logs


def _call_from_row(row: tuple[Any, ...]) -> Call:
    data = _json(row[7])
    special = _reserved(data)
    text = {
        name: special.get(name, row[i])
        for name, i in (
            ("function", 3),
            ("tracker", 4),
            ("level", 5),
            ("status", 10),
            ("error", 11),
        )
    }
    return Call(
        seq=int(row[1]),
        depth=int(row[2]),
        function=str(text["function"]),
        tracker=str(text["tracker"] or ""),
        level=str(text["level"] or "DEFAULT"),
        params=_json(row[6]),
        data=data,
        offset_us=int(row[8] or 0),
        duration_us=int(row[9] or 0),
        status=str(text["status"] or "ok"),
        error=None if text["error"] is None else str(text["error"]),
    )


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str | bytes):
        # Exact: orjson would read ints beyond 64 bits as floats (#15).
        value = decode_json(value)
    return dict(value) if isinstance(value, Mapping) else {"value": value}


def _column_value(kind: str | None, value: Any) -> Any:
    # Columns give what the driver reads: 0/1 for SQLite and MariaDB booleans, the
    # text of JSON columns. The logs show the values as the JSON form has them.
    if kind == "bool" and isinstance(value, int):
        return bool(value)
    if kind == "json" and isinstance(value, str | bytes):
        try:
            return decode_json(value)
        except ValueError:
            return value
    return value


def _reserved(values: dict[str, Any]) -> dict[str, Any]:
    """
    Pop the SQL sink's reserved key (exact values that did not fit their columns).
    """
    special = values.pop(RESERVED_KEY, None)
    if not isinstance(special, dict):
        return {}
    if "__user__" in special:  # the application's own value under that key
        values[RESERVED_KEY] = special["__user__"]
    return special


def _log_from_row(t: Tables, row: dict[str, Any]) -> Log:
    info = _json(row.get("info"))
    special = _reserved(info)
    for key, value in row.items():
        if key not in LOG_COLUMNS and value is not None and key not in info:
            info[key] = _column_value(t.kinds.get(key), value)
    started = utc(row["started_at"])
    assert started is not None
    return Log(
        id=str(row["id"]),
        parent_id=special.get("parent_id", row.get("parent_id")),
        started_at=started,
        duration_us=int(row.get("duration_us") or 0),
        complete=bool(row.get("complete", True)),
        info=info,
        calls=[],
        dropped_calls=int(row.get("dropped_calls") or 0),
    )
