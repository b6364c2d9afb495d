"""
Output of ``asynctrack stats``: an aligned table, JSON or CSV.

The JSON and CSV layouts are part of the documented interface (docs/cli.md):
durations are integers in microseconds, times ISO 8601 in UTC, error shares percents
with two decimals.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Sequence
from typing import Any

import orjson

from asynctrack.cli.stats.model import FunctionRow, GroupRow, Report

__all__ = ["FUNCTION_FIELDS", "GROUP_FIELDS", "format_report", "human_us"]

FUNCTION_FIELDS = (
    "function",
    "calls",
    "errors",
    "error_pct",
    "avg_us",
    "p50_us",
    "p95_us",
    "p99_us",
    "max_us",
)
GROUP_FIELDS = (
    "value",
    "requests",
    "failed_requests",
    "request_error_pct",
    "logs",
    "calls",
    "errors",
    "error_pct",
    "last_seen",
)


def human_us(us: int) -> str:
    """
    Return a duration in microseconds with a human unit: ``850 µs``, ``12.3 ms``, ``1.25 s``.
    """
    if us < 1000:
        return f"{us} µs"
    for unit, scale in (("ms", 1_000), ("s", 1_000_000)):
        value = us / scale
        if value < 9.995:
            return f"{value:.2f} {unit}"
        if value < 99.95:
            return f"{value:.1f} {unit}"
        if value < 999.5 or unit == "s":
            return f"{value:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="microseconds")


def _when(moment: _dt.datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _span(first: _dt.datetime, last: _dt.datetime) -> str:
    seconds = int((last - first).total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "min")) if n]
    return " ".join([*parts, f"{secs} s"][:3])


def _function_dict(row: FunctionRow, percentiles: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "function": row.function,
        "calls": row.calls,
        "errors": row.errors,
        "error_pct": row.error_pct,
        "avg_us": row.avg_us,
    }
    for p, value in zip(percentiles, row.percentiles_us, strict=True):
        out[f"p{p}_us"] = value
    out["max_us"] = row.max_us
    return out


def _group_dict(row: GroupRow) -> dict[str, Any]:
    return {
        "value": row.value,
        "requests": row.requests,
        "failed_requests": row.failed,
        "request_error_pct": _pct(row.failed, row.requests),
        "logs": row.logs,
        "calls": row.calls,
        "errors": row.errors,
        "error_pct": round(100 * row.errors / row.calls, 2) if row.calls else 0.0,
        "last_seen": _iso(row.last_seen),
    }


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def report_dict(report: Report) -> dict[str, Any]:
    """
    Return the JSON form of a report (the ``--format json`` output).
    """
    return {
        "source": report.source,
        "requests": report.requests,
        "failed_requests": report.failed,
        "request_error_pct": _pct(report.failed, report.requests),
        "logs": report.logs,
        "calls": report.calls,
        "first": _iso(report.first),
        "last": _iso(report.last),
        "exact": report.exact,
        "functions": [_function_dict(r, report.percentiles) for r in report.functions],
        "by": report.by,
        "groups": [_group_dict(g) for g in report.groups] if report.by is not None else [],
        "skipped_lines": report.skipped_lines,
    }


def format_report(report: Report, fmt: str) -> str:
    """
    Render a report as ``table``, ``json`` or ``csv`` text (ending with a newline).
    """
    if fmt == "json":
        return orjson.dumps(report_dict(report), option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        return _csv(report)
    return _table(report)


def _csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if report.by is not None:
        writer.writerow(GROUP_FIELDS)
        for group in report.groups:
            d = _group_dict(group)
            writer.writerow(["" if d[k] is None else d[k] for k in GROUP_FIELDS])
    else:
        writer.writerow(FUNCTION_FIELDS)
        for row in report.functions:
            d = _function_dict(row, report.percentiles)
            writer.writerow([d[k] for k in FUNCTION_FIELDS])
    return buf.getvalue()


def _align(header: Sequence[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """
    Return aligned lines: the first ``left`` columns left-aligned, the others right.
    """
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _table(report: Report) -> str:
    lines = [f"source       {report.source}"]
    skipped = f"  ({report.skipped_lines} malformed lines skipped)" if report.skipped_lines else ""
    failed = f" ({_pct(report.failed, report.requests):.1f} % failed)" if report.requests else ""
    lines.append(f"requests     {report.requests:,}{failed}")
    lines.append(f"logs         {report.logs:,}    calls {report.calls:,}{skipped}")
    if report.first is not None and report.last is not None:
        lines.append(
            f"time span    {_when(report.first)} → {_when(report.last)} UTC"
            f"  ({_span(report.first, report.last)})"
        )
    method = "exact" if report.exact else "approximate, within 3.2 % (--exact for exact values)"
    lines.append(f"percentiles  nearest rank, {method}")
    lines.append("")
    if report.functions:
        header = ["function", "calls", "errors", "err %", "avg"]
        header += [f"p{p}" for p in report.percentiles] + ["max"]
        rows = [
            [
                r.function,
                f"{r.calls:,}",
                f"{r.errors:,}",
                f"{r.error_pct:.1f}",
                human_us(r.avg_us),
                *(human_us(v) for v in r.percentiles_us),
                human_us(r.max_us),
            ]
            for r in report.functions
        ]
        lines += _align(header, rows)
    else:
        lines.append("no calls")
    if report.by is not None:
        lines.append("")
        header = [report.by, "requests", "req err %", "logs", "calls", "errors", "err %"]
        header.append("last seen (UTC)")
        rows = [
            [
                "(none)" if g.value is None else g.value,
                f"{g.requests:,}",
                f"{100 * g.failed / g.requests:.1f}" if g.requests else "0.0",
                f"{g.logs:,}",
                f"{g.calls:,}",
                f"{g.errors:,}",
                f"{100 * g.errors / g.calls:.1f}" if g.calls else "0.0",
                _when(g.last_seen),
            ]
            for g in report.groups
        ]
        lines += _align(header, rows)
    return "\n".join(lines) + "\n"
