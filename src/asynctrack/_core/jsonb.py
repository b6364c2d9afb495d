"""
NUL characters in PostgreSQL's JSONB.

JSONB refuses NUL ("\\u0000") in strings, which every other store (and json) keeps.
Strings bound for a JSONB column escape it reversibly with a noncharacter as marker:
the marker itself becomes marker + "M", NUL becomes marker + "0". Readers undo it
whenever the marker occurs, so a value reads back exactly from every backend.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["NEG_ZERO", "NUL_MARK", "needs_nul_escape", "nul_escape", "nul_unescape"]

NUL_MARK = "\U0010ffff"
#: -0.0, which JSONB's numbers cannot hold (an escaped string never equals it).
NEG_ZERO = NUL_MARK + "-0"
_UNESCAPE = re.compile(NUL_MARK + "(.)", re.S)


def needs_nul_escape(text: str) -> bool:
    """
    Return True when JSON ``text`` holds a NUL escape or the marker.
    """
    return "\\u0000" in text or NUL_MARK in text


def nul_escape(obj: Any) -> Any:
    """
    Return ``obj`` with NUL characters (and the marker) escaped in every string.
    """
    if isinstance(obj, str):
        if "\x00" in obj or NUL_MARK in obj:
            return obj.replace(NUL_MARK, NUL_MARK + "M").replace("\x00", NUL_MARK + "0")
        return obj
    if isinstance(obj, dict):
        return {nul_escape(k): nul_escape(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nul_escape(v) for v in obj]
    return obj


def _unescape_one(match: re.Match[str]) -> str:
    c = match.group(1)
    return "\x00" if c == "0" else NUL_MARK if c == "M" else match.group(0)


def nul_unescape(obj: Any) -> Any:
    """
    Undo :func:`nul_escape` (strings without the marker are left as they are).
    """
    if isinstance(obj, str):
        if NUL_MARK not in obj:
            return obj
        return -0.0 if obj == NEG_ZERO else _UNESCAPE.sub(_unescape_one, obj)
    if isinstance(obj, dict):
        return {nul_unescape(k): nul_unescape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nul_unescape(v) for v in obj]
    return obj
