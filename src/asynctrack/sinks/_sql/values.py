"""
The SQL sink's values: how log fields and info values are made to fit typed columns
(conversion, truncation with the exact value kept in JSON, timestamps per dialect),
and the JSON encoding of the JSON columns.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import sqlalchemy as sa

from asynctrack._core.decode import loads as exact_loads
from asynctrack._core.encode import encode_obj
from asynctrack._core.jsonb import NUL_MARK, nul_unescape
from asynctrack.sinks._sql.schema import MISSING, RESERVED_KEY, TextLimit

_MARK_BYTES = NUL_MARK.encode()

__all__ = [
    "TIMESTAMPS",
    "Converter",
    "clean_text",
    "default_maker",
    "dumps",
    "fit_json",
    "fits_checker",
    "loads",
    "make_converter",
    "overflow",
    "python_defaults",
    "squeeze",
    "with_reserved",
]

_UTC = _dt.UTC


def python_defaults(table: sa.Table, used: Iterable[str]) -> list[tuple[str, Any]]:
    """
    Return ``(column_name, default)`` for the columns the sink does not write that have a
    Python-side default (``Column(default=...)``), which bulk inserts must apply.

    ``default`` is a ``ColumnDefault`` whose ``arg`` is a constant or a callable.
    """
    skip = set(used)
    return [
        (column.name, column.default)
        for column in table.columns
        if column.name not in skip and column.default is not None
    ]


# -- values in columns ------------------------------------------------------------------
# JSON encoding for JSON columns, and how a value is made to fit a typed column.
def clean_text(text: str) -> str:
    # Lone surrogates cannot be stored as UTF-8 (MariaDB's JSON check rejects even their
    # \\ud800 escapes): they become U+FFFD.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def dumps(obj: Any) -> str:
    """
    Encode a value as JSON text for a JSON column (orjson; never fails).
    """
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # surrogates, integers beyond 64 bits, non-str keys
        # The encoder's last resort replaces lone surrogates (which MariaDB's JSON check
        # rejects, even escaped) and keeps keys that only differed by them distinct.
        return encode_obj(obj).decode()


def loads(text: str | bytes) -> Any:
    """
    Decode the JSON text of a JSON column: integers beyond 64 bits read exactly, NUL
    characters escaped for PostgreSQL's JSONB restored.
    """
    value = exact_loads(text)
    marked = _MARK_BYTES in text if isinstance(text, bytes) else NUL_MARK in text
    return nul_unescape(value) if marked else value


# -- fitting values into columns --------------------------------------------------------
def fits_checker(limit: TextLimit) -> Callable[[str], bool]:
    chars, size, nul = limit.chars, limit.bytes, limit.nul

    def fits(s: str) -> bool:
        if chars is not None and len(s) > chars:
            return False
        if not nul and "\x00" in s:
            return False
        if s.isascii():
            return size is None or len(s) <= size
        try:
            encoded = s.encode()
        except UnicodeEncodeError:
            return False
        return size is None or len(encoded) <= size

    return fits


def squeeze(s: str, limit: TextLimit) -> str:
    # A lossy copy of ``s`` that fits the column.
    if not limit.nul:
        s = s.replace("\x00", "\ufffd")
    if limit.chars is not None:
        s = s[: limit.chars]
    if limit.bytes is not None:
        s = s.encode()[: limit.bytes].decode("utf-8", "ignore")
    return s


def _ts_sqlite(d: _dt.datetime) -> str:
    # SQLAlchemy's storage format for SQLite DATETIME, in UTC.
    if d.tzinfo is _UTC:  # log start times: "YYYY-MM-DD HH:MM:SS.ffffff+00:00"
        return d.isoformat(" ", "microseconds")[:26]
    return d.astimezone(_UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _ts_naive(d: _dt.datetime) -> _dt.datetime:
    return d.astimezone(_UTC).replace(tzinfo=None)


def _ts_aware(d: _dt.datetime) -> _dt.datetime:
    return d.astimezone(_UTC)


TIMESTAMPS = {"sqlite": _ts_sqlite, "naive": _ts_naive, "aware": _ts_aware}
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})
Converter = Callable[[Any], tuple[Any, bool]]


def make_converter(kind: str, limit: TextLimit, bits: int, exact_float: bool, ts: str) -> Converter:
    """
    Return ``convert(value) -> (column_value, exact)`` for an info column.

    ``exact`` is True when reading the column back gives the value unchanged; otherwise
    the sink also keeps the original value in the ``info`` JSON. ``column_value`` is
    ``None`` when the value cannot be converted to the column's type.
    """
    if kind in ("string", "text"):
        fits = fits_checker(limit)

        def to_text(v: Any) -> tuple[Any, bool]:
            if type(v) is str:
                return (v, True) if fits(v) else (None, False)
            if v is None:
                return None, False
            s = dumps(v)
            return (s if fits(s) else None), False

        return to_text
    if kind in ("integer", "bigint"):
        hi = (1 << (bits - 1)) - 1
        lo = -hi - 1

        def to_int(v: Any) -> tuple[Any, bool]:
            t = type(v)
            if t is int:
                return (v, True) if lo <= v <= hi else (None, False)
            n: int | None = None
            if t is bool:
                n = int(v)
            elif t is float and v.is_integer():
                n = int(v)
            elif t is str and len(v) <= 40:
                with contextlib.suppress(ValueError):
                    n = int(v.strip())
            return (n if n is not None and lo <= n <= hi else None), False

        return to_int
    if kind == "float":

        def to_float(v: Any) -> tuple[Any, bool]:
            t = type(v)
            f: float | None = None
            if t is float:
                f = v
            elif t is int or (t is str and len(v) <= 64):
                with contextlib.suppress(ValueError, OverflowError):
                    f = float(v)
            if f is None or f != f or f in (float("inf"), float("-inf")):
                return None, False
            return f, exact_float and t is float

        return to_float
    if kind == "boolean":

        def to_bool(v: Any) -> tuple[Any, bool]:
            t = type(v)
            if t is bool:
                return v, True
            if t is int and v in (0, 1):
                return bool(v), False
            if t is str and len(v) <= 8:
                low = v.strip().lower()
                if low in _TRUE:
                    return True, False
                if low in _FALSE:
                    return False, False
            return None, False

        return to_bool
    if kind == "datetime":
        fmt = TIMESTAMPS[ts]
        min_year = 1000 if ts == "naive" else 1  # MariaDB's DATETIME starts at 1000

        def to_datetime(v: Any) -> tuple[Any, bool]:
            if type(v) is not str or len(v) > 64:
                return None, False
            try:
                d = _dt.datetime.fromisoformat(v)
                d = d.replace(tzinfo=_UTC) if d.tzinfo is None else d.astimezone(_UTC)
            except (ValueError, OverflowError):
                return None, False
            if not min_year <= d.year <= 9998:
                return None, False
            return fmt(d), False

        return to_datetime
    size = limit.bytes
    # SQLite gives a column declared JSON numeric affinity: the text of a bare number
    # is stored as a number (1.0 as 1, ints beyond 64 bits as floats), so a number's
    # exact value stays in the info JSON too (#15).
    numbers_lossy = ts == "sqlite"

    def to_json(v: Any) -> tuple[Any, bool]:
        if v is None:
            return None, False
        s = dumps(v)
        if size is not None and len(s) * 4 > size and len(s.encode()) > size:
            return None, False
        if numbers_lossy and type(v) in (int, float):
            return s, False
        return s, True

    return to_json


def with_reserved(values: Mapping[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    # Keep exact values that did not fit their columns under the reserved key; a user
    # value already under that key is kept inside it, so nothing is ever lost.
    out = dict(values)
    special = dict(extra or {})
    user = out.pop(RESERVED_KEY, MISSING)
    if user is not MISSING:
        special["__user__"] = user
    out[RESERVED_KEY] = special
    return out


def overflow(
    column: str, value: Any, limit: TextLimit, over: dict[str, Any] | None
) -> tuple[Any, dict[str, Any] | None]:
    # The column gets a shortened copy; the exact value goes under the reserved key.
    if type(value) is str:
        text = clean_text(value)
        if fits_checker(limit)(text):
            return text, over  # only lone surrogates were replaced: nothing else to keep
        exact: Any = text
    else:
        exact = value
        text = "" if value is None else dumps(value)
    over = dict(over or {})
    over[column] = exact
    return squeeze(text, limit), over


def fit_json(text: str, limit: TextLimit) -> str:
    """
    Return ``text`` if it fits a JSON column stored as size-limited text, else a marker.
    """
    size = limit.bytes
    if size is None or len(text) * 4 <= size or len(text.encode()) <= size:
        return text
    return dumps({RESERVED_KEY: {"dropped_bytes": len(text.encode())}})


def default_maker(default: Any) -> Callable[[], Any]:
    arg = default.arg
    if not getattr(default, "is_callable", False):
        return lambda: arg

    def make() -> Any:
        try:
            return arg(None)  # SQLAlchemy wraps zero-argument callables to take a context
        except Exception:
            return None

    return make
