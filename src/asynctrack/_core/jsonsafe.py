"""
Values made safe for any JSON encoder: the encoder's last resort (issue #14).

:func:`jsonable` turns what orjson refuses (lone surrogates, integers beyond 64 bits,
keys that are not ``str``, NaN and infinities, cycles, deep nesting) into the closest
value the stdlib encoder writes; :func:`has_nonfinite` tells whether a value needs it
for its NaN or infinities, which orjson would write as ``null`` without an error.
"""

from __future__ import annotations

import enum
import math
from typing import Any

from asynctrack._core.values import convert, distinct_key, key_text

__all__ = ["clean_text", "has_nonfinite", "jsonable", "unencodable"]

#: Integers with more digits than CPython's default int-to-str limit (4,300) cannot be
#: written, nor read back by a reader under the default limit: they become placeholders.
_INT_BOUND = 10**4300
#: Nesting kept by jsonable (orjson refuses 255 levels; the stdlib recurses in C).
_MAX_NEST = 200


def unencodable(value: Any, what: str = "unencodable") -> str:
    return f"<{what} {type(value).__name__}>"


def jsonable(obj: Any) -> Any:
    """
    Return ``obj`` made encodable by the stdlib encoder, as close to it as possible.

    The last resort of the encoder (issue #14): lone surrogates become U+FFFD (as in
    the line), ``str`` keys stay, other keys become
    their text as the converter writes them, and a key whose text is taken gets a
    ``" #2"`` suffix (distinct keys stay distinct); integers beyond 4,300 digits, NaN
    and infinities, cycles, nesting beyond 200 levels and what lies past a budget of a
    million values become placeholder strings; other objects become their converted
    snapshot (as a probe records a parameter).
    """
    return _Jsonable().run(obj, 0)


class _Jsonable:
    __slots__ = ("budget", "path")

    def __init__(self) -> None:
        self.budget = 1_000_000
        self.path: set[int] = set()  # ids of the containers being walked: cycles

    def run(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if t is str:
            return obj if obj.isascii() else clean_text(obj)
        if obj is None or t is bool:
            return obj
        if t is int:
            return obj if -_INT_BOUND < obj < _INT_BOUND else f"<int of {obj.bit_length()} bits>"
        if t is float:
            if math.isfinite(obj):
                return obj
            return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
        self.budget -= 1
        if depth >= _MAX_NEST or self.budget < 0:
            return unencodable(obj, "too deep:" if self.budget >= 0 else "size limit:")
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self.path:
                return unencodable(obj, "cycle:")
            self.path.add(id(obj))
            try:
                if isinstance(obj, dict):
                    return self._dict(obj, depth)
                return [self.run(value, depth + 1) for value in obj]
            finally:
                self.path.discard(id(obj))
        if isinstance(obj, str):
            return self.run(str.__str__(obj), depth)
        if isinstance(obj, int) and not isinstance(obj, enum.Enum):
            return self.run(int(obj), depth)
        if isinstance(obj, float):
            return self.run(float(obj), depth)
        return self.run(convert(obj), depth + 1)

    def _dict(self, obj: dict[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        renamed = False  # set once a key was made text: a str key may then collide
        for key, value in obj.items():
            if type(key) is not str:
                key = distinct_key(clean_text(key_text(key)), out)
                renamed = True
            elif not key.isascii() and clean_text(key) is not key:
                # Lone surrogates become U+FFFD in the line: two keys could merge.
                key = distinct_key(clean_text(key), out)
                renamed = True
            elif renamed:
                key = distinct_key(key, out)
            out[key] = self.run(value, depth + 1)
        return out


def clean_text(text: str) -> str:
    # The text as the line will hold it: lone surrogates replaced by U+FFFD.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def has_nonfinite(obj: Any, depth: int = 0) -> bool:
    """
    Return True when ``obj`` holds a NaN or an infinite float at any depth.

    orjson writes those as ``null`` without an error, so a value that did not come
    through the probe's conversion (a processor's, a log built by hand) would change
    silently; the callers then convert it with :func:`jsonable` first.
    """
    if obj.__class__ is float:
        return obj != obj or obj in (_INF, -_INF)
    if depth > _MAX_NEST:
        return False
    if isinstance(obj, dict):
        return any(has_nonfinite(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(has_nonfinite(v, depth + 1) for v in obj)
    if isinstance(obj, float):
        return not math.isfinite(obj)
    return False


_INF = float("inf")
