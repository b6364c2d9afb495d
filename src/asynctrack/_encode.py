"""
JSON-lines encoding and decoding of logs.

Every line is strict JSON (no NaN: values were converted at call time) and one
line under both ``str.split("\\n")`` and ``str.splitlines()``: U+2028, U+2029 and
U+0085, which orjson writes raw, are escaped. orjson encodes a batch into one
buffer; values it refuses (lone surrogates, integers beyond 64 bits) fall back to
the stdlib encoder; lone surrogates are then replaced by U+FFFD.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ._records import Log

try:  # pragma: no branch - orjson is a dependency; the fallback is for odd platforms
    import orjson

    _dumps = orjson.dumps
    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]
    _dumps = None  # type: ignore[assignment]
    _loads = json.loads

__all__ = ["decode_line", "encode_log", "encode_logs", "encode_obj"]

# 19+ digits: maybe an integer beyond 64 bits, which orjson reads back as a float.
_LONG_DIGITS = re.compile(rb"\d{19}")

# Characters that str.splitlines() treats as line breaks and JSON allows raw.
_RAW_BREAKS = (
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
    ("\u0085".encode(), b"\\u0085"),
)


def _stdlib(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # Lone surrogates (from surrogateescape-decoded OS data) are not UTF-8: replace
    # them by U+FFFD so every reader accepts the line.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return _escape_breaks(text.encode("utf-8"))


def _escape_breaks(data: bytes) -> bytes:
    # Three C-level scans; "…" (e2 80 a6), common in truncation markers, shares the
    # first two bytes with U+2028/U+2029, so test each sequence exactly.
    for raw, escaped in _RAW_BREAKS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def encode_obj(obj: Any) -> bytes:
    """
    Encode one JSON value as a single line (without the newline); never NaN.
    """
    if _dumps is not None:
        try:
            return _escape_breaks(_dumps(obj))
        except (TypeError, ValueError):
            pass
    try:
        return _stdlib(obj)
    except (TypeError, ValueError):
        # A value that is not JSON-safe slipped in (a user's processor): coerce it.
        text = json.dumps(
            obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=repr
        )
        return text.encode("utf-8")


def encode_log(log: Log) -> bytes:
    """
    Encode one log as a JSON line, newline included.
    """
    return encode_obj(log.to_dict()) + b"\n"


def encode_logs(logs: Iterable[Log]) -> bytes:
    """
    Encode logs as JSON lines into one buffer.
    """
    if _dumps is None:  # pragma: no cover - orjson missing
        return b"".join(encode_obj(log.to_dict()) + b"\n" for log in logs)
    dumps = _dumps
    newline = orjson.OPT_APPEND_NEWLINE
    parts = []
    for log in logs:
        d = log.to_dict()
        try:
            parts.append(dumps(d, option=newline))
        except (TypeError, ValueError):
            parts.append(encode_obj(d) + b"\n")
    # One pass over the whole batch for the line breaks orjson leaves raw.
    return _escape_breaks(b"".join(parts))


def decode_line(line: bytes | str) -> Log:
    """
    Parse one JSON line into a :class:`Log`.

    Raises:
        ValueError: the line is not a JSON log record.
    """
    try:
        data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        if _LONG_DIGITS.search(data):
            raise ValueError("exact integers: let the stdlib parse the line")
        obj = _loads(line)
    except ValueError:
        try:  # orjson refuses escaped lone surrogates that other writers may produce
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
    return Log.from_dict(obj)
