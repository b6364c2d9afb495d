"""
The page's data: aggregates and the selected requests as one JSON-ready dict.

Everything the page shows is computed here; the page only draws it. Numbers are
microseconds and epoch seconds; strings from logs are passed through untouched
(the page renders them as text, never as markup).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from asynctrack.cli.report.model import ReportQuery, Series, step_for
from asynctrack.cli.stats.model import FunctionRow
from asynctrack.cli.stats.percentiles import PERCENTILES, DurationAccumulator

__all__ = ["MAX_CALLS", "assemble", "trim_log"]

#: Functions listed in the table, and functions with a latency-over-time series.
MAX_FUNCTIONS = 500
SERIES_FUNCTIONS = 100
#: Users (or ``--by`` values) listed.
MAX_GROUPS = 100
#: Calls of one embedded request drawn in its waterfall; bytes of one embedded request.
MAX_CALLS = 1000
MAX_LOG_BYTES = 256 << 10
#: Continuations followed from a selected request (a continuation may have its own).
CONTINUATION_DEPTH = 4
_LOG_KEYS = (
    "id",
    "trace_id",
    "parent_id",
    "parent_seq",
    "remote_parent",
    "started_at",
    "duration_us",
    "complete",
    "dropped_calls",
    "info",
    "calls",
)


def trim_log(log: Mapping[str, Any]) -> dict[str, Any]:
    """
    Return the parts of a log's JSON form the page shows, within the page's bounds.

    A log with more than :data:`MAX_CALLS` calls keeps its first ones; one larger than
    :data:`MAX_LOG_BYTES` loses its params and data (``omitted`` says so).
    """
    out = {key: log[key] for key in _LOG_KEYS if key in log}
    calls = out.get("calls")
    if not isinstance(calls, list):
        calls = out["calls"] = []
    if len(calls) > MAX_CALLS:
        out["omitted_calls"] = len(calls) - MAX_CALLS
        out["calls"] = calls = calls[:MAX_CALLS]
    if len(orjson.dumps(out, option=orjson.OPT_PASSTHROUGH_DATETIME, default=str)) > MAX_LOG_BYTES:
        note = {"omitted": "too large for the report; see asynctrack show"}
        out["calls"] = [
            {**call, "params": note, "data": {}} if isinstance(call, dict) else call
            for call in calls
        ]
        out["info"] = note
    return out


def _series(series: Series, first: int | None, last: int | None) -> dict[str, Any]:
    """
    Return the request series on a continuous axis of at most :data:`MAX_POINTS` buckets.
    """
    if first is None or last is None or not series.buckets:
        return {"step": series.step, "t": [], "requests": [], "failed": [], "p": [[], [], []]}
    series.coarsen(step_for(last - first + 1))
    step = series.step
    lo, hi = first // step, last // step
    t: list[int] = []
    requests: list[int] = []
    failed: list[int] = []
    pcts: list[list[int | None]] = [[] for _ in PERCENTILES]
    for key in range(lo, hi + 1):
        t.append(key * step)
        bucket = series.buckets.get(key)
        n = bucket.requests() if bucket is not None else 0
        requests.append(n)
        failed.append(bucket.failed if bucket is not None else 0)
        values: list[int | None] = (
            list(bucket.durations.hist.percentiles(PERCENTILES))
            if bucket is not None and n
            else [None] * len(PERCENTILES)
        )
        for column, value in zip(pcts, values, strict=True):
            column.append(value)
    return {"step": step, "t": t, "requests": requests, "failed": failed, "p": pcts}


def _function_series(
    series: Series, first: int | None, last: int | None, names: Iterable[str]
) -> dict[str, Any]:
    if first is None or last is None:
        return {}
    step = series.step
    keys = range(first // step, last // step + 1)
    out: dict[str, Any] = {}
    for name in names:
        calls: list[int] = []
        avg: list[int | None] = []
        peak: list[int | None] = []
        errors: list[int] = []
        for key in keys:
            bucket = series.buckets.get(key)
            figures = bucket.functions.get(name) if bucket is not None else None
            if figures is None:
                calls.append(0)
                errors.append(0)
                avg.append(None)
                peak.append(None)
            else:
                calls.append(figures[0])
                errors.append(figures[1])
                avg.append(figures[2] // figures[0] if figures[0] else None)
                peak.append(figures[3])
        out[name] = {"calls": calls, "errors": errors, "avg": avg, "max": peak}
    return out


def _epoch(stamp: _dt.datetime | str | None) -> int | None:
    if stamp is None:
        return None
    if isinstance(stamp, str):
        stamp = _dt.datetime.fromisoformat(stamp)
    return int(stamp.timestamp())


def assemble(
    *,
    source: str,
    query: ReportQuery,
    logs: int,
    failed: int,
    durations: DurationAccumulator,
    first: _dt.datetime | None,
    last: _dt.datetime | None,
    series: Series,
    heat: list[int],
    functions: list[FunctionRow],
    groups: list[tuple[str | None, int, int, _dt.datetime | None]],
    slowest: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    continuations: dict[str, list[dict[str, Any]]],
    notes: list[str],
) -> dict[str, Any]:
    """
    Return the page's data (see the module docstring).

    ``functions`` are sorted busiest first; ``groups`` are ``(--by value, requests,
    failed requests, last start)``, in any order.
    """
    groups = sorted(groups, key=lambda g: (-g[1], -g[2], g[0] is None, g[0] or ""))
    durations.fold()
    request_p = durations.hist.percentiles(PERCENTILES) if durations.calls else [0, 0, 0]
    t0, t1 = _epoch(first), _epoch(last)
    timeline = _series(series, t0, t1)
    total_us = sum(row.total_us for row in functions) or 1
    shown = functions[:MAX_FUNCTIONS]
    if len(functions) > MAX_FUNCTIONS:
        notes.append(f"the function table lists the {MAX_FUNCTIONS} busiest of {len(functions)}")
    return {
        "title": query.title,
        "source": source,
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "by": query.stats.by,
        "functionFilter": list(query.stats.functions),
        "window": [t0, t1],
        "percentiles": list(PERCENTILES),
        "overview": {
            "requests": logs,
            "failed": failed,
            "calls": sum(row.calls for row in functions),
            "keys": len(groups),
            "p": request_p,
        },
        "series": timeline,
        "functions": [
            [
                row.function,
                row.calls,
                row.errors,
                row.total_us,
                row.max_us,
                *row.percentiles_us,
                round(row.total_us / total_us, 4),
            ]
            for row in shown
        ],
        "functionSeries": _function_series(
            series, t0, t1, [row.function for row in shown[:SERIES_FUNCTIONS]]
        ),
        "groups": [
            [value, requests, failed, _epoch(last)]
            for value, requests, failed, last in groups[:MAX_GROUPS]
        ],
        "heat": heat,
        "slowest": slowest,
        "failedRequests": failures,
        "continuations": continuations,
        "notes": notes,
    }
