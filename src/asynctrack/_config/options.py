"""
The options of ``configure``: their defaults, bounds and environment variables, and
the validation and merging shared by ``configure()`` and the configuration file reader.

Where a value comes from, highest priority first: a keyword argument of
``configure()`` / ``configure_from_file()``, then an ``ASYNCTRACK_*`` environment
variable, then the configuration file, then the default in :data:`OPTIONS`.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from asynctrack._core import tracker as _tracker
from asynctrack._core.levels import DEFAULT, parse_level
from asynctrack._core.records import Log
from asynctrack._core.values import DEFAULT_REDACT
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink

__all__ = [
    "CONFIG_ENV",
    "ENV_VARS",
    "OPTIONS",
    "Layer",
    "Options",
    "resolve",
    "suggest",
    "validate",
]


class Options(TypedDict, total=False):
    """
    The keyword arguments of ``configure()``, typed, so that a type checker rejects a
    misspelt option (``configure(levle="INFO")``). Its keys are those of
    :data:`OPTIONS` (a test checks it); what each accepts is checked at run time by
    :func:`validate` too, for callers that are not type-checked.
    """

    level: int | str
    levels: Mapping[str, int | str]
    sinks: Sequence[Sink] | None
    max_queue: int
    batch_size: int
    flush_interval: float
    on_full: Literal["drop", "block"]
    block_timeout: float
    spill_dir: str | os.PathLike[str]
    fsync_spill: bool
    exit_timeout: float
    retry_attempts: int
    max_backoff: float
    write_timeout: float
    max_pending_batches: int
    max_calls_per_log: int
    max_traceback_frames: int
    redact: Iterable[str]
    max_depth: int
    max_items: int
    max_string: int
    tracker_class: type[_tracker.Tracker] | None
    processors: Sequence[Callable[[Log], Log | None]]


#: Every option of ``configure`` with its default.
OPTIONS: dict[str, Any] = {
    "level": DEFAULT,
    "levels": {},
    "sinks": None,
    "max_queue": 100_000,
    "batch_size": 512,
    "flush_interval": 0.5,
    "on_full": "drop",
    "block_timeout": 1.0,
    "spill_dir": ".",
    "fsync_spill": False,
    "exit_timeout": 5.0,
    "retry_attempts": 3,
    "max_backoff": 5.0,
    "write_timeout": 30.0,
    "max_pending_batches": 16,
    "max_calls_per_log": 10_000,
    "max_traceback_frames": 30,
    "redact": DEFAULT_REDACT,
    "max_depth": 6,
    "max_items": 100,
    "max_string": 1000,
    "tracker_class": None,
    "processors": (),
}

#: The environment variable naming the configuration file read by ``configure()``.
CONFIG_ENV = "ASYNCTRACK_CONFIG"

# Options that only code (or a file) can set: objects to build or import, and the
# redaction list, which an environment variable must not be able to shorten silently.
_NOT_FROM_ENV = frozenset({"sinks", "tracker_class", "processors", "redact"})

#: Environment variables overriding single options: ``ASYNCTRACK_<OPTION>``.
ENV_VARS: dict[str, str] = {
    f"ASYNCTRACK_{key.upper()}": key for key in OPTIONS if key not in _NOT_FROM_ENV
}

_INTS = {
    "max_queue": 1,
    "batch_size": 1,
    "retry_attempts": 0,
    "max_pending_batches": 1,
    "max_calls_per_log": 1,
    "max_traceback_frames": 0,
    "max_depth": 1,
    "max_items": 1,
    "max_string": 16,
}
# option -> (minimum, whether the minimum itself is excluded). The pipeline's own
# periods have a floor of a millisecond: a flush interval or a backoff of ~0 turns the
# idle dispatcher, or the retries of a sink that is down, into a busy loop that takes
# the host's CPU (and GIL) and hammers the database (#15: bounded configuration).
MIN_PERIOD = 0.001
_FLOATS = {
    "flush_interval": (MIN_PERIOD, False),
    "block_timeout": (0.0, False),
    "exit_timeout": (0.0, False),
    "max_backoff": (MIN_PERIOD, False),
    "write_timeout": (MIN_PERIOD, False),
}
#: Ints and seconds above this are refused (a float cannot hold a huge int at all).
_MAX_INT = 2**63 - 1
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass
class Layer:
    """
    Options from one source (a file, the environment) and how to name each in errors.
    """

    options: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


# -- validation ------------------------------------------------------------------------------


def suggest(word: str, choices: Iterable[str]) -> str:
    """
    Return ``" (did you mean 'x'?)"`` for a close match of ``word``, else ``""``.
    """
    import difflib  # only on the error path: keeps `import asynctrack` light

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = labels

    def label(self, key: str) -> str:
        return self.labels.get(key) or f"configure(): {key}"

    def fail(self, key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.label(key)} must be {expected}, got {quote(value)}")

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"an int >= {minimum}", value)
        if value > _MAX_INT:
            raise self.fail(key, f"an int >= {minimum} and < 2**63", value)
        return value

    def number(self, key: str, value: Any, minimum: float, strict: bool) -> float:
        expected = f"a finite number of seconds {'>' if strict else '>='} {minimum:g}"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not -_MAX_INT <= value <= _MAX_INT  # an int too large for a float
            or not math.isfinite(value)
            or value < minimum
            or (strict and value == minimum)
        ):
            raise self.fail(key, expected, value)
        return float(value)

    def level(self, key: str, value: Any, label: str | None = None) -> int:
        try:
            return parse_level(value, label or self.label(key))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None


def validate(options: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """
    Check options and return them completed with defaults.

    Args:
        options: option name to value, as ``configure`` takes them.
        labels: how to name an option in error messages when it did not come from a
            keyword argument (``"track.toml: asynctrack.batch_size"``).

    Returns:
        Every option of :data:`OPTIONS`, normalised (levels as ints, ``spill_dir`` a
        ``Path``, ``redact`` and ``processors`` tuples, ``sinks`` a list or None).

    Raises:
        ConfigError: an unknown option or a bad value, naming the option and what it
            accepts.
    """
    check = _Checker(labels or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        hint = suggest(unknown[0], OPTIONS) if len(unknown) == 1 else ""
        raise ConfigError(
            f"configure(): unknown option(s) {', '.join(unknown)}{hint}; "
            f"accepted: {', '.join(sorted(OPTIONS))}"
        )
    o = {**OPTIONS, **options}
    o["level"] = check.level("level", o["level"])
    levels = o["levels"]
    if not isinstance(levels, Mapping):
        raise check.fail("levels", "a mapping of tracker name to level", levels)
    checked: dict[str, int] = {}
    for name, lvl in levels.items():
        if not isinstance(name, str):
            raise check.fail("levels", "a mapping with str keys (tracker names)", levels)
        checked[name] = check.level("levels", lvl, f"{check.label('levels')}[{quote(name)}]")
    o["levels"] = checked
    for key, minimum in _INTS.items():
        o[key] = check.integer(key, o[key], minimum)
    for key, (low, strict) in _FLOATS.items():
        o[key] = check.number(key, o[key], low, strict)
    if o["on_full"] not in ("drop", "block"):
        raise check.fail("on_full", "'drop' or 'block'", o["on_full"])
    if not isinstance(o["fsync_spill"], bool):
        raise check.fail("fsync_spill", "a bool", o["fsync_spill"])
    spill_dir = o["spill_dir"]
    if (
        not isinstance(spill_dir, (str, os.PathLike))
        or not os.fspath(spill_dir)
        or "\0" in str(os.fspath(spill_dir))
    ):
        raise check.fail("spill_dir", "a directory path (str or Path)", spill_dir)
    o["spill_dir"] = Path(os.fspath(spill_dir))
    redact = o["redact"]
    if isinstance(redact, (str, bytes)) or not isinstance(redact, Iterable):
        raise check.fail("redact", "a list of str", redact)
    redact = tuple(redact)
    if not all(isinstance(r, str) and r for r in redact):
        raise check.fail("redact", "a list of non-empty str", redact)
    o["redact"] = tuple(r.lower() for r in redact)
    o["tracker_class"] = _check_tracker_class(check, o["tracker_class"])
    processors = o["processors"]
    if isinstance(processors, (str, bytes)) or not isinstance(processors, Iterable):
        raise check.fail("processors", "a list of callables taking and returning a Log", processors)
    processors = tuple(processors)
    for p in processors:
        if not callable(p):
            raise check.fail("processors", "a list of callables taking and returning a Log", p)
    o["processors"] = processors
    o["sinks"] = _check_sinks(check, o["sinks"])
    return o


def _check_tracker_class(check: _Checker, cls: Any) -> type[_tracker.Tracker] | None:
    if cls is None:
        return None
    if not (isinstance(cls, type) and issubclass(cls, _tracker.Tracker)):
        raise check.fail("tracker_class", "a subclass of asynctrack.Tracker", cls)
    try:
        inspect.signature(cls).bind("name")
    except TypeError as exc:
        raise check.fail(
            "tracker_class", "a Tracker subclass whose constructor takes (name)", cls
        ) from exc
    except ValueError:  # pragma: no cover - a signature inspect cannot read: trust it
        pass
    return cls


def _check_sinks(check: _Checker, sinks: Any) -> list[Sink] | None:
    if sinks is None:
        return None
    if isinstance(sinks, (Sink, str, bytes)) or not isinstance(sinks, Iterable):
        raise check.fail("sinks", "a list of asynctrack.Sink instances", sinks)
    checked: list[Sink] = list(sinks)
    names: dict[str, int] = {}
    label = check.label("sinks")
    for i, sink in enumerate(checked):
        if not isinstance(sink, Sink):
            raise ConfigError(
                f"{label}[{i}] must be an asynctrack.Sink instance, got {type(sink).__name__}"
            )
        try:
            name = str(sink.name)
        except Exception as exc:
            raise ConfigError(f"{label}[{i}]: {type(sink).__name__}.name raised {exc!r}") from None
        if name in names:
            raise ConfigError(
                f"{label}[{i}]: sinks[{names[name]}] and sinks[{i}] are both named {name!r}; "
                "sink names must differ (they name spill files and counters)"
            )
        names[name] = i
    return checked


# -- the environment --------------------------------------------------------------------------


def from_env(environ: Mapping[str, str] | None = None) -> Layer:
    """
    Read the ``ASYNCTRACK_*`` variables that override single options.

    An empty variable counts as unset. Values are parsed here (ints, numbers,
    booleans ``1/0/true/false/yes/no/on/off``, ``ASYNCTRACK_LEVELS`` as
    ``name=LEVEL,name=LEVEL``); ranges are checked by :func:`validate`.

    Raises:
        ConfigError: a value that cannot be parsed, naming the variable.
    """
    env = os.environ if environ is None else environ
    layer = Layer()
    for var, key in ENV_VARS.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        label = f"environment variable {var}"
        layer.labels[key] = label
        layer.options[key] = _parse_env(key, raw, label)
    return layer


def _parse_env(key: str, raw: str, label: str) -> Any:
    default = OPTIONS[key]
    if key == "level":
        return int(raw) if raw.isdigit() else raw
    if key == "levels":
        return _parse_levels(raw, label)
    try:
        if isinstance(default, bool):
            low = raw.lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError
        if key in _INTS:
            return int(raw)
        if key in _FLOATS:
            return float(raw)
    except ValueError:
        if isinstance(default, bool):
            kind = "a boolean (1, 0, true, false, yes, no, on, off)"
        elif key in _INTS:
            kind = "an int"
        else:
            kind = "a number of seconds"
        raise ConfigError(f"{label} must be {kind}, got {quote(raw)}") from None
    return raw


def _parse_levels(raw: str, label: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, level = part.partition("=")
        if not sep or not name.strip() or not level.strip():
            raise ConfigError(
                f"{label} must be name=LEVEL pairs separated by commas "
                f"(e.g. 'shop.db=DEBUG,shop=INFO'), got {quote(raw)}"
            )
        level = level.strip()
        try:
            out[name.strip()] = parse_level(
                int(level) if level.isdigit() else level, f"{label} ({quote(name.strip())})"
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
    return out


def resolve(
    kwargs: Mapping[str, Any],
    file: Layer | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """
    Merge the sources (keyword arguments > environment > file > defaults) and validate.

    ``ASYNCTRACK_LEVELS`` adds to (and overrides entries of) the file's ``levels``; a
    ``levels`` keyword argument replaces both.

    Raises:
        ConfigError: as :func:`validate` and :func:`from_env`.
    """
    merged: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if file is not None:
        merged.update(file.options)
        labels.update(file.labels)
    env = from_env(environ)
    for key, value in env.options.items():
        if key in kwargs:
            continue
        if key == "levels" and isinstance(merged.get("levels"), Mapping):
            value = {**merged["levels"], **value}
        merged[key] = value
        labels[key] = env.labels[key]
    for key, value in kwargs.items():
        merged[key] = value
        labels.pop(key, None)
    return validate(merged, labels)
