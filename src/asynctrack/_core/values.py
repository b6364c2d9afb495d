"""
Conversion of recorded values into JSON-safe form, representations, and redaction.

Every value that a probe records (parameters, info, data) goes through
:func:`convert` at call time, so that what reaches a sink is a snapshot made of
``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list`` and ``dict`` with
``str`` keys only. Conversion never raises: a value that cannot be converted
becomes a placeholder string.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_REDACT",
    "REDACTED",
    "Limits",
    "convert",
    "convert_mapping",
    "current_limits",
    "is_redacted",
    "represent",
    "scrub",
    "set_limits",
]

REDACTED = "[REDACTED]"

#: Default redaction list: a name is redacted when it *contains* one of these,
#: case-insensitively (so ``X-Api-Key``, ``user_password`` and ``sessionid`` are).
DEFAULT_REDACT: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "auth_header",
    "cookie",
    "session",
    "credential",
    "private_key",
    "signature",
)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Limits:
    """
    Bounds applied when values are converted.

    Attributes:
        max_depth: containers nested deeper than this become ``"<list of 3 items>"``.
        max_items: items kept per container; the rest are summarised by a marker.
        max_string: characters kept per string; longer ones end with ``"…[+N chars]"``.
        redact: substrings that mark a name as sensitive (lower case).
    """

    max_depth: int = 6
    max_items: int = 100
    max_string: int = 1000
    redact: tuple[str, ...] = DEFAULT_REDACT


_LIMITS = Limits()
#: Cache of names already classified, so redaction costs a dict lookup.
_REDACT_CACHE: dict[str, bool] = {}

# Types returned unchanged (after the str length check). bool is a subclass of int
# but is listed for the exact ``type(x) in _ATOMS`` test used on the hot path.
_ATOMS = frozenset({int, bool, type(None)})

_REPRESENT: dict[type, Callable[[Any], Any]] = {}
_REPRESENT_CACHE: dict[type, Callable[[Any], Any] | None] = {}


def current_limits() -> Limits:
    """
    Return the limits in force.
    """
    return _LIMITS


def set_limits(limits: Limits) -> None:
    """
    Install new limits (called by ``configure``) and clear the redaction cache.
    """
    global _LIMITS
    _LIMITS = limits
    _REDACT_CACHE.clear()


def is_redacted(name: str) -> bool:
    """
    Return True when ``name`` contains an entry of the redaction list (case-insensitive).

    Values recorded under such a name (a parameter, an info or data key, a nested dict
    key) are written as ``"[REDACTED]"``; integrations use it for names of their own,
    such as the path parameters of a web route.

    .. versionadded:: 0.2
    """
    hit = _REDACT_CACHE.get(name)
    if hit is None:
        low = name.lower()
        hit = any(p in low for p in _LIMITS.redact)
        if len(_REDACT_CACHE) < 10_000:
            _REDACT_CACHE[name] = hit
    return hit


def represent(cls: type[T], func: Callable[[T], Any]) -> None:
    """
    Register how instances of ``cls`` (and its subclasses) are recorded.

    ``func(value)`` returns anything convertible (a dict, a str, ...); the result is
    converted again with the usual limits. Lookup follows the MRO, so registering a
    base class covers its subclasses; a ``__track__(self)`` method on the class does
    the same without registration.

    Args:
        cls: the class.
        func: the representation function.

    Raises:
        TypeError: ``cls`` is not a class or ``func`` is not callable.

    .. versionadded:: 0.1
    """
    if not isinstance(cls, type):
        raise TypeError(f"represent(): cls must be a class, not {type(cls).__name__}")
    if not callable(func):
        raise TypeError(f"represent(): func must be callable, not {type(func).__name__}")
    _REPRESENT[cls] = func
    _REPRESENT_CACHE.clear()


def _lookup_representation(cls: type) -> Callable[[Any], Any] | None:
    try:
        return _REPRESENT_CACHE[cls]
    except KeyError:
        pass
    found: Callable[[Any], Any] | None = None
    for base in cls.__mro__:
        if base in _REPRESENT:
            found = _REPRESENT[base]
            break
    if found is None:
        track = getattr(cls, "__track__", None)
        if track is not None and callable(track):
            found = track
    _REPRESENT_CACHE[cls] = found
    return found


# scheme://user:password@host — the password part of URL user-info.
# Bounded quantifiers: no catastrophic backtracking on long hostile strings.
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}://[^/\s:@]{0,256}:)[^@\s/]{0,256}@")


def _scrub(s: str) -> str:
    """
    Redact the password of URLs with user-info (``postgresql://u:pw@h`` → ``u:[REDACTED]@h``).
    """
    return _URL_USERINFO.sub(r"\1[REDACTED]@", s) if "://" in s else s


scrub = _scrub


def _truncate(s: str, limit: int) -> str:
    return f"{s[:limit]}…[+{len(s) - limit} chars]"


def _placeholder(value: object, what: str = "unrepresentable") -> str:
    try:
        name = type(value).__qualname__
    except Exception:  # pragma: no cover - a type without a name
        name = "object"
    return f"<{what} {name}>"


def convert(value: Any) -> Any:
    """
    Return a JSON-safe snapshot of ``value``; never raises.

    Rules: ``None``, ``bool``, ``int`` and ``str`` as they are (strings truncated, the
    password of URLs with user-info redacted);
    NaN and infinities as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
    lists, tuples, sets and mappings recursively (mapping keys made ``str``, sensitive
    keys redacted); dataclasses as dicts of their fields; datetimes, dates and times
    in ISO 8601; ``Decimal``, ``UUID`` and paths as strings; enums as ``"Cls.NAME"``;
    bytes as their truncated ``repr``; objects by a registered representation or
    ``__track__``, else their truncated ``repr``; anything that fails as
    ``"<unrepresentable TypeName>"``.
    """
    t = type(value)
    if t in _ATOMS or (t is str and len(value) <= _LIMITS.max_string and "://" not in value):
        return value  # the common case, without setting up a run
    try:
        return _convert(value, 0, _Run(_LIMITS))
    except RecursionError:
        return _placeholder(value, "too deep")
    except Exception:
        return _placeholder(value)


def convert_mapping(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    """
    Convert a mapping of names to values (``**kwargs``, info, data), redacting names.
    """
    try:
        out = _convert_mapping(mapping, 0, _Run(_LIMITS))
    except Exception:
        return {"value": _placeholder(mapping)}
    return out if isinstance(out, dict) else {"value": out}


class _Run:
    """
    The limits of one conversion, with its budget of nodes (containers and leaves).

    The budget bounds the total work for values whose size grows as width**depth
    (a wide dict that contains itself), which depth and item limits alone do not.
    """

    __slots__ = ("max_depth", "max_items", "max_string", "nodes")

    def __init__(self, limits: Limits) -> None:
        self.max_depth = limits.max_depth
        self.max_items = limits.max_items
        self.max_string = limits.max_string
        self.nodes = max(1000, limits.max_items * 10)


#: A __repr__ slower than this marks its type: later values get a placeholder.
SLOW_REPR_SECONDS = 0.01
_SLOW_REPR: set[type] = set()


def _convert(value: Any, depth: int, lim: _Run) -> Any:
    lim.nodes -= 1
    if lim.nodes < 0:
        return "…[size limit]"
    t = type(value)
    if t in _ATOMS:
        return value
    if t is str:
        if len(value) > lim.max_string:
            # Truncate first: scrubbing (a regex) then runs on a bounded string.
            return _scrub(_truncate(value, lim.max_string))
        return _scrub(value) if "://" in value else value
    if t is float:
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    rep = _lookup_representation(t)
    if rep is not None:
        if depth >= lim.max_depth:
            return _placeholder(value, "depth limit:")
        try:
            produced = rep(value)
        except Exception:
            return _placeholder(value)
        return _convert(produced, depth + 1, lim)
    if isinstance(value, Mapping):
        return _convert_mapping(value, depth, lim)
    if isinstance(value, (list, tuple, set, frozenset)) or (
        isinstance(value, Iterable) and t.__name__ == "deque"
    ):
        return _convert_sequence(value, depth, lim)
    if isinstance(value, enum.Enum):
        return f"{t.__name__}.{value.name}"
    if isinstance(value, str):  # str subclass
        return _convert(str.__str__(value), depth, lim)
    if isinstance(value, int):  # int subclass (not an enum)
        return int(value)
    if isinstance(value, float):
        return _convert(float(value), depth, lim)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID, PurePath)):
        return _convert(str(value), depth, lim)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value[: lim.max_string])
        text = repr(raw)
        if len(value) > lim.max_string:
            text = f"{text}…[+{len(value) - lim.max_string} bytes]"
        return text
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if depth >= lim.max_depth:
            return _placeholder(value, "depth limit:")
        fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        return _convert_mapping(fields, depth, lim)
    return _repr(value, lim)


def _repr(value: Any, lim: _Run) -> str:
    cls = type(value)
    if cls in _SLOW_REPR:
        return _placeholder(value, "slow repr skipped:")
    started = time.perf_counter()
    try:
        text = repr(value)
    except Exception:
        return _placeholder(value)
    finally:
        if time.perf_counter() - started > SLOW_REPR_SECONDS and len(_SLOW_REPR) < 10_000:
            # Paid once per type: a repr that queries a database or formats a huge
            # structure must not slow every call that receives such a value.
            _SLOW_REPR.add(cls)
    if type(text) is not str:  # pragma: no cover - repr always returns str
        return _placeholder(value)
    if len(text) > lim.max_string:
        return _scrub(_truncate(text, lim.max_string))
    return _scrub(text) if "://" in text else text


def _key(key: Any, lim: _Run) -> str:
    if type(key) is str:
        return key if len(key) <= lim.max_string else _truncate(key, lim.max_string)
    if key is None or type(key) in (int, float, bool):
        return str(key)
    converted = _convert(key, lim.max_depth, lim)  # keys are never expanded
    return converted if type(converted) is str else str(converted)


def _convert_mapping(value: Mapping[Any, Any], depth: int, lim: _Run) -> Any:
    n = len(value)
    if depth >= lim.max_depth:
        return f"<{type(value).__name__} of {n} items>"
    out: dict[str, Any] = {}
    limit = lim.max_items
    for i, (k, v) in enumerate(value.items()):
        if i >= limit:
            out["…"] = f"[+{n - limit} items]"
            break
        key = _key(k, lim)
        if is_redacted(key):
            out[key] = REDACTED
        else:
            try:
                out[key] = _convert(v, depth + 1, lim)
            except RecursionError:
                out[key] = _placeholder(v, "too deep")
            except Exception:
                out[key] = _placeholder(v)
    return out


def _convert_sequence(value: Iterable[Any], depth: int, lim: _Run) -> Any:
    try:
        n = len(value)  # type: ignore[arg-type]
    except Exception:
        n = -1
    if depth >= lim.max_depth:
        return f"<{type(value).__name__} of {n} items>"
    out: list[Any] = []
    limit = lim.max_items
    for i, item in enumerate(value):
        if i >= limit:
            out.append(f"…[+{n - limit} items]" if n >= 0 else "…[more items]")
            break
        try:
            out.append(_convert(item, depth + 1, lim))
        except RecursionError:
            out.append(_placeholder(item, "too deep"))
        except Exception:
            out.append(_placeholder(item))
    return out
