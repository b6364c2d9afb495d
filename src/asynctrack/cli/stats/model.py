"""
What a statistics query asks for and what it returns, independent of the backend.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asynctrack._core.jsonb import NUL_MARK, nul_unescape

_MARK_BYTES = NUL_MARK.encode()

__all__ = [
    "FunctionRow",
    "GroupRow",
    "LogSelection",
    "Report",
    "SourceError",
    "StatsQuery",
    "decode_json",
    "glob_regex",
    "json_key_text",
    "key_text",
]

UTC = _dt.UTC


class SourceError(Exception):
    """
    Raised when a source cannot be read: missing file, bad URL, unknown table (exit 2).
    """


@dataclass(frozen=True)
class StatsQuery:
    """
    What ``asynctrack stats`` computes.

    Attributes:
        by: info key to group logs by (``user``), or None.
        since: only logs that started at or after this aware datetime.
        until: only logs that started before this aware datetime.
        functions: glob patterns (``*`` and ``?``, case-sensitive); a call counts if
            its function matches any of them. Empty: every call counts.
        exact: exact percentiles instead of the histogram estimate.
        table_prefix: prefix of the SQL tables (``track_``).
    """

    by: str | None = None
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    functions: tuple[str, ...] = ()
    exact: bool = False
    table_prefix: str = "track_"

    def function_matcher(self) -> Callable[[str], bool] | None:
        """
        Return a predicate on function names, or None when every function matches.
        """
        if not self.functions:
            return None
        regex = re.compile("|".join(glob_regex(p) for p in self.functions))
        return lambda name: regex.fullmatch(name) is not None


@dataclass(frozen=True)
class LogSelection:
    """
    Which logs ``asynctrack show`` prints: one id, or the last ``last`` requests that
    pass every filter (continuations are shown under the call that spawned them).

    Attributes:
        id: the log with this id (any log, continuations included).
        last: how many requests (the latest).
        user: only logs whose info ``user_key`` is this text.
        status: only logs whose root call ended so (``ok``, ``error``, ``cancelled``).
        function: a glob; only logs with a call whose function matches.
        min_duration_us: only logs that lasted at least this long.
        since: only logs that started at or after this aware datetime.
        until: only logs that started before this aware datetime.
        where: ``(key, value)`` pairs: the log's info ``key`` is the text ``value``.
        trace: a trace id: the request of that trace with all its continuations.
        table_prefix: prefix of the SQL tables.
    """

    id: str | None = None
    last: int = 10
    user: str | None = None
    user_key: str = "user"
    status: str | None = None
    function: str | None = None
    min_duration_us: int | None = None
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    where: tuple[tuple[str, str], ...] = ()
    trace: str | None = None
    table_prefix: str = "track_"

    def filtered(self) -> bool:
        """
        Return True when a filter needs the whole log (its calls), not only its head.
        """
        return bool(
            self.status or self.function or self.min_duration_us is not None or self.where
        ) or bool(self.since or self.until or self.trace)

    def matches(self, log: Any) -> bool:
        """
        Return True when ``log`` (a :class:`asynctrack.Log`) passes every filter.
        """
        info = log.info
        if self.user is not None and key_text(info.get(self.user_key)) != self.user:
            return False
        for key, value in self.where:
            if key_text(info.get(key)) != value:
                return False
        if self.trace is not None and log.trace_id != self.trace:
            return False
        if self.since is not None and log.started_at < self.since:
            return False
        if self.until is not None and log.started_at >= self.until:
            return False
        if self.min_duration_us is not None and log.duration_us < self.min_duration_us:
            return False
        calls = log.calls
        if self.status is not None and (not calls or calls[0].status != self.status):
            return False
        if self.function is not None:
            regex = re.compile(glob_regex(self.function))
            if not any(regex.fullmatch(c.function) for c in calls):
                return False
        return True


@dataclass
class FunctionRow:
    """
    Figures for one function; durations in microseconds.
    """

    function: str
    calls: int
    errors: int
    total_us: int
    max_us: int
    percentiles_us: list[int]

    @property
    def avg_us(self) -> int:
        """Mean duration, rounded half up to an integer."""
        return (2 * self.total_us + self.calls) // (2 * self.calls) if self.calls else 0

    @property
    def error_pct(self) -> float:
        """Share of calls that raised, in percent, two decimals."""
        return round(100 * self.errors / self.calls, 2) if self.calls else 0.0


@dataclass
class GroupRow:
    """
    Activity of one value of the ``--by`` key.
    """

    value: str | None
    logs: int = 0
    calls: int = 0
    errors: int = 0
    last_seen: _dt.datetime | None = None
    #: Logs that are not continuations, and those whose root call failed.
    requests: int = 0
    failed: int = 0


@dataclass
class Report:
    """
    The result of ``asynctrack stats``.
    """

    source: str
    logs: int = 0
    #: Logs that are not continuations (#17), and those whose root call failed.
    requests: int = 0
    failed: int = 0
    calls: int = 0
    first: _dt.datetime | None = None
    last: _dt.datetime | None = None
    exact: bool = False
    percentiles: tuple[int, ...] = ()
    functions: list[FunctionRow] = field(default_factory=list)
    by: str | None = None
    groups: list[GroupRow] = field(default_factory=list)
    skipped_lines: int = 0

    def finish(self, top: int | None) -> Report:
        """
        Sort functions and groups (most calls first, then name) and keep the ``top``.
        """
        self.functions.sort(key=lambda r: (-r.calls, r.function))
        self.groups.sort(
            key=lambda g: (-g.requests, -g.logs, -g.calls, g.value is None, g.value or "")
        )
        self.calls = sum(r.calls for r in self.functions)
        if top is not None:
            del self.functions[top:]
            del self.groups[top:]
        return self


def glob_regex(pattern: str) -> str:
    """
    Translate a glob (``*`` any run of characters, ``?`` one character) to a regex.
    """
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "(?s:" + "".join(out) + ")"


def key_text(value: Any) -> str | None:
    """
    Return the canonical text of an info value (``--by`` groups, ``show --user``).

    One definition for every backend (#15): ``None`` (absent or JSON null) is None; a
    string is itself; booleans are ``true``/``false``; ints are their exact decimal
    digits (however large); floats their shortest round-trip form (``0.1``,
    ``0.30000000000000004``, ``1e+20``); lists and objects their compact JSON with
    keys sorted. Backends compute what they can in SQL and hand the rest here, so the
    same logs give the same groups from a file, SQLite, PostgreSQL and MariaDB.
    """
    if value is None or isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
        )
    except (TypeError, ValueError, RecursionError):
        # Not JSON (a driver's own type) or an int beyond CPython's digit limit.
        return _fallback_text(value)


def _fallback_text(value: Any) -> str:
    if isinstance(value, int):
        return f"<int of {value.bit_length()} bits>"
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def decode_json(text: str | bytes) -> Any:
    """
    Decode JSON text exactly (ints beyond 64 bits stay ints, unlike orjson's).

    Raises:
        ValueError: not JSON.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # NUL characters escaped for PostgreSQL's JSONB (#17).
    marked = _MARK_BYTES in text if isinstance(text, bytes) else NUL_MARK in text
    return nul_unescape(value) if marked else value


def json_key_text(text: str | bytes) -> str | None:
    """
    Return the canonical text (:func:`key_text`) of a value given as JSON text.
    """
    try:
        return key_text(decode_json(text))
    except ValueError:
        return text if isinstance(text, str) else text.decode("utf-8", "replace")


def utc(value: _dt.datetime | str | None) -> _dt.datetime | None:
    """
    Return an aware UTC datetime from a driver's value (naive values are UTC).
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def merge_groups(
    log_rows: Sequence[tuple[Any, ...]],
    call_rows: Sequence[tuple[Any, int, Any]],
    failed_rows: Sequence[tuple[Any, int]] = (),
) -> list[GroupRow]:
    """
    Merge ``(value, logs, last_seen, requests)``, ``(value, calls, errors)`` and
    ``(value, failed requests)`` rows by value.
    """
    groups: dict[str | None, GroupRow] = {}
    for value, logs, last, *requests in log_rows:
        key = key_text(value)
        row = groups.setdefault(key, GroupRow(key))
        row.logs += int(logs)
        row.requests += int(requests[0] or 0) if requests else int(logs)
        seen = utc(last)
        if seen is not None and (row.last_seen is None or seen > row.last_seen):
            row.last_seen = seen
    for value, calls, errors in call_rows:
        key = key_text(value)
        row = groups.setdefault(key, GroupRow(key))
        row.calls += int(calls)
        row.errors += int(errors or 0)
    for value, failed in failed_rows:
        key = key_text(value)
        groups.setdefault(key, GroupRow(key)).failed += int(failed or 0)
    return list(groups.values())
