"""
Reading logs back from the SQL sink's tables: :meth:`SQLSink.read_logs`.

Logs come back in id order (creation order), a page at a time with keyset pagination
(``id > last``), each page with its calls from one ``IN`` query; no connection is held
while the caller consumes a page. Info keys stored in their own columns are merged
back into ``info``, and exact values kept under the reserved JSON key (values that did
not fit their column) replace the shortened copies, so the round trip is lossless.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from asynctrack._core.records import Call, Log
from asynctrack.sinks._sql.schema import RESERVED_KEY
from asynctrack.sinks._sql.values import loads

if TYPE_CHECKING:
    from asynctrack.sinks._sql.plan import WritePlan

__all__ = ["read_logs"]

_PAGE = 500
_UTC = _dt.UTC
_CALL_TEXT = ("function", "tracker", "level", "status", "error")


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def _time_param(value: Any, what: str, mode: str) -> _dt.datetime:
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"read_logs(): {what} is not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, _dt.datetime):
        raise ValueError(
            f"read_logs(): {what} must be a datetime or an ISO 8601 str, got {type(value).__name__}"
        )
    stamp = _utc(value)
    return stamp if mode == "aware" else stamp.replace(tzinfo=None)


def _decode(value: Any, decoded: bool) -> Any:
    # JSON-typed columns are decoded by SQLAlchemy (or asyncpg's codec); TEXT ones not.
    if decoded or not isinstance(value, (str, bytes)):
        return value
    return loads(value)


def _back(kind: str, value: Any, decoded: bool) -> Any:
    """
    Turn a value read from an info column back into its JSON form.
    """
    if kind in ("string", "text"):
        return value if isinstance(value, str) else str(value)
    if kind in ("integer", "bigint"):
        return int(value)
    if kind == "boolean":
        return bool(value)
    if kind == "float":
        return float(value)
    if kind == "datetime":
        if isinstance(value, _dt.datetime):
            return _utc(value).isoformat()
        return str(value)
    return _decode(value, decoded)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def read_logs(
    engine: AsyncEngine,
    plan: WritePlan,
    *,
    since: _dt.datetime | str | None = None,
    until: _dt.datetime | str | None = None,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> AsyncIterator[Log]:
    """
    Yield the logs of the plan's tables in id order; see :meth:`SQLSink.read_logs`.

    Raises:
        ValueError: a bad ``since``, ``until``, ``ids`` or ``limit``.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"read_logs(): limit must be an int >= 0 or None, got {limit!r}")
    if isinstance(ids, str):
        raise ValueError("read_logs(): ids must be a sequence of ids, not one str")
    logs_columns = {c.name: c for c in plan.logs.columns}
    calls_columns = {c.name: c for c in plan.calls.columns}
    log_names = plan.log_columns
    call_names = plan.call_columns
    log_select = [logs_columns[n] for n in log_names]
    call_select = [calls_columns[n] for n in call_names]
    decoded = {n: isinstance(logs_columns[n].type, sa.JSON) for n in log_names}
    decoded.update({f"calls.{n}": isinstance(calls_columns[n].type, sa.JSON) for n in call_names})
    id_column = logs_columns["id"]
    started = logs_columns["started_at"]
    log_id = calls_columns["log_id"]
    conditions: list[Any] = []
    if since is not None:
        conditions.append(started >= _time_param(since, "since", plan.ts_mode))
    if until is not None:
        conditions.append(started < _time_param(until, "until", plan.ts_mode))
    chunks: list[list[str]] | None = None
    if ids is not None:
        wanted = sorted({i for i in ids if isinstance(i, str)})
        chunks = [wanted[i : i + _PAGE] for i in range(0, len(wanted), _PAGE)]
    remaining = limit
    last: str | None = None
    while remaining is None or remaining > 0:
        page = _PAGE if remaining is None else min(_PAGE, remaining)
        if chunks is not None:
            if not chunks:
                break
            where: list[Any] = [id_column.in_(chunks.pop(0))]
        else:
            where = [id_column > last] if last is not None else []
        query = sa.select(*log_select).where(*conditions, *where).order_by(id_column).limit(page)
        async with engine.connect() as conn:
            conn = await conn.execution_options(asynctrack_read=True)
            rows = (await conn.execute(query)).all()
            call_rows: list[Any] = []
            if rows:
                page_ids = [row[0] for row in rows]
                call_query = (
                    sa.select(*call_select)
                    .where(log_id.in_(page_ids))
                    .order_by(log_id, calls_columns["seq"])
                )
                call_rows = list((await conn.execute(call_query)).all())
        if not rows:
            if chunks is None:
                break
            continue
        calls: dict[str, list[Call]] = {}
        for row in call_rows:
            call = _call(dict(zip(call_names, row, strict=True)), decoded)
            calls.setdefault(row[0], []).append(call)
        for row in rows:
            values = dict(zip(log_names, row, strict=True))
            yield _log(values, calls.get(row[0], []), plan, decoded)
        if remaining is not None:
            remaining -= len(rows)
        last = rows[-1][0]
        if chunks is None and len(rows) < page:
            break


def _log(
    values: dict[str, Any], calls: list[Call], plan: WritePlan, decoded: dict[str, bool]
) -> Log:
    info = dict(_mapping(_decode(values["info"], decoded["info"])))
    parent = values["parent_id"]
    # Columns added in 0.2 (#17): None when the table has no such column.
    trace = values.get("trace_id")
    remote = values.get("remote_parent")
    parent_seq = values.get("parent_seq")
    if RESERVED_KEY in info:
        special = info.pop(RESERVED_KEY)
        if isinstance(special, dict):
            if "parent_id" in special:
                parent = special["parent_id"]
            trace = special.get("trace_id", trace)
            remote = special.get("remote_parent", remote)
            parent_seq = special.get("parent_seq", parent_seq)
            if "__user__" in special:
                info[RESERVED_KEY] = special["__user__"]
    for column in plan.info:
        value = values[column.column]
        if value is not None and column.key not in info:
            info[column.key] = _back(column.kind, value, decoded[column.column])
    stamp = values["started_at"]
    if isinstance(stamp, str):
        stamp = _dt.datetime.fromisoformat(stamp)
    return Log(
        id=str(values["id"]),
        trace_id=trace,
        parent_id=parent,
        parent_seq=None if parent_seq is None else int(parent_seq),
        remote_parent=remote,
        started_at=_utc(stamp),
        duration_us=int(values["duration_us"] or 0),
        complete=bool(values["complete"]),
        info=info,
        calls=calls,
        dropped_calls=int(values["dropped_calls"] or 0),
    )


def _call(values: dict[str, Any], decoded: dict[str, bool]) -> Call:
    data = dict(_mapping(_decode(values["data"], decoded["calls.data"])))
    if RESERVED_KEY in data:
        special = data.pop(RESERVED_KEY)
        if isinstance(special, dict):
            for name in _CALL_TEXT:
                if name in special:
                    values[name] = special[name]
            if "__user__" in special:
                data[RESERVED_KEY] = special["__user__"]
    parent = values.get("parent_seq")
    traceback = values.get("traceback")
    if traceback is not None:
        traceback = _traceback(_decode(traceback, decoded["calls.traceback"]))
    return Call(
        seq=int(values["seq"]),
        parent=None if parent is None else int(parent),
        traceback=traceback,
        depth=int(values["depth"]),
        function=values["function"],
        tracker=values["tracker"],
        level=values["level"],
        params=_mapping(_decode(values["params"], decoded["calls.params"])),
        data=data,
        offset_us=int(values["offset_us"]),
        duration_us=int(values["duration_us"]),
        status=values["status"],
        error=values["error"],
    )


def _traceback(value: Any) -> list[tuple[str, int, str]] | None:
    # [[file, line, function], ...] as tuples; anything else (a hand-edited row) as None.
    if not isinstance(value, list):
        return None
    out: list[tuple[str, int, str]] = []
    for frame in value:
        if isinstance(frame, list) and len(frame) == 3:
            out.append((str(frame[0]), int(frame[1]), str(frame[2])))
    return out
