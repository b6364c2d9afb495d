"""
Statistics over recorded logs, for the ``asynctrack`` command line.

A *source* is a JSON-lines file (with its rotations, or a glob), an SQLite database
file, or a database URL (anything containing ``://``) holding the SQL sink's tables.
"""

from __future__ import annotations

import asyncio
import glob
import os
from collections.abc import Callable

from asynctrack._core.records import Log
from asynctrack.cli.stats.files import file_stats, select_file_logs
from asynctrack.cli.stats.format import format_report
from asynctrack.cli.stats.model import LogSelection, Report, SourceError, StatsQuery
from asynctrack.cli.stats.show import render_logs

__all__ = [
    "LogSelection",
    "Report",
    "SourceError",
    "StatsQuery",
    "as_source",
    "compute_stats",
    "format_report",
    "is_sqlite_header",
    "is_url",
    "render_logs",
    "select_logs",
]


_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_HEADER_SIZE = 100


def is_url(source: str) -> bool:
    """
    Return True when ``source`` is a database URL rather than a file path or glob.
    """
    return "://" in source


def as_source(source: str) -> str:
    """
    Return ``source``, or the ``sqlite:///`` URL of an SQLite database given as a path.

    ``asynctrack stats track.db`` names the SQL sink's default database by its file
    name; reading it as JSON lines would report thousands of malformed lines (#14).
    A glob that matches a database is refused, since a database is read alone.

    Raises:
        SourceError: a glob matched an SQLite database.
    """
    if is_url(source):
        return source
    if os.path.isfile(source):
        if _is_sqlite(source):
            return "sqlite:///" + os.path.abspath(source)
        return source
    if glob.has_magic(source):
        for path in glob.iglob(source):
            if os.path.isfile(path) and _is_sqlite(path):
                raise SourceError(
                    f"{path} (matched by {source!r}) is an SQLite database, not a JSON-lines "
                    f"file: read it alone, as {path} or sqlite:///{path}"
                )
    return source


def _is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return is_sqlite_header(f.read(_SQLITE_HEADER_SIZE))
    except OSError:
        return False  # reported by the file reader


def is_sqlite_header(head: bytes) -> bool:
    """
    Return True when ``head`` (a file's first 100 bytes) is an SQLite database header.

    The 16-byte magic alone is not enough: a JSON-lines file may begin with those
    bytes too (a stray line, a fuzzer's input), and reading it as a database would
    refuse the whole file. The fields SQLite itself checks before reading a file are
    checked here as well: a power-of-two page size, file format versions 1 or 2 and
    the fixed payload fractions 64, 32, 32.
    """
    if len(head) < _SQLITE_HEADER_SIZE or not head.startswith(_SQLITE_MAGIC):
        return False
    page = int.from_bytes(head[16:18], "big")
    if page == 1:
        page = 65_536
    if page < 512 or page & (page - 1):
        return False
    return head[18] in (1, 2) and head[19] in (1, 2) and head[21:24] == b"\x40\x20\x20"


def compute_stats(
    source: str, query: StatsQuery, warn: Callable[[str], None], top: int | None = None
) -> Report:
    """
    Compute the statistics of ``source``, sorted, keeping the ``top`` rows.

    Args:
        source: JSON-lines path or glob, or database URL.
        query: what to compute.
        warn: receives one-line warnings (malformed lines skipped).
        top: keep only this many functions and groups (most calls first).

    Returns:
        The report.

    Raises:
        SourceError: the source cannot be read (missing file, bad URL, no tables).
    """
    source = as_source(source)
    if is_url(source):
        from asynctrack.cli.stats.sql import sql_stats

        report = asyncio.run(sql_stats(source, query))
    else:
        report = file_stats(source, query, warn)
    return report.finish(top)


def select_logs(source: str, selection: LogSelection, warn: Callable[[str], None]) -> list[Log]:
    """
    Return the logs ``selection`` names from ``source``, oldest first.

    Raises:
        SourceError: the source cannot be read (missing file, bad URL, no tables).
    """
    source = as_source(source)
    if is_url(source):
        from asynctrack.cli.stats.sql_show import sql_select_logs

        return asyncio.run(sql_select_logs(source, selection))
    return select_file_logs(source, selection, warn)
