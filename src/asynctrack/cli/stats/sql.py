"""
Statistics over the SQL sink's tables (``Tables`` is shared with ``_sql_show``).

Counts, errors, sums and maxima are aggregated in SQL. Percentiles (see
``_percentiles``):

* approximate (default): the histogram buckets are computed in SQL on PostgreSQL and
  MariaDB (one grouped query; a few hundred rows come back); on SQLite, whose
  ``GROUP BY`` sorts, streaming ``(function, error flag, duration_us)`` through the
  driver and bucketing in Python measured faster;
* exact (``--exact``): ``percentile_disc`` on PostgreSQL; on SQLite and MariaDB the
  durations are streamed and ranked in Python (SQLite has no percentile function and
  window functions measured 3-4x slower).

``--by`` uses two grouped queries (logs per key; calls per key) merged in Python.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from asynctrack._core.jsonb import NEG_ZERO, NUL_MARK, nul_escape
from asynctrack.cli.stats.db import Database, PostgresDatabase, SQLiteDatabase, connect
from asynctrack.cli.stats.model import (
    FunctionRow,
    Report,
    SourceError,
    StatsQuery,
    decode_json,
    json_key_text,
    key_text,
    merge_groups,
    utc,
)
from asynctrack.cli.stats.percentiles import (
    PERCENTILES,
    DurationAccumulator,
    Histogram,
    bucket_sql,
    bucket_sql_float,
)
from asynctrack.cli.stats.sqlite_parts import (
    PART_ROWS,
    accumulate,
    start_sqlite_durations,
)
from asynctrack.sinks._sql.layout import table_names

__all__ = ["LOG_COLUMNS", "PART_ROWS", "Tables", "sql_stats"]


def dumps(value: Any) -> str:
    """
    Return JSON text as the SQL sink writes it (orjson; the stdlib for what orjson refuses).
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]*$")
LOG_COLUMNS = (
    "id",
    "parent_id",
    "started_at",
    "duration_us",
    "complete",
    "dropped_calls",
    "info",
    # added in 0.2 (#17); absent from a database written by 0.1
    "trace_id",
    "parent_seq",
    "remote_parent",
)
_ERR = "CASE WHEN c.status = 'error' THEN 1 ELSE 0 END"
#: 1 for a log that is a request (not a continuation of another log, #17).
_REQUEST = "CASE WHEN l.parent_id IS NULL THEN 1 ELSE 0 END"


@dataclass
class Tables:
    """
    The logs and calls tables of one prefix, and the dialect-specific SQL around them.

    Attributes:
        db: the connection.
        logs_name: the logs table's name, unquoted.
        logs: the logs table's name, quoted for SQL.
        calls: the calls table's name, quoted for SQL.
        log_columns: the logs table's column names (info keys may have their own).
        call_columns: the calls table's column names.
    """

    db: Database
    logs_name: str
    logs: str
    calls: str
    log_columns: list[str]
    kinds: dict[str, str] = field(default_factory=dict)
    call_columns: list[str] = field(default_factory=list)

    @classmethod
    async def load(cls, db: Database, prefix: str) -> Tables:
        """
        Find the tables of ``prefix``.

        Raises:
            SourceError: a bad prefix, or a table that does not exist.
        """
        if not _PREFIX_RE.match(prefix):
            raise SourceError(f"invalid table prefix {prefix!r}: letters, digits and _ only")
        logs, calls = table_names(prefix)
        columns = await db.columns(logs)
        call_columns = await db.columns(calls)
        kinds = await db.column_kinds(logs)
        return cls(db, logs, db.quote(logs), db.quote(calls), columns, kinds, call_columns)

    def key_exprs(self, key: str, params: dict[str, Any]) -> list[str]:
        """
        Return SQL expressions for the info ``key`` of log ``l``, decoded by :meth:`key_of`.

        The first is the key's value in the ``info`` JSON as JSON text, tagged ``F``
        (``'F"alice"'``, ``'F18446744073709551617'``), or the whole document tagged
        ``D`` where the database cannot extract the key exactly (a PostgreSQL document
        holding ``\\u0000``, which its JSON functions refuse; an SQLite key its paths
        cannot spell): JSON text keeps every value exact and apart (NUL, ints beyond 64
        bits, floats, booleans), and Python renders it canonically (#15). The second,
        if the logs table has a column for the key, is that column: the SQL sink keeps a
        value in the JSON when its column could not hold it exactly. JSON is parsed
        only where the key's text occurs in it (a substring test), which spares almost
        every row when the key has a column.
        """
        dialect = self.db.dialect
        simple = key.isascii() and key.isprintable() and '"' not in key and "\\" not in key
        if dialect == "postgresql":
            info = "CAST(l.info AS TEXT)"  # the column may be JSON, JSONB or TEXT
            if "\x00" in key:  # PostgreSQL takes no NUL in a text parameter
                extract = f"('D' || {info})"
            else:
                params["key"] = key
                params["knul"] = "\\u0000"
                extract = (
                    f"(CASE WHEN strpos({info}, CAST(:knul AS TEXT)) > 0 THEN 'D' || {info} "
                    f"ELSE 'F' || CAST(CAST(l.info AS JSON) -> CAST(:key AS TEXT) AS TEXT) END)"
                )
            contains = f"strpos({info}, CAST(:kneedle AS TEXT)) > 0"
        elif dialect == "sqlite":
            if key.isprintable() and '"' not in key and "\\" not in key:
                params["kpath"] = f'$."{key}"'
                extract = "('F' || (l.info -> :kpath))"
            else:
                extract = "('D' || l.info)"
            contains = "instr(l.info, :kneedle) > 0"
        else:
            if key.isidentifier():
                params["kpath"] = f'$."{key}"'
                extract = "CONCAT('F', JSON_EXTRACT(l.info, :kpath))"
            else:
                # MariaDB's JSON paths refuse many quoted keys ("-", "a b"): a syntax
                # error is a warning and NULL, so such keys are read in Python.
                extract = "CONCAT('D', l.info)"
            contains = "LOCATE(:kneedle, l.info) > 0"
        if simple:
            # The sink writes keys verbatim ("user"); a key that could be escaped is not
            # pre-filtered.
            params["kneedle"] = f'"{key}"'
            exprs = [f"(CASE WHEN {contains} THEN {extract} END)"]
        else:
            exprs = [extract]
        if key in self.log_columns and key not in LOG_COLUMNS:
            column = "l." + self.db.quote(key)
            if dialect == "postgresql" and self.kinds.get(key) == "json":
                column = f"CAST({column} AS TEXT)"  # json has no equality operator
            exprs.append(column)
        return exprs

    def key_of(self, key: str, tagged: Any, column: Any = None) -> str | None:
        """
        Return the canonical text of the info ``key`` from the values of :meth:`key_exprs`.
        """
        if isinstance(tagged, bytes):
            tagged = tagged.decode("utf-8", "replace")
        if isinstance(tagged, str) and tagged:
            if tagged[0] == "F":
                return json_key_text(tagged[1:])
            try:
                doc = decode_json(tagged[1:])
            except ValueError:
                doc = None
            if isinstance(doc, dict) and key in doc:
                return key_text(doc[key])
        return self.column_text(key, column)

    def column_text(self, key: str, value: Any) -> str | None:
        """
        Return the canonical text of a value read from the key's own column.
        """
        if value is None:
            return None
        kind = self.kinds.get(key)
        if kind == "bool" and isinstance(value, int):
            return "true" if value else "false"
        if kind == "json" and isinstance(value, (str, bytes)):
            return json_key_text(value)
        return key_text(value)

    def keyed(
        self, key: str, rows: list[tuple[Any, ...]], column: bool | None = None
    ) -> list[tuple[Any, ...]]:
        """
        Reduce ``(tagged json, [column value,] a, b, ...)`` rows to ``(canonical text,
        a, b, ...)``; ``column``: the key has its own column (two leading values).
        Without it, rows of four values are taken to have both (``(value, a, b)`` rows).
        """
        if column is None:
            column = bool(rows) and len(rows[0]) == 4
        if column:
            return [(self.key_of(key, row[0], row[1]), *row[2:]) for row in rows]
        return [(self.key_of(key, row[0]), *row[1:]) for row in rows]

    def key_filter(self, key: str, value: str, params: dict[str, Any]) -> str:
        """
        Return a SQL condition true for every log ``l`` whose info ``key`` is ``value``.

        It may hold for a few more (documents the database cannot search, columns it
        cannot compare exactly): callers check each row with :meth:`key_of`.
        """
        exprs = self.key_exprs(key, params)
        candidates = [dumps(value)]
        try:
            parsed = decode_json(value)
        except ValueError:
            parsed = None
        if parsed is not None and not isinstance(parsed, str) and key_text(parsed) == value:
            candidates.append(dumps(parsed))
        if self.db.dialect == "postgresql":
            # As JSONB holds it (#17): NUL characters escaped, -0.0 marked, large
            # integral floats written out.
            if "\x00" in value or NUL_MARK in value:
                candidates.append(dumps(nul_escape(value)))
            if type(parsed) is float and key_text(parsed) == value:
                if parsed == 0.0 and math.copysign(1.0, parsed) < 0:
                    candidates.append(dumps(NEG_ZERO))
                elif parsed.is_integer() and "e" in dumps(parsed):
                    candidates.append(f"{int(parsed)}.0")
        names = []
        for i, text in enumerate(candidates):
            params[f"kj{i}"] = "F" + text
            names.append(f":kj{i}")
        mysql = self.db.dialect == "mysql"
        binary = "BINARY " if mysql else ""
        also = "'D%'"
        if isinstance(parsed, (dict, list)):
            # Objects may have been written with their keys in another order.
            also = "'D%' OR " + f"{exprs[0]} LIKE '{'F{' if isinstance(parsed, dict) else 'F['}%'"
        cond = f"({binary}{exprs[0]} IN ({', '.join(names)}) OR {exprs[0]} LIKE {also})"
        if len(exprs) > 1:
            if "\x00" not in value or self.db.dialect != "postgresql":
                params["kvalue"] = value
            text = f"CAST({exprs[1]} AS {'CHAR' if mysql else 'TEXT'})"
            kind = self.kinds.get(key)
            if "\x00" in value and self.db.dialect == "postgresql":
                column = "1 = 0"  # PostgreSQL text holds no NUL (nor takes it as a parameter)
            elif kind == "bool" and value in ("true", "false"):
                params["kbit"] = "1" if value == "true" else "0"
                column = f"{text} IN (:kvalue, :kbit)"
            elif kind is None:
                column = f"{binary}{text} = :kvalue"
            else:
                column = "1 = 1"  # JSON columns: compared in Python
            cond = f"({cond} OR ({exprs[0]} IS NULL AND {column}))"
        return cond

    def grouped(self, exprs: list[str]) -> tuple[str, str]:
        """
        Return ``(select list, GROUP BY list)`` for grouping by ``exprs``, distinct values apart.

        MariaDB's default collations are case- and trailing-space-insensitive, so it
        groups by the bytes (``BINARY``) and selects the (identical) values with ``MIN``.
        """
        if self.db.dialect == "mysql":
            return (
                ", ".join(f"MIN({e})" for e in exprs),
                ", ".join(f"BINARY {e}" for e in exprs),
            )
        return ", ".join(exprs), ", ".join(str(i + 1) for i in range(len(exprs)))

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
            if dialect == "mysql":
                # LIKE BINARY matches bytes: its _ would take one byte of a multi-byte
                # character. A binary collation compares characters, case-sensitively.
                parts.append(
                    f"CONVERT(c.function USING utf8mb4) COLLATE utf8mb4_bin "
                    f"LIKE CONVERT(:{name} USING utf8mb4) COLLATE utf8mb4_bin"
                )
            else:
                parts.append(f"c.function LIKE :{name}")
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


def where(conds: list[str]) -> str:
    return (" WHERE " + " AND ".join(conds)) if conds else ""


async def sql_stats(url: str, query: StatsQuery) -> Report:
    """
    Compute the statistics of the logs in the SQL sink's tables at ``url``.

    Raises:
        SourceError: bad URL, unreachable server, missing tables.
    """
    db = await connect(url)
    try:
        tables = await Tables.load(db, query.table_prefix)
        return await _stats(tables, query)
    finally:
        await db.close()


async def _stats(t: Tables, query: StatsQuery) -> Report:
    db = t.db
    params: dict[str, Any] = {}
    log_conds = await t.log_filter(query, params)
    fn_cond = t.function_filter(query.functions, params)
    call_conds = log_conds + ([fn_cond] if fn_cond else [])
    join = f" JOIN {t.logs} l ON l.id = c.log_id" if log_conds else ""
    calls_from = f"FROM {t.calls} c{join}{where(call_conds)}"
    # The error flag comes back as 0/1 (cached small ints): no string per row.
    stream_sql = f"SELECT c.function, {_ERR}, c.duration_us {calls_from}"
    pending = None
    if isinstance(db, SQLiteDatabase):
        # The worker processes stream the calls while this one runs the other queries.
        pending = await start_sqlite_durations(
            db, t, stream_sql, call_conds, dict(params), query.exact
        )

    rows = await db.fetch(
        f"SELECT COUNT(*), MIN(l.started_at), MAX(l.started_at), SUM({_REQUEST}) "
        f"FROM {t.logs} l" + where(log_conds),
        params,
    )
    failed = await db.fetch(f"SELECT COUNT(*) {_failed_from(t, log_conds)}", params)
    report = Report(
        source=db.display,
        logs=int(rows[0][0] or 0),
        requests=int(rows[0][3] or 0),
        failed=int(failed[0][0] or 0),
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
        )  # PostgreSQL only: its default collations keep distinct names apart
        for function, calls, errors, total, maximum, values in await db.fetch(sql, params):
            report.functions.append(
                FunctionRow(
                    function,
                    int(calls),
                    int(errors),
                    int(total),
                    int(maximum),
                    [int(v) for v in values],
                )
            )
    elif pending is not None:
        pass  # collected at the end
    elif query.exact:
        accs: dict[str, DurationAccumulator] = {}
        appends: dict[str, Callable[[int], None]] = {}
        async for batch in db.stream(stream_sql, params):
            accumulate(batch, accs, appends, query.exact)
        _function_rows(report, accs)
    else:
        fn_select, fn_group = t.grouped(["c.function"])
        postgres = isinstance(db, PostgresDatabase)
        bucket = (bucket_sql_float if postgres else bucket_sql)("c.duration_us")
        sql = (
            f"SELECT {fn_select}, {bucket}, COUNT(*), SUM({_ERR}), "
            f"SUM(c.duration_us), MIN(c.duration_us), MAX(c.duration_us) "
            f"{calls_from} GROUP BY {fn_group}, 2"
        )
        if isinstance(db, PostgresDatabase):
            # PostgreSQL cannot estimate the buckets (it assumes 10 % of the rows are
            # distinct): with 64 MB it sizes each worker's hash table for that, and
            # sorts with less; measured 10-20 % faster with a small table that grows.
            await db.settings("SET work_mem = '4MB'; SET enable_sort = off")
        rows = await db.fetch(sql, params)
        if isinstance(db, PostgresDatabase):
            await db.settings("SET work_mem = '64MB'; SET enable_sort = on")
        merged: dict[str, tuple[Histogram, list[int]]] = {}
        for function, lower, count, errors, total, minimum, maximum in rows:
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
        exprs = t.key_exprs(query.by, params)
        keys, group = t.grouped(exprs)
        log_rows = await db.fetch(
            f"SELECT {keys}, COUNT(*), MAX(l.started_at), SUM({_REQUEST}) "
            f"FROM {t.logs} l{where(log_conds)} GROUP BY {group}",
            params,
        )
        failed_rows = await db.fetch(
            f"SELECT {keys}, COUNT(*) {_failed_from(t, log_conds)} GROUP BY {group}", params
        )
        if len(exprs) > 1:
            # The key has a column: join calls to logs, group by the key (measured 2-3x
            # faster on PostgreSQL than aggregating calls per log first).
            call_sql = (
                f"SELECT {keys}, COUNT(*), SUM({_ERR}) FROM {t.calls} c JOIN {t.logs} l "
                f"ON l.id = c.log_id{where(call_conds)} GROUP BY {group}"
            )
        else:
            # JSON only: aggregate calls per log first, so the JSON is read once per log.
            fn_where = where([fn_cond] if fn_cond else [])
            call_sql = (
                f"SELECT {keys}, SUM(cc.n), SUM(cc.e) FROM {t.logs} l JOIN "
                f"(SELECT c.log_id AS log_id, COUNT(*) AS n, SUM({_ERR}) AS e FROM {t.calls} c"
                f"{fn_where} GROUP BY c.log_id) cc ON cc.log_id = l.id{where(log_conds)} "
                f"GROUP BY {group}"
            )
        call_rows = await db.fetch(call_sql, params)
        column = len(exprs) > 1
        report.groups = merge_groups(
            t.keyed(query.by, log_rows, column),
            t.keyed(query.by, call_rows, column),
            t.keyed(query.by, failed_rows, column),
        )
    if pending is not None:
        _function_rows(report, pending())
    return report


def _function_rows(report: Report, accs: dict[str, DurationAccumulator]) -> None:
    for function, acc in accs.items():
        calls, total, maximum, values = acc.finish(PERCENTILES)
        report.functions.append(FunctionRow(function, calls, acc.errors, total, maximum, values))


def _failed_from(t: Tables, log_conds: list[str]) -> str:
    """
    Return the FROM clause of the requests whose root call failed.
    """
    conds = [*log_conds, "l.parent_id IS NULL", "c.status = 'error'"]
    return f"FROM {t.logs} l JOIN {t.calls} c ON c.log_id = l.id AND c.seq = 0" + where(conds)
