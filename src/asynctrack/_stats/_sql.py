"""
Statistics and log selection over the SQL sink's tables.

Counts, errors, sums and maxima are aggregated in SQL. Percentiles (see
``_percentiles``):

* approximate (default): the histogram buckets are computed in SQL on PostgreSQL and
  MariaDB (one grouped query; a few hundred rows come back); on SQLite, whose
  ``GROUP BY`` sorts, streaming ``(function, status, duration_us)`` through the driver
  and bucketing in Python measured faster;
* exact (``--exact``): ``percentile_disc`` on PostgreSQL; on SQLite and MariaDB the
  durations are streamed and ranked in Python (SQLite has no percentile function and
  window functions measured 3-4x slower).

``--by`` uses two grouped queries (logs per key; calls per key) merged in Python.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .._records import Call, Log
from ._db import Database, connect
from ._model import (
    FunctionRow,
    LogSelection,
    Report,
    SourceError,
    StatsQuery,
    merge_groups,
    utc,
)
from ._percentiles import PERCENTILES, DurationAccumulator, Histogram, bucket_sql

__all__ = ["sql_select_logs", "sql_stats"]

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]*$")
_LOG_COLUMNS = ("id", "parent_id", "started_at", "duration_us", "complete", "dropped_calls", "info")
_ERR = "CASE WHEN c.status = 'error' THEN 1 ELSE 0 END"


@dataclass
class _Tables:
    db: Database
    logs_name: str
    logs: str
    calls: str
    log_columns: list[str]

    @classmethod
    async def load(cls, db: Database, prefix: str) -> _Tables:
        if not _PREFIX_RE.match(prefix):
            raise SourceError(f"invalid table prefix {prefix!r}: letters, digits and _ only")
        logs, calls = f"{prefix}logs", f"{prefix}calls"
        columns = await db.columns(logs)
        await db.columns(calls)
        return cls(db, logs, db.quote(logs), db.quote(calls), columns)

    def key_expr(self, key: str, params: dict[str, Any]) -> str:
        """
        Return a SQL expression for the info ``key`` of log ``l``, as text.
        """
        if key in self.log_columns and key not in _LOG_COLUMNS:
            return "l." + self.db.quote(key)
        dialect = self.db.dialect
        if dialect == "postgresql":
            params["key"] = key
            return "(l.info ->> CAST(:key AS TEXT))"
        escaped = key.replace("\\", "\\\\").replace('"', '\\"')
        params["kpath"] = f'$."{escaped}"'
        if dialect == "sqlite":
            return (
                "(CASE json_type(l.info, :kpath) WHEN 'true' THEN 'true' "
                "WHEN 'false' THEN 'false' ELSE CAST(json_extract(l.info, :kpath) AS TEXT) END)"
            )
        return (
            "(CASE WHEN JSON_TYPE(JSON_EXTRACT(l.info, :kpath)) = 'NULL' THEN NULL "
            "ELSE JSON_UNQUOTE(JSON_EXTRACT(l.info, :kpath)) END)"
        )

    def function_filter(self, patterns: tuple[str, ...], params: dict[str, Any]) -> str | None:
        """
        Return a case-sensitive SQL condition on ``c.function`` for glob ``patterns``.
        """
        if not patterns:
            return None
        dialect = self.db.dialect
        parts = []
        for i, pattern in enumerate(patterns):
            name = f"fn{i}"
            if dialect == "sqlite":
                params[name] = pattern.replace("[", "[[]")
                parts.append(f"c.function GLOB :{name}")
                continue
            like = []
            for ch in pattern:
                if ch in "%_\\":
                    like.append("\\" + ch)
                else:
                    like.append({"*": "%", "?": "_"}.get(ch, ch))
            params[name] = "".join(like)
            op = "LIKE BINARY" if dialect == "mysql" else "LIKE"
            parts.append(f"c.function {op} :{name}")
        return "(" + " OR ".join(parts) + ")"

    async def log_filter(self, query: StatsQuery, params: dict[str, Any]) -> list[str]:
        conds = []
        if query.since is not None:
            params["since"] = await self.db.time_param(query.since, self.logs_name)
            conds.append("l.started_at >= :since")
        if query.until is not None:
            params["until"] = await self.db.time_param(query.until, self.logs_name)
            conds.append("l.started_at < :until")
        return conds


def _where(conds: list[str]) -> str:
    return (" WHERE " + " AND ".join(conds)) if conds else ""


async def sql_stats(url: str, query: StatsQuery) -> Report:
    """
    Compute the statistics of the logs in the SQL sink's tables at ``url``.

    Raises:
        SourceError: bad URL, unreachable server, missing tables.
    """
    db = await connect(url)
    try:
        tables = await _Tables.load(db, query.table_prefix)
        return await _stats(tables, query)
    finally:
        await db.close()


async def _stats(t: _Tables, query: StatsQuery) -> Report:
    db = t.db
    params: dict[str, Any] = {}
    log_conds = await t.log_filter(query, params)
    fn_cond = t.function_filter(query.functions, params)
    call_conds = log_conds + ([fn_cond] if fn_cond else [])
    join = f" JOIN {t.logs} l ON l.id = c.log_id" if log_conds else ""
    calls_from = f"FROM {t.calls} c{join}{_where(call_conds)}"

    rows = await db.fetch(
        f"SELECT COUNT(*), MIN(l.started_at), MAX(l.started_at) FROM {t.logs} l"
        + _where(log_conds),
        params,
    )
    report = Report(
        source=db.display,
        logs=int(rows[0][0] or 0),
        first=utc(rows[0][1]),
        last=utc(rows[0][2]),
        exact=query.exact,
        percentiles=PERCENTILES,
        by=query.by,
    )
    if db.dialect == "postgresql" and query.exact:
        fractions = ", ".join(repr(p / 100) for p in PERCENTILES)
        sql = (
            f"SELECT c.function, COUNT(*), SUM({_ERR}), SUM(c.duration_us), MAX(c.duration_us), "
            f"percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY c.duration_us) "
            f"{calls_from} GROUP BY 1"
        )
        for function, calls, errors, total, maximum, values in await db.fetch(sql, params):
            report.functions.append(
                FunctionRow(
                    function, int(calls), int(errors), int(total), int(maximum),
                    [int(v) for v in values],
                )
            )
    elif db.dialect == "sqlite" or query.exact:
        accs: dict[str, DurationAccumulator] = {}
        sql = f"SELECT c.function, c.status, c.duration_us {calls_from}"
        async for batch in db.stream(sql, params):
            for function, status, duration in batch:
                acc = accs.get(function)
                if acc is None:
                    acc = accs[function] = DurationAccumulator(query.exact)
                acc.buf.append(duration)
                if status == "error":
                    acc.errors += 1
            for acc in accs.values():
                acc.maybe_fold()
        for function, acc in accs.items():
            calls, total, maximum, values = acc.finish(PERCENTILES)
            report.functions.append(
                FunctionRow(function, calls, acc.errors, total, maximum, values)
            )
    else:
        sql = (
            f"SELECT c.function, {bucket_sql('c.duration_us')}, COUNT(*), SUM({_ERR}), "
            f"SUM(c.duration_us), MIN(c.duration_us), MAX(c.duration_us) "
            f"{calls_from} GROUP BY 1, 2"
        )
        merged: dict[str, tuple[Histogram, list[int]]] = {}
        for function, lower, count, errors, total, minimum, maximum in await db.fetch(sql, params):
            entry = merged.get(function)
            if entry is None:
                entry = merged[function] = (Histogram(), [0, 0, 0, 0])
            hist, sums = entry
            hist.add_bucket(int(lower), int(count), int(minimum), int(maximum))
            sums[0] += int(count)
            sums[1] += int(errors)
            sums[2] += int(total)
            sums[3] = max(sums[3], int(maximum))
        for function, (hist, (calls, errors, total, maximum)) in merged.items():
            report.functions.append(
                FunctionRow(function, calls, errors, total, maximum, hist.percentiles(PERCENTILES))
            )
    if query.by is not None:
        key = t.key_expr(query.by, params)
        log_rows = await db.fetch(
            f"SELECT {key}, COUNT(*), MAX(l.started_at) FROM {t.logs} l{_where(log_conds)} "
            "GROUP BY 1",
            params,
        )
        fn_where = _where([fn_cond] if fn_cond else [])
        call_rows = await db.fetch(
            f"SELECT {key}, SUM(cc.n), SUM(cc.e) FROM {t.logs} l JOIN "
            f"(SELECT c.log_id AS log_id, COUNT(*) AS n, SUM({_ERR}) AS e FROM {t.calls} c"
            f"{fn_where} GROUP BY c.log_id) cc ON cc.log_id = l.id{_where(log_conds)} GROUP BY 1",
            params,
        )
        report.groups = merge_groups(log_rows, call_rows)  # type: ignore[arg-type]
    return report


async def sql_select_logs(url: str, selection: LogSelection) -> list[Log]:
    """
    Return the selected logs from the SQL sink's tables at ``url``, oldest first.

    Raises:
        SourceError: bad URL, unreachable server, missing tables.
    """
    db = await connect(url)
    try:
        t = await _Tables.load(db, selection.table_prefix)
        params: dict[str, Any] = {}
        select = f"SELECT * FROM {t.logs} l"
        if selection.id is not None:
            params["id"] = selection.id
            rows = await db.fetch(select + " WHERE l.id = :id", params)
        else:
            conds = []
            if selection.user is not None:
                conds.append(f"{t.key_expr(selection.user_key, params)} = :user")
                params["user"] = selection.user
            rows = await db.fetch(
                select + _where(conds) + f" ORDER BY l.started_at DESC, l.id DESC "
                f"LIMIT {int(selection.last)}",
                params,
            )
        columns = t.log_columns
        logs = [_log_from_row(dict(zip(columns, row, strict=True))) for row in rows]
        logs.sort(key=lambda log: (log.started_at, log.id))
        if not logs:
            return logs
        by_id = {log.id: log for log in logs}
        id_params = {f"i{i}": ident for i, ident in enumerate(by_id)}
        marks = ", ".join(f":{name}" for name in id_params)
        calls = await db.fetch(
            "SELECT log_id, seq, depth, function, tracker, level, params, data, offset_us, "
            f"duration_us, status, error FROM {t.calls} WHERE log_id IN ({marks}) "
            "ORDER BY log_id, seq",
            id_params,
        )
        for row in calls:
            by_id[row[0]].calls.append(
                Call(
                    seq=int(row[1]),
                    depth=int(row[2]),
                    function=str(row[3]),
                    tracker=str(row[4] or ""),
                    level=str(row[5] or "DEFAULT"),
                    params=_json(row[6]),
                    data=_json(row[7]),
                    offset_us=int(row[8] or 0),
                    duration_us=int(row[9] or 0),
                    status=str(row[10] or "ok"),
                    error=None if row[11] is None else str(row[11]),
                )
            )
        return logs
    finally:
        await db.close()


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str | bytes):
        value = orjson.loads(value)
    return dict(value) if isinstance(value, Mapping) else {"value": value}


def _log_from_row(row: dict[str, Any]) -> Log:
    info = {
        key: value
        for key, value in row.items()
        if key not in _LOG_COLUMNS and value is not None
    }
    info.update(_json(row.get("info")))
    started = utc(row["started_at"])
    assert started is not None
    return Log(
        id=str(row["id"]),
        parent_id=row.get("parent_id"),
        started_at=started,
        duration_us=int(row.get("duration_us") or 0),
        complete=bool(row.get("complete", True)),
        info=info,
        calls=[],
        dropped_calls=int(row.get("dropped_calls") or 0),
    )
