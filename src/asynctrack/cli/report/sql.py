"""
The report's figures from the SQL sink's tables, aggregated in the database.

``asynctrack stats`` computes the function table (same queries, same percentile
histograms). More grouped queries add what the page draws: request durations per
time bucket (histogram buckets, as ``stats`` computes them) from the logs alone;
failed requests per bucket and per user from a join of the failed first calls only
(a few percent of the calls); requests per user; requests per hour for the heatmap
(from the buckets when they fit in hours); call figures per function and time
bucket; and the few requests shown whole with their calls.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

from asynctrack.cli.report.build import CONTINUATION_DEPTH, SERIES_FUNCTIONS, assemble, trim_log
from asynctrack.cli.report.model import Bucket, ReportQuery, Series, step_for, weekday_hour
from asynctrack.cli.report.sqlite import sqlite_scan
from asynctrack.cli.stats.db import Database, PostgresDatabase, SQLiteDatabase, connect
from asynctrack.cli.stats.model import utc
from asynctrack.cli.stats.percentiles import DurationAccumulator, bucket_sql, bucket_sql_float
from asynctrack.cli.stats.sql import Tables, _stats, where
from asynctrack.cli.stats.sql_show import logs_from_rows

__all__ = ["sql_report"]

_ERR = "CASE WHEN {0}.status = 'error' THEN 1 ELSE 0 END"
_REQUEST_COND = "l.parent_id IS NULL"


def _epoch(db: Database) -> str:
    """
    Return the SQL expression of ``l.started_at`` in whole seconds since the epoch (UTC).
    """
    if db.dialect == "postgresql":
        return "CAST(floor(extract(epoch FROM l.started_at)) AS BIGINT)"
    if db.dialect == "mysql":
        return "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', l.started_at)"
    return "CAST(strftime('%s', l.started_at) AS INTEGER)"


def _div(db: Database, expr: str, step: int) -> str:
    # Integer division (the epoch is positive, so it is the floor).
    return f"({expr} DIV {step})" if db.dialect == "mysql" else f"({expr} / {step})"


async def sql_report(url: str, query: ReportQuery) -> dict[str, Any]:
    """
    Return the page's data for the SQL sink's tables at ``url``.

    Raises:
        SourceError: bad URL, unreachable server, missing tables.
    """
    db = await connect(url)
    try:
        t = await Tables.load(db, query.stats.table_prefix)
        return await _report(t, query)
    finally:
        await db.close()


async def _report(t: Tables, query: ReportQuery) -> dict[str, Any]:
    db = t.db
    # The function figures are stats' own; the users' figures are per request (below).
    stats = (await _stats(t, dataclasses.replace(query.stats, by=None))).finish(None)
    params: dict[str, Any] = {}
    log_conds = await t.log_filter(query.stats, params)
    # Requests are the logs that continue no other (#17); continuations count in the
    # function figures only, as in ``stats``.
    request_conds = [*log_conds, _REQUEST_COND]
    epoch = _epoch(db)
    first, last = stats.first, stats.last
    span = (last - first).total_seconds() if first is not None and last is not None else 0
    series = Series(step_for(span + 1))
    step = series.step
    postgres = db if isinstance(db, PostgresDatabase) else None
    if postgres is not None:
        # PostgreSQL cannot estimate how few groups these expressions make (it plans
        # for one per row) and then joins in one process: with parallel plans made
        # free the joins run in every worker, measured 1.5-2.5x faster on 1e6 logs.
        await postgres.settings(
            "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET enable_sort = off"
        )
    durations = DurationAccumulator(False)
    log_group_rows: list[tuple[Any, ...]] | None = None
    call_conds = _call_conds(t, query, stats.functions, log_conds, params)
    if isinstance(db, SQLiteDatabase):
        by = query.stats.by
        exprs = t.key_exprs(by, params) if by is not None else []
        durations, hour_counts, log_group_rows = await sqlite_scan(
            t, series, log_conds, call_conds, params, exprs
        )
        hours: list[tuple[Any, ...]] = list(hour_counts.items())
    else:
        await _grouped_series(t, series, durations, request_conds, call_conds, params)
        if 3600 % step == 0:
            # Each bucket lies within one hour: the heatmap needs no query of its own.
            hours = [(key * step // 3600, b.requests()) for key, b in series.buckets.items()]
        else:
            hours = await db.fetch(
                f"SELECT {_div(db, epoch, 3600)}, COUNT(*) FROM {t.logs} l"
                f"{where(request_conds)} GROUP BY 1",
                params,
            )
    heat = [0] * 168
    for hour, count in hours:
        moment = _dt.datetime.fromtimestamp(int(hour) * 3600, _dt.UTC)
        heat[weekday_hour(moment)] += int(count)
    # Failed requests (their first call ended in an error, a few percent of the calls)
    # by a join of those calls only.
    failed_total = 0
    failed_conds = [*request_conds, "r.seq = 0", "r.status = 'error'"]
    for key, failed in await db.fetch(
        f"SELECT {_div(db, epoch, step)}, COUNT(*) FROM {t.calls} r "
        f"JOIN {t.logs} l ON l.id = r.log_id{where(failed_conds)} GROUP BY 1",
        params,
    ):
        bucket = series.buckets.get(int(key))
        if bucket is not None:
            bucket.failed += int(failed)
            failed_total += int(failed)
    if postgres is not None:
        await postgres.settings(
            "RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET enable_sort"
        )
    groups = await _groups(t, query, log_conds, dict(params), log_group_rows)
    slowest, failures, continuations = await _selected(t, query, log_conds, params)
    return assemble(
        source=db.display,
        query=query,
        logs=stats.requests,
        failed=failed_total,
        durations=durations,
        first=first,
        last=last,
        series=series,
        heat=heat,
        functions=stats.functions,
        groups=groups,
        slowest=slowest,
        failures=failures,
        continuations=continuations,
        notes=[],
    )


async def _groups(
    t: Tables,
    query: ReportQuery,
    log_conds: list[str],
    params: dict[str, Any],
    log_rows: list[tuple[Any, ...]] | None,
) -> list[tuple[str | None, int, int, _dt.datetime | None]]:
    """
    Return ``(--by value, requests, failed requests, last start)`` per value.

    Values are grouped and rendered as ``stats --by`` does (the same canonical text
    from every backend). ``log_rows``: the requests per raw key value, if already read.
    """
    by = query.stats.by
    if by is None:
        return []
    db = t.db
    keys, group = t.grouped(t.key_exprs(by, params))
    out: dict[str | None, list[Any]] = {}
    if log_rows is None:
        log_rows = await db.fetch(
            f"SELECT {keys}, SUM(CASE WHEN {_REQUEST_COND} THEN 1 ELSE 0 END), "
            f"MAX(l.started_at) FROM {t.logs} l{where(log_conds)} GROUP BY {group}",
            params,
        )
    for value, count, last_text in t.keyed(by, log_rows):
        entry = out.setdefault(value, [0, 0, None])
        entry[0] += int(count)
        last = utc(last_text)
        if last is not None and (entry[2] is None or last > entry[2]):
            entry[2] = last
    failed_conds = [*log_conds, _REQUEST_COND, "r.seq = 0", "r.status = 'error'"]
    failed_rows = await db.fetch(
        f"SELECT {keys}, COUNT(*), 0 FROM {t.calls} r JOIN {t.logs} l ON l.id = r.log_id"
        f"{where(failed_conds)} GROUP BY {group}",
        params,
    )
    for value, count, _ in t.keyed(by, failed_rows):
        out.setdefault(value, [0, 0, None])[1] += int(count)
    return [(value, e[0], e[1], e[2]) for value, e in out.items()]


def _call_conds(
    t: Tables,
    query: ReportQuery,
    functions: list[Any],
    log_conds: list[str],
    params: dict[str, Any],
) -> list[str]:
    """
    Return the conditions on calls ``c`` (and their logs ``l``) for the function series:
    the filters, and the busiest functions when there are more than the page keeps.
    """
    conds = list(log_conds)
    fn_cond = t.function_filter(query.stats.functions, params)
    if fn_cond:
        conds.append(fn_cond)
    if len(functions) > SERIES_FUNCTIONS:
        names = {f"sf{i}": row.function for i, row in enumerate(functions[:SERIES_FUNCTIONS])}
        params.update(names)
        conds.append(f"c.function IN ({', '.join(':' + n for n in names)})")
    return conds


async def _grouped_series(
    t: Tables,
    series: Series,
    durations: DurationAccumulator,
    log_conds: list[str],
    call_conds: list[str],
    params: dict[str, Any],
) -> None:
    """
    Fill ``series`` with request durations and call figures, grouped in the database.
    """
    db = t.db
    epoch, step = _epoch(db), series.step
    bucket_expr = (bucket_sql_float if isinstance(db, PostgresDatabase) else bucket_sql)(
        "l.duration_us"
    )
    rows = await db.fetch(
        f"SELECT {_div(db, epoch, step)}, {bucket_expr}, COUNT(*), "
        f"MIN(l.duration_us), MAX(l.duration_us), SUM(l.duration_us) "
        f"FROM {t.logs} l{where(log_conds)} GROUP BY 1, 2",
        params,
    )
    for key, lower, count, minimum, maximum, total in rows:
        bucket = series.buckets.get(int(key))
        if bucket is None:
            bucket = series.buckets[int(key)] = Bucket()
        for acc in (bucket.durations, durations):
            acc.hist.add_bucket(int(lower), int(count), int(minimum), int(maximum))
            acc.calls += int(count)
            acc.total += int(total)
            acc.maximum = max(acc.maximum, int(maximum))
    fn_select, fn_group = t.grouped(["c.function"])
    rows = await db.fetch(
        f"SELECT {fn_select}, {_div(db, epoch, step)}, COUNT(*), "
        f"SUM({_ERR.format('c')}), SUM(c.duration_us), MAX(c.duration_us) "
        f"FROM {t.calls} c JOIN {t.logs} l ON l.id = c.log_id{where(call_conds)} "
        f"GROUP BY {fn_group}, 2",
        params,
    )
    for function, key, calls, errors, total, maximum in rows:
        bucket = series.buckets.get(int(key))
        if bucket is None:
            bucket = series.buckets[int(key)] = Bucket()
        bucket.functions[str(function)] = [int(calls), int(errors or 0), int(total), int(maximum)]


async def _selected(
    t: Tables, query: ReportQuery, log_conds: list[str], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """
    Return the slowest requests, the most recent failed ones, and their continuations.
    """
    db = t.db
    limit = int(query.selected)
    slow_rows = await db.fetch(
        f"SELECT l.* FROM {t.logs} l{where([*log_conds, _REQUEST_COND])} "
        f"ORDER BY l.duration_us DESC, l.started_at DESC, l.id DESC LIMIT {limit}",
        params,
    )
    failed_where = where([*log_conds, _REQUEST_COND, "r.status = 'error'"])
    failed_rows = await db.fetch(
        f"SELECT l.* FROM {t.logs} l JOIN {t.calls} r ON r.log_id = l.id AND r.seq = 0"
        f"{failed_where} "
        f"ORDER BY l.started_at DESC, l.id DESC LIMIT {limit}",
        params,
    )
    slowest = sorted(
        (log.to_dict() for log in await logs_from_rows(t, slow_rows)),
        key=lambda d: (int(d["duration_us"]), str(d["started_at"]), str(d["id"])),
        reverse=True,
    )
    failures = [log.to_dict() for log in await logs_from_rows(t, failed_rows)][::-1]
    continuations: dict[str, list[dict[str, Any]]] = {}
    wanted = {str(d["id"]) for d in slowest + failures}
    for _ in range(CONTINUATION_DEPTH):
        if not wanted:
            break
        id_params = {f"p{i}": ident for i, ident in enumerate(sorted(wanted))}
        marks = ", ".join(":" + n for n in id_params)
        rows = await db.fetch(
            f"SELECT l.* FROM {t.logs} l WHERE l.parent_id IN ({marks})", id_params
        )
        wanted = set()
        for log in await logs_from_rows(t, rows):
            d = log.to_dict()
            parent = str(d.get("parent_id"))
            continuations.setdefault(parent, []).append(trim_log(d))
            wanted.add(str(d["id"]))
    return [trim_log(d) for d in slowest], [trim_log(d) for d in failures], continuations
