"""
Log selection over the SQL sink's tables (``asynctrack show``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asynctrack._core.records import Call, Log
from asynctrack.cli.stats.db import connect
from asynctrack.cli.stats.files import with_continuations
from asynctrack.cli.stats.model import LogSelection, decode_json, utc
from asynctrack.cli.stats.sql import LOG_COLUMNS, Tables, where
from asynctrack.sinks._sql.layout import RESERVED_KEY

__all__ = ["logs_from_rows", "sql_select_logs"]


async def sql_select_logs(url: str, selection: LogSelection) -> list[Log]:
    """
    Return the selected logs from the SQL sink's tables at ``url``, oldest first, each
    followed by the continuations spawned from it.

    Head filters (user, time, duration, trace) are SQL conditions; the others need the
    calls and are applied to each page of candidates, newest first, until ``last``
    logs passed.

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
            return await _with_continuations(t, await logs_from_rows(t, rows))
        conds = []
        if selection.trace is not None:
            if "trace_id" not in t.log_columns:
                return []  # a database of 0.1: no trace ids
            params["trace"] = selection.trace
            conds.append("l.trace_id = :trace")
        else:
            conds.append("l.parent_id IS NULL")
        if selection.user is not None:
            conds.append(t.key_filter(selection.user_key, selection.user, params))
        if selection.since is not None:
            params["since"] = await db.time_param(selection.since, t.logs_name)
            conds.append("l.started_at >= :since")
        if selection.until is not None:
            params["until"] = await db.time_param(selection.until, t.logs_name)
            conds.append("l.started_at < :until")
        if selection.min_duration_us is not None:
            params["mindur"] = selection.min_duration_us
            conds.append("l.duration_us >= :mindur")
        picked: list[Log] = []
        page = max(selection.last, 100)
        offset = 0
        while len(picked) < selection.last:
            rows = await db.fetch(
                select + where(conds) + " ORDER BY l.started_at DESC, l.id DESC "
                f"LIMIT {int(page)} OFFSET {int(offset)}",
                params,
            )
            offset += len(rows)
            logs = await logs_from_rows(t, rows)
            logs.reverse()  # newest first
            picked += [log for log in logs if selection.matches(log)][
                : selection.last - len(picked)
            ]
            if len(rows) < page:
                break
        picked.sort(key=lambda log: (log.started_at, log.id))
        if selection.trace is not None:
            ids = {log.id for log in picked}
            picked = [log for log in picked if log.parent_id not in ids]
        return await _with_continuations(t, picked)
    finally:
        await db.close()


async def _with_continuations(t: Tables, logs: list[Log]) -> list[Log]:
    # The continuations of the logs (and theirs), level by level.
    children: dict[str, list[Log]] = {}
    wanted = [log.id for log in logs]
    seen = set(wanted)
    while wanted:
        params = {f"p{i}": ident for i, ident in enumerate(wanted[:500])}
        wanted = wanted[500:]
        marks = ", ".join(f":{name}" for name in params)
        rows = await t.db.fetch(f"SELECT * FROM {t.logs} l WHERE l.parent_id IN ({marks})", params)
        for log in await logs_from_rows(t, rows):
            if log.id in seen or log.parent_id is None:
                continue
            seen.add(log.id)
            children.setdefault(log.parent_id, []).append(log)
            wanted.append(log.id)
    return with_continuations(logs, children)


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
    # Columns added in 0.2 (#17), when the table has them.
    extra = [c for c in ("parent_seq", "traceback") if c in t.call_columns]
    more = "".join(f", {c}" for c in extra)
    calls = await t.db.fetch(
        "SELECT log_id, seq, depth, function, tracker, level, params, data, offset_us, "
        f"duration_us, status, error{more} FROM {t.calls} WHERE log_id IN ({marks}) "
        "ORDER BY log_id, seq",
        id_params,
    )
    for row in calls:
        call = _call_from_row(row)
        optional = dict(zip(extra, row[12:], strict=True))
        parent = optional.get("parent_seq")
        call.parent = None if parent is None else int(parent)
        tb = optional.get("traceback")
        if isinstance(tb, str | bytes):
            tb = decode_json(tb)
        if isinstance(tb, list):
            call.traceback = [(str(f[0]), int(f[1]), str(f[2])) for f in tb if len(f) == 3]
        by_id[row[0]].calls.append(call)
    for log in logs:
        log.calls = log.calls  # attach the calls' span ids to their log
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
    parent_seq = special.get("parent_seq", row.get("parent_seq"))
    return Log(
        id=str(row["id"]),
        trace_id=special.get("trace_id", row.get("trace_id")),
        parent_id=special.get("parent_id", row.get("parent_id")),
        parent_seq=None if parent_seq is None else int(parent_seq),
        remote_parent=special.get("remote_parent", row.get("remote_parent")),
        started_at=started,
        duration_us=int(row.get("duration_us") or 0),
        complete=bool(row.get("complete", True)),
        info=info,
        calls=[],
        dropped_calls=int(row.get("dropped_calls") or 0),
    )
