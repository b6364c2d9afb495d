"""
``configure``: validates every option, then builds and wires the pipeline.

This is the only module that knows all layers: values (limits, redaction),
levels and trackers, hooks, sinks and the dispatcher.

Where a value comes from, highest priority first: a keyword argument of
``configure()`` / ``configure_from_file()``, then an ``ASYNCTRACK_*`` environment
variable, then the configuration file, then the default in :data:`OPTIONS`.
"""

from __future__ import annotations

import inspect
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asynctrack._core import calltree, probe
from asynctrack._core import tracker as _tracker
from asynctrack._core.levels import DEFAULT, parse_level
from asynctrack._core.records import Log
from asynctrack._core.selfwarn import report
from asynctrack._core.values import DEFAULT_REDACT, Limits, set_limits
from asynctrack._delivery import intake
from asynctrack._delivery import pipeline as _pipeline
from asynctrack._delivery.worker import WorkerOptions
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink

__all__ = ["CONFIG_ENV", "ENV_VARS", "OPTIONS", "Layer", "configure", "resolve", "validate"]

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

_LOCK = threading.RLock()


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


# -- configure ---------------------------------------------------------------------------------


def configure(**options: Any) -> None:
    """
    Configure tracking for this process: levels, sinks, pipeline, limits and hooks.

    Each call states the whole configuration: an option left out takes its value from
    the environment, else its default (not from an earlier call). Called again, it
    reconfigures at run time: new logs go to the new sinks while the old sinks are
    flushed and closed (within ``exit_timeout``), so none is lost and none is written
    to a closed sink; a sink kept in both configurations is closed by the old pipeline
    before the new one opens it. Levels apply to calls that start afterwards.

    Called with no argument, it reads the file named by ``ASYNCTRACK_CONFIG``, else
    ``track.toml``, else ``[tool.asynctrack]`` in ``pyproject.toml`` in the working
    directory (see :func:`configure_from_file`), else uses the defaults.

    ``ASYNCTRACK_<OPTION>`` environment variables override the file and the defaults,
    never a keyword argument given here.

    Args:
        level: root threshold (``DEBUG``, ``INFO``, ``DEFAULT``, ``NONE``, a name or an
            int); default ``DEFAULT``.
        levels: thresholds per dotted tracker name, ``{"shop.db": "DEBUG"}``; default none.
        sinks: list of :class:`Sink` instances; default ``[SQLSink()]`` (``track.db``).
        max_queue: completed logs held in memory before ``on_full`` applies (100000).
        batch_size: logs per batch handed to the sinks (512).
        flush_interval: seconds between writes of a partial batch (0.5).
        on_full: ``"drop"`` (count and drop) or ``"block"`` (wait up to
            ``block_timeout``) when the queue is full; default ``"drop"``.
        block_timeout: longest wait of a producer with ``on_full="block"`` (1.0 s).
        spill_dir: directory of the spill files of failing sinks (``"."``).
        fsync_spill: fsync spill files after each append (False).
        exit_timeout: deadline of the flush at exit and of reconfiguration (5.0 s).
        retry_attempts: retries of a failed write before spilling (3).
        max_backoff: longest pause between retries (5.0 s).
        write_timeout: longest ``Sink.write``/``open``/``close`` before it counts as
            failed (30.0 s).
        max_pending_batches: batches queued per sink before new ones spill (16).
        max_calls_per_log: calls recorded per log; the rest are counted (10000).
        max_traceback_frames: frames kept in the traceback of the innermost probed
            call an exception passed through, innermost last; 0 records none (30).
        redact: substrings marking sensitive names (case-insensitive); default
            password, secret, token, api_key, authorization, cookie, session, ...
        max_depth: nesting depth kept in recorded values (6).
        max_items: items kept per container (100).
        max_string: characters kept per string (1000).
        tracker_class: a :class:`Tracker` subclass returned by ``get_tracker`` (None).
        processors: callables applied in order to each completed log; returning
            None drops it (none).

    Raises:
        ConfigError: an unknown option or an invalid value (in an argument, an
            environment variable or a file), naming it and what it accepts; or a call
            from inside a sink.

    .. versionadded:: 0.1
    """
    file: Layer | None = None
    if not options:
        from asynctrack._config.file import discover

        file = discover()
    apply(resolve(options, file))


def apply(o: dict[str, Any]) -> None:
    """
    Install validated options (the result of :func:`resolve`).

    Raises:
        ConfigError: called from the dispatcher thread (a sink reconfiguring).
    """
    if threading.current_thread() is intake._DISPATCHER_THREAD[0]:
        raise ConfigError(
            "configure() cannot be called from a sink (the dispatcher thread would wait for itself)"
        )
    with _LOCK:
        _apply(o)


def _apply(o: dict[str, Any]) -> None:
    sinks = o["sinks"]
    if sinks is None:
        from asynctrack.sinks import SQLSink

        sinks = [SQLSink()]
    set_limits(
        Limits(
            max_depth=o["max_depth"],
            max_items=o["max_items"],
            max_string=o["max_string"],
            redact=o["redact"],
        )
    )
    calltree.set_max_calls(o["max_calls_per_log"])
    calltree.set_max_traceback_frames(o["max_traceback_frames"])
    probe.refresh_plans()  # the generated wrappers inline the limits and max_calls
    _tracker.set_tracker_class(o["tracker_class"])
    calltree.set_postprocess(_make_postprocess(o["tracker_class"], o["processors"]))
    pipeline = _pipeline.Pipeline(
        sinks,
        max_queue=o["max_queue"],
        batch_size=o["batch_size"],
        flush_interval=o["flush_interval"],
        on_full=o["on_full"],
        block_timeout=o["block_timeout"],
        exit_timeout=o["exit_timeout"],
        options=WorkerOptions(
            retry_attempts=o["retry_attempts"],
            max_backoff=o["max_backoff"],
            write_timeout=o["write_timeout"],
            max_pending_batches=o["max_pending_batches"],
            replay_batch=o["batch_size"],
            spill_dir=o["spill_dir"],
            fsync_spill=o["fsync_spill"],
        ),
    )
    _tracker.set_levels(o["level"], o["levels"])
    old = _pipeline.current()
    if old is not None and not old.closed and _shares_sinks(old.sinks, sinks):
        # A sink instance (or a spill file: same sink name) in both configurations must
        # never be used by two dispatchers at once: retire the old pipeline first (its
        # sinks flushed and closed), then start the new one. Logs completed meanwhile
        # are forwarded to the new intake, which holds them until it starts. Otherwise
        # install() starts the new pipeline first and retires the old one after, so
        # the new sinks take over at once.
        old.intake.forward = pipeline.intake.put
        old.close(old.exit_timeout, write_open_logs=False)
    _pipeline.install(pipeline)


def _shares_sinks(old: list[Sink], new: list[Sink]) -> bool:
    names = set()
    for sink in old:
        try:
            names.add(str(sink.name))
        except Exception:  # validated before; a name that fails now: be safe
            return True
    return any(s in old or str(s.name) in names for s in new)


# -- hooks and processors --------------------------------------------------------------------


def _count(name: str, n: int = 1) -> None:
    pipeline = _pipeline.current()
    if pipeline is not None:
        pipeline.counters.add(name, n)


def _hook_failed(key: str, message: str) -> None:
    _count("hook_errors")
    report(key, f"asynctrack: {message} (counted in stats().hook_errors; the log was kept)")


def _make_postprocess(
    cls: type[_tracker.Tracker] | None,
    processors: tuple[Callable[[Log], Log | None], ...],
) -> Callable[[Log], Log | None] | None:
    # Decided once per configuration: with no hook overridden and no processor, the
    # completion path pays nothing at all.
    base = _tracker.Tracker
    cls = cls or base
    filtering = cls.filter_call is not base.filter_call
    extend = cls.extend_log is not base.extend_log
    if not (extend or filtering or processors):
        return None
    registry = _tracker._REGISTRY

    def postprocess(log: Log) -> Log | None:
        if filtering:
            kept = []
            for call in log.calls:
                tracker = registry.get(call.tracker)
                if tracker is None:
                    tracker = log._tracker
                try:
                    keep = tracker is None or tracker.filter_call(call)
                except Exception as exc:
                    keep = True
                    _hook_failed(
                        "hook:filter_call", f"{type(tracker).__name__}.filter_call raised {exc!r}"
                    )
                if keep:
                    kept.append(call)
            if len(kept) != len(log.calls):
                if not kept:
                    _count("dropped")
                    return None
                log.calls = kept
        tracker = log._tracker
        if extend and tracker is not None:
            try:
                tracker.extend_log(log)
            except Exception as exc:
                _hook_failed(
                    "hook:extend_log", f"{type(tracker).__name__}.extend_log raised {exc!r}"
                )
        for processor in processors:
            try:
                result = processor(log)
            except Exception as exc:
                _hook_failed(
                    f"hook:processor:{id(processor)}", f"processor {processor!r} raised {exc!r}"
                )
                continue
            if result is None:
                _count("dropped")
                return None
            if not isinstance(result, Log):
                _hook_failed(
                    f"hook:processor-type:{id(processor)}",
                    f"processor {processor!r} returned {type(result).__name__}, not a Log or None",
                )
                continue
            log = result
        return log

    return postprocess
