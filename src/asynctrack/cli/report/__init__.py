"""
``asynctrack report``: one self-contained HTML page of an application's activity.

The figures are aggregated where ``asynctrack stats`` aggregates them (in the
database, or in one streaming pass over JSON-lines files with a process per CPU);
the page embeds those aggregates and the few requests it shows whole, never all
the logs.

.. versionadded:: 0.2
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import orjson

from asynctrack.cli.report.build import CONTINUATION_DEPTH, assemble, trim_log
from asynctrack.cli.report.files import Found, scan_files
from asynctrack.cli.report.model import ReportQuery
from asynctrack.cli.report.page import render_page
from asynctrack.cli.stats import as_source, is_url
from asynctrack.cli.stats.model import FunctionRow, Report, utc
from asynctrack.cli.stats.percentiles import PERCENTILES

__all__ = ["ReportQuery", "build_report", "render_page", "write_report"]


def build_report(source: str, query: ReportQuery, warn: Callable[[str], None]) -> dict[str, Any]:
    """
    Return the page's data for the logs in ``source``.

    Raises:
        SourceError: the source cannot be read (missing file, bad URL, no tables).
    """
    # An SQLite file given as a path is read as the database it is, as by stats/show.
    source = as_source(source)
    if is_url(source):
        from asynctrack.cli.report.sql import sql_report

        return asyncio.run(sql_report(source, query))
    return _file_report(source, query, warn)


def write_report(
    source: str, path: str, query: ReportQuery, warn: Callable[[str], None]
) -> dict[str, Any]:
    """
    Build the report of ``source`` and write it to ``path`` (replaced atomically).

    Returns:
        The page's data.
    """
    data = build_report(source, query, warn)
    page = render_page(data)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(temporary, path)
    return data


def _file_report(source: str, query: ReportQuery, warn: Callable[[str], None]) -> dict[str, Any]:
    found = scan_files(source, query, warn)
    report = Report(source=source, percentiles=PERCENTILES, by=query.stats.by)
    for function, acc in found.accs.items():
        calls, total, maximum, values = acc.finish(PERCENTILES)
        if calls:
            row = FunctionRow(function, calls, acc.errors, total, maximum, values)
            report.functions.append(row)
    report.finish(None)
    slowest = [orjson.loads(item[-1]) for item in sorted(found.picks.slowest, reverse=True)]
    failures = [orjson.loads(item[-1]) for item in sorted(found.picks.failed, reverse=True)]
    continuations = _follow(slowest + failures, found)
    notes = []
    if found.bad:
        notes.append(f"{found.bad} malformed lines skipped")
    return assemble(
        source=source,
        query=query,
        logs=found.requests,
        failed=found.failed,
        durations=found.durations,
        first=utc(found.first),
        last=utc(found.last),
        series=found.series,
        heat=found.heat,
        functions=report.functions,
        groups=[(v, g[0], g[1], utc(g[2])) for v, g in found.groups.items()],
        slowest=[trim_log(log) for log in slowest],
        failures=[trim_log(log) for log in failures],
        continuations=continuations,
        notes=notes,
    )


def _follow(selected: list[dict[str, Any]], found: Found) -> dict[str, list[dict[str, Any]]]:
    """
    Return the continuations of the selected logs (and theirs), by parent id.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    wanted = {str(log.get("id")) for log in selected}
    for _ in range(CONTINUATION_DEPTH):
        following: set[str] = set()
        for parent in wanted:
            lines = found.picks.continuations.get(parent)
            if not lines or parent in out:
                continue
            logs = sorted(
                (orjson.loads(line) for line in lines), key=lambda d: str(d.get("started_at"))
            )
            out[parent] = [trim_log(log) for log in logs]
            following.update(str(log.get("id")) for log in logs)
        if not following:
            break
        wanted = following
    return out
