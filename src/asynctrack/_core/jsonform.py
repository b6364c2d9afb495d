"""
The JSON form of records: ISO 8601 times, tracebacks, and the call dicts of a live log.

``Log.to_dict`` and ``Log.from_dict`` (``_core/records.py``) and the batch encoder
(``_core/encode.py``) share these; ``raw_dicts`` builds a live log's call dicts
straight from its slots (``_core/layout.py``), without ``Call`` objects.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from asynctrack._core.layout import REC, records, seq_map, start_of

__all__ = [
    "hex_or_none",
    "iso",
    "iso_second",
    "parse_time",
    "parse_traceback",
    "raw_dicts",
    "traceback_json",
]


def traceback_json(tb: Any) -> list[list[Any]] | None:
    return None if tb is None else [[f, n, fn] for f, n, fn in tb]


def parse_traceback(value: Any) -> list[tuple[str, int, str]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("traceback must be a list")
    out: list[tuple[str, int, str]] = []
    for frame in value:
        if not isinstance(frame, (list, tuple)) or len(frame) != 3:
            raise ValueError("a traceback frame must be [file, line, function]")
        out.append((str(frame[0]), int(frame[1]), str(frame[2])))
    return out


def hex_or_none(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    return value


_UTC = _dt.UTC
_ISO_CACHE: dict[int, str] = {}


def iso_second(seconds: int) -> str:
    """
    Return ``YYYY-MM-DDTHH:MM:SS`` (UTC) of a time in whole seconds since the epoch.
    """
    # Formatting a datetime costs ~1 µs; the part up to the second is cached.
    prefix = _ISO_CACHE.get(seconds)
    if prefix is None:
        if len(_ISO_CACHE) > 4096:
            _ISO_CACHE.clear()
        # isoformat, not strftime: "%Y" gives "1", not "0001", for years before 1000
        # on glibc, which is no ISO 8601 timestamp for the readers.
        stamp = _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=seconds)
        prefix = _ISO_CACHE[seconds] = stamp.isoformat(timespec="seconds")
    return prefix


def iso(wall_ns: int) -> str:
    seconds, ns = divmod(wall_ns, 1_000_000_000)
    return f"{iso_second(seconds)}.{ns // 1000:06d}+00:00"


def parse_time(value: Any, what: str) -> int:
    if isinstance(value, _dt.datetime):
        stamp = value
    elif isinstance(value, str):
        stamp = _dt.datetime.fromisoformat(value)
    else:
        raise ValueError(f"{what} must be an ISO 8601 string, got {type(value).__name__}")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_UTC)
    delta = stamp - _dt.datetime(1970, 1, 1, tzinfo=_UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def raw_dicts(raw: list[Any], t0: int) -> list[dict[str, Any]]:
    seqs = seq_map(raw)
    if seqs is not None:
        # Threads raced between reading the clock and appending: order by start.
        return _dicts(sorted(records(raw), key=start_of), t0, seqs)
    return _dicts(records(raw), t0, None)


def _dicts(
    recs: Iterable[tuple[Any, ...]], t0: int, seqs: dict[int, int] | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    append = out.append
    for meta, depth, params, data, start, end, status, error, parent, tb in recs:
        if end == 0:  # pragma: no cover - only snapshots have running calls
            end = start
            status = "running"
        if parent is not None:
            parent = parent // REC if seqs is None else seqs[parent]
        append(
            {
                "seq": len(out),
                "parent": parent,
                "depth": depth,
                "function": meta[0],
                "tracker": meta[1],
                "level": meta[2],
                "params": params or {},  # never the shared NO_PARAMS
                "data": data if data else {},
                "offset_us": (start - t0) // 1000,
                "duration_us": (end - start) // 1000,
                "status": status,
                "error": error,
                "traceback": traceback_json(tb),
            }
        )
    return out
