"""
JSON-lines decoding of logs: the lines ``_core/encode.py`` writes, and any other
writer's, read back exactly (integers beyond 64 bits included) or refused with a
``ValueError``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from asynctrack._core.records import Log

try:  # pragma: no branch - orjson is a dependency; the fallback is for odd platforms
    import orjson

    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

__all__ = ["decode_line", "loads"]

# 19+ digits: maybe an integer beyond 64 bits, which orjson reads back as a float.
_LONG_DIGITS = re.compile(rb"\d{19}")
_LONG_DIGITS_STR = re.compile(r"[0-9]{19}")


def decode_line(line: bytes | str) -> Log:
    """
    Parse one JSON line into a :class:`Log`.

    Raises:
        ValueError: the line is not a JSON log record. This is the only exception:
            whatever else decoding one line raises (``OverflowError`` for ``1e999``,
            ``RecursionError`` for deep nesting, a ``TypeError`` for a field of the
            wrong type) becomes a ``ValueError``, so a reader that skips bad lines
            never stops on one (#14).
    """
    try:
        return _decode_line(line)
    except ValueError:
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"not a log record: {text[:200]}") from None


def _decode_line(line: bytes | str) -> Log:
    try:
        obj = loads(line)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {str(exc)[:200]}") from None
    if type(obj) is not dict:
        raise ValueError("not a log record: not a JSON object")
    return Log.from_dict(obj)


def loads(text: bytes | str) -> Any:
    """
    Decode JSON text with integers read exactly (orjson reads those past 64 bits as floats).

    Raises:
        ValueError: the text is not JSON.
    """
    try:
        if _LONG_DIGITS.search(text) if isinstance(text, bytes) else _LONG_DIGITS_STR.search(text):
            raise ValueError("exact integers: let the stdlib parse the text")
        return _loads(text)
    except ValueError:
        # Also for escaped lone surrogates, which orjson refuses and other writers produce.
        return json.loads(text)
