"""
Conversion of recorded values into JSON-safe form, representations, and redaction.

Every value that a probe records (parameters, info, data) goes through
:func:`convert` at call time, so that what reaches a sink is a snapshot made of
``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list`` and ``dict`` with
``str`` keys only. Conversion never raises: a value that cannot be converted
becomes a placeholder string.

Secrets are kept out at every step (issue #14): a name is checked for redaction
before it is cut to ``max_string``; URL passwords are redacted before a string is
cut (:mod:`asynctrack._core.redact`); objects with declared fields (pydantic models,
dataclasses, attrs classes, named tuples, ``SimpleNamespace``) are read field by field
(:mod:`asynctrack._core.fields`) and converted like dicts, never by their ``repr``.
Distinct keys stay distinct: keys that are not ``str`` become text (containers and
objects as the compact JSON of their conversion), and a key whose text is already
taken gets a ``" #2"`` suffix.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any, TypeVar

from asynctrack._core.fields import field_reader
from asynctrack._core.redact import REDACTED, clip, clip_bytes, scrub
from asynctrack._core.runtime import RUNTIME

__all__ = [
    "DEFAULT_REDACT",
    "REDACTED",
    "Limits",
    "clip",
    "convert",
    "convert_mapping",
    "current_limits",
    "distinct_key",
    "is_redacted",
    "key_text",
    "represent",
    "scrub",
    "set_limits",
]

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
    "passphrase",
    "pwd",
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
#: The names of that cache found not sensitive, for a subset test of several names
#: at once (``names.keys() <= PLAIN_NAMES.keys()``); cleared with it.
PLAIN_NAMES: dict[str, None] = {}


def _squeeze(name: str) -> str:
    # Names are compared without case and separators: "private_key" also marks
    # privateKey, private-key and "Private Key" (JSON bodies, headers, form fields).
    return name.lower().replace("_", "").replace("-", "").replace(" ", "").replace(".", "")


#: The redaction list as compared (squeezed; empty entries would match everything).
_REDACT_SQUEEZED: tuple[str, ...] = tuple(x for x in map(_squeeze, DEFAULT_REDACT) if x)

# Types returned unchanged (after the str length check). bool is a subclass of int
# but is listed for the exact ``type(x) in _ATOMS`` test used on the hot path.
_ATOMS = frozenset({int, bool, type(None)})


class _Fields:
    """
    The representation of a class with declared fields: read them, convert like a dict.
    """

    __slots__ = ("read",)

    def __init__(self, read: Callable[[Any], dict[str, Any]]) -> None:
        self.read = read


_REPRESENT: dict[type, Callable[[Any], Any]] = {}
_REPRESENT_CACHE: dict[type, Callable[[Any], Any] | _Fields | None] = {}


def current_limits() -> Limits:
    """
    Return the limits in force.
    """
    return _LIMITS


def set_limits(limits: Limits) -> None:
    """
    Install new limits (called by ``configure``) and clear the redaction cache.
    """
    global _LIMITS, _REDACT_SQUEEZED
    _LIMITS = limits
    _REDACT_SQUEEZED = tuple(x for x in map(_squeeze, limits.redact) if x)
    _REDACT_CACHE.clear()
    PLAIN_NAMES.clear()


def is_redacted(name: str) -> bool:
    """
    Return True when ``name`` contains an entry of the redaction list, ignoring case
    and the separators ``_``, ``-``, ``.`` and spaces (``privateKey`` contains
    ``private_key``).

    Values recorded under such a name (a parameter, an info or data key, a nested dict
    key) are written as ``"[REDACTED]"``; integrations use it for names of their own,
    such as the path parameters of a web route.

    .. versionadded:: 0.2
    """
    hit = _REDACT_CACHE.get(name)
    if hit is None:
        squeezed = _REDACT_SQUEEZED
        low = _squeeze(name)
        hit = any(p in low for p in squeezed)
        # Long names (a huge key) are not kept: the cache must stay small.
        if len(_REDACT_CACHE) < 10_000 and len(name) <= 256:
            _REDACT_CACHE[name] = hit
            if not hit:
                PLAIN_NAMES[name] = None
            if squeezed is not _REDACT_SQUEEZED:
                # set_limits ran meanwhile (configure in another thread), maybe after
                # it cleared the caches: what the old list said is not kept.
                _REDACT_CACHE.pop(name, None)
                PLAIN_NAMES.pop(name, None)
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


def _lookup_representation(cls: type) -> Callable[[Any], Any] | _Fields | None:
    # Per class, cached: a registered function (MRO order), __track__, declared fields.
    try:
        return _REPRESENT_CACHE[cls]
    except KeyError:
        pass
    found: Callable[[Any], Any] | _Fields | None = None
    for base in cls.__mro__:
        if base in _REPRESENT:
            found = _REPRESENT[base]
            break
    if found is None:
        track = getattr(cls, "__track__", None)
        if track is not None and callable(track):
            found = track
    if found is None:
        read = field_reader(cls)
        if read is not None:
            found = _Fields(read)
    if len(_REPRESENT_CACHE) >= 10_000:
        # Classes made at run time (pydantic.create_model per request) must not pile up.
        _REPRESENT_CACHE.clear()
    _REPRESENT_CACHE[cls] = found
    return found


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
    lists, tuples, sets and mappings recursively (mapping keys made distinct ``str``,
    sensitive keys redacted); pydantic models, dataclasses, attrs classes, named tuples
    and ``SimpleNamespace`` as dicts of their fields; datetimes, dates and times
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
        if len(value) > lim.max_string or "://" in value:
            # Passwords are redacted before the cut, in time bounded by the cut.
            return clip(value, lim.max_string)
        return value
    if t is float:
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    rep = _lookup_representation(t)
    if rep is not None:
        if depth >= lim.max_depth:
            return _placeholder(value, "depth limit:")
        if isinstance(rep, _Fields):
            try:
                fields = rep.read(value)
            except Exception:
                # Not the repr: it would show what the fields hide (a password).
                return _placeholder(value)
            return _convert_mapping(fields, depth, lim)
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
        return clip_bytes(value, lim.max_string)
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
    return clip(text, lim.max_string)


def _key(key: Any, lim: _Run) -> tuple[str, bool]:
    """
    Return the text of a mapping key that is not a short plain ``str``, and whether it
    is a sensitive name (checked on the whole text, before it is cut).
    """
    try:
        if isinstance(key, str):
            text = str.__str__(key)
        elif key is None or type(key) is bool or type(key) is float:
            text = str(key)
        elif type(key) is int:
            text = _int_text(key)
        else:
            # Containers and objects are expanded (so (1, 2) and (1, 3) stay two keys)
            # and converted like values (a field object's password is redacted).
            # Strings in it are kept whole here: the redaction check sees every name.
            whole = _Run(_LIMITS)
            whole.max_string = 1 << 20
            converted = _convert(key, 0, whole)
            text = converted if type(converted) is str else _compact(converted)
        return clip(text, lim.max_string), is_redacted(text)
    except Exception:
        return _placeholder(key), False


def key_text(key: Any) -> str:
    """
    Return the text a mapping key that is not a ``str`` is recorded under (never raises).

    The same text the converter gives it: ``str()`` for ``None``, ``bool``, ``int`` and
    ``float``; for containers and objects the compact JSON of their conversion (so
    distinct tuples stay distinct); cut to ``max_string``.
    """
    if type(key) is str:
        return key
    return _key(key, _Run(_LIMITS))[0]


def distinct_key(key: str, taken: Mapping[str, Any]) -> str:
    """
    Return ``key``, or ``"key #2"`` (``#3``, …) if it is already in ``taken``.
    """
    return _fresh(key, taken) if key in taken else key


def _int_text(n: int) -> str:
    try:
        return str(n)
    except ValueError:  # beyond CPython's int-to-str digit limit
        return f"<int of {n.bit_length()} bits>"


def _compact(converted: Any) -> str:
    try:
        return json.dumps(converted, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):  # an int beyond the digit limit
        return _placeholder(converted)


def _fresh(key: str, out: Mapping[str, Any]) -> str:
    # The first free "key #k": distinct keys whose texts coincide stay distinct.
    k = 2
    while f"{key} #{k}" in out:
        k += 1
    return f"{key} #{k}"


def _convert_mapping(value: Mapping[Any, Any], depth: int, lim: _Run) -> Any:
    n = len(value)
    if depth >= lim.max_depth:
        return f"<{type(value).__name__} of {n} items>"
    out: dict[str, Any] = {}
    limit = lim.max_items
    max_string = lim.max_string
    # Set once a key was made text: a later plain key may then collide with it.
    renamed = False
    for i, (k, v) in enumerate(value.items()):
        if i >= limit:
            out[_fresh("…", out) if "…" in out else "…"] = f"[+{n - limit} items]"
            break
        if type(k) is str and len(k) <= max_string and "://" not in k:
            key = k
            if renamed and key in out:
                key = _fresh(key, out)
            hidden = is_redacted(key)
        else:
            key, hidden = _key(k, lim)
            renamed = True
            if key in out:
                key = _fresh(key, out)
        if hidden:
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


# RUNTIME.reset() (tests): the default limits.
RUNTIME.on_reset.append(lambda: set_limits(Limits()))
