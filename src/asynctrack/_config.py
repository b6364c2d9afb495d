"""
``configure``: validates every option, then builds and wires the pipeline.

This is the only module that knows all layers: values (limits, redaction),
levels and trackers, hooks, sinks and the dispatcher.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from . import _context, _pipeline, _probe, _tracker
from ._exceptions import ConfigError
from ._levels import DEFAULT, parse_level
from ._records import Log
from ._report import report
from ._values import DEFAULT_REDACT, Limits, set_limits
from ._worker import WorkerOptions
from .sinks._base import Sink

__all__ = ["OPTIONS", "configure"]

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
    "max_pending_batches": 64,
    "max_calls_per_log": 10_000,
    "redact": DEFAULT_REDACT,
    "max_depth": 6,
    "max_items": 100,
    "max_string": 1000,
    "tracker_class": None,
    "processors": (),
}

_LOCK = threading.RLock()


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"configure(): {key} must be {expected}, got {value!r}")


def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, f"an int >= {minimum}", value)
    return value


def _float(key: str, value: Any, minimum: float, *, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _fail(key, "a number of seconds", value)
    if value < minimum or (strict and value == minimum):
        raise _fail(key, f"a number {'>' if strict else '>='} {minimum}", value)
    return float(value)


def _level(key: str, value: Any) -> int:
    try:
        return parse_level(value, key)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"configure(): {exc}") from None


def validate(options: Mapping[str, Any]) -> dict[str, Any]:
    """
    Check options and return them completed with defaults.

    Raises:
        ConfigError: an unknown option or a bad value, naming the option.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"configure(): unknown option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(OPTIONS))}"
        )
    o = {**OPTIONS, **options}
    o["level"] = _level("level", o["level"])
    levels = o["levels"]
    if not isinstance(levels, Mapping):
        raise _fail("levels", "a mapping of tracker name to level", levels)
    checked: dict[str, int] = {}
    for name, lvl in levels.items():
        if not isinstance(name, str):
            raise _fail("levels", "a mapping with str keys", levels)
        checked[name] = _level(f"levels[{name!r}]", lvl)
    o["levels"] = checked
    for key, minimum in (
        ("max_queue", 1),
        ("batch_size", 1),
        ("retry_attempts", 0),
        ("max_pending_batches", 1),
        ("max_calls_per_log", 1),
        ("max_depth", 1),
        ("max_items", 1),
        ("max_string", 16),
    ):
        o[key] = _int(key, o[key], minimum)
    o["flush_interval"] = _float("flush_interval", o["flush_interval"], 0.0, strict=True)
    for key in ("block_timeout", "exit_timeout", "max_backoff"):
        o[key] = _float(key, o[key], 0.0)
    o["write_timeout"] = _float("write_timeout", o["write_timeout"], 0.0, strict=True)
    if o["on_full"] not in ("drop", "block"):
        raise _fail("on_full", "'drop' or 'block'", o["on_full"])
    if not isinstance(o["fsync_spill"], bool):
        raise _fail("fsync_spill", "a bool", o["fsync_spill"])
    spill_dir = o["spill_dir"]
    if not isinstance(spill_dir, (str, Path)) or not str(spill_dir):
        raise _fail("spill_dir", "a directory path", spill_dir)
    o["spill_dir"] = Path(spill_dir)
    redact = o["redact"]
    if isinstance(redact, str) or not isinstance(redact, Iterable):
        raise _fail("redact", "a list of str", redact)
    redact = tuple(redact)
    if not all(isinstance(r, str) and r for r in redact):
        raise _fail("redact", "a list of non-empty str", redact)
    o["redact"] = tuple(r.lower() for r in redact)
    cls = o["tracker_class"]
    if cls is not None and not (isinstance(cls, type) and issubclass(cls, _tracker.Tracker)):
        raise _fail("tracker_class", "a subclass of asynctrack.Tracker", cls)
    processors = o["processors"]
    if isinstance(processors, (str, bytes)) or not isinstance(processors, Iterable):
        raise _fail("processors", "a list of callables", processors)
    processors = tuple(processors)
    for p in processors:
        if not callable(p):
            raise _fail("processors", "a list of callables", p)
    o["processors"] = processors
    sinks = o["sinks"]
    if sinks is not None:
        if isinstance(sinks, Sink) or not isinstance(sinks, Iterable):
            raise _fail("sinks", "a list of asynctrack.Sink instances", sinks)
        sinks = list(sinks)
        names: set[str] = set()
        for i, sink in enumerate(sinks):
            if not isinstance(sink, Sink):
                raise ConfigError(
                    f"configure(): sinks[{i}] must be an asynctrack.Sink instance, "
                    f"got {type(sink).__name__}"
                )
            name = str(sink.name)
            if name in names:
                raise ConfigError(
                    f"configure(): sinks[{i}]: two sinks are named {name!r}; sink names "
                    "must differ (they name spill files and counters)"
                )
            names.add(name)
        o["sinks"] = sinks
    return o


def configure(**options: Any) -> None:
    """
    Configure tracking for this process: levels, sinks, pipeline and limits.

    Called again, it reconfigures at run time: the old sinks are flushed and closed
    after the new ones take over, and levels apply to calls that start afterwards.
    Called with no argument, it reads the configuration file named by
    ``ASYNCTRACK_CONFIG``, else ``track.toml``, else ``[tool.asynctrack]`` in
    ``pyproject.toml`` in the working directory, else uses the defaults (an SQLite
    database ``track.db``).

    Raises:
        ConfigError: an unknown option or an invalid value, naming the option.

    .. versionadded:: 0.1
    """
    if not options:
        from ._config_file import discover

        found = discover()
        if found is not None:
            options = found
    o = validate(options)
    with _LOCK:
        _apply(o)


def _apply(o: dict[str, Any]) -> None:
    sinks = o["sinks"]
    if sinks is None:
        from .sinks import SQLSink

        sinks = [SQLSink()]
    set_limits(
        Limits(
            max_depth=o["max_depth"],
            max_items=o["max_items"],
            max_string=o["max_string"],
            redact=o["redact"],
        )
    )
    _probe.refresh_plans()
    _context.set_max_calls(o["max_calls_per_log"])
    _tracker.set_tracker_class(o["tracker_class"])
    _context.set_postprocess(_make_postprocess(o["processors"]))
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
    _pipeline.install(pipeline)


def _count(name: str) -> None:
    pipeline = _pipeline.current()
    if pipeline is not None:
        pipeline.counters.add(name)


def _make_postprocess(
    processors: tuple[Callable[[Log], Log | None], ...],
) -> Callable[[Log], Log | None] | None:
    base = _tracker.Tracker
    cls = _tracker._TRACKER_CLASS[0] if _tracker._TRACKER_CLASS else base
    extend = cls.extend_log is not base.extend_log
    filtering = cls.filter_call is not base.filter_call
    if not (extend or filtering or processors):
        return None

    def postprocess(log: Log) -> Log | None:
        tracker = log._tracker
        if extend and tracker is not None:
            try:
                tracker.extend_log(log)
            except Exception as exc:
                _count("hook_errors")
                report(
                    "extend_log", f"asynctrack: {type(tracker).__name__}.extend_log raised {exc!r}"
                )
        if filtering and tracker is not None:
            kept = []
            for call in log.calls:
                try:
                    keep = tracker.filter_call(call)
                except Exception as exc:
                    keep = True
                    _count("hook_errors")
                    report(
                        "filter_call",
                        f"asynctrack: {type(tracker).__name__}.filter_call raised {exc!r}",
                    )
                if keep:
                    kept.append(call)
            if len(kept) != len(log.calls):
                log.calls = kept
        result: Log | None = log
        for processor in processors:
            try:
                result = processor(log)
            except Exception as exc:
                _count("hook_errors")
                report(
                    f"processor:{id(processor)}",
                    f"asynctrack: processor {processor!r} raised {exc!r}",
                )
                result = log
            if result is None:
                _count("dropped")
                return None
            if not isinstance(result, Log):
                _count("hook_errors")
                report(
                    f"processor-type:{id(processor)}",
                    f"asynctrack: processor {processor!r} returned {type(result).__name__}, "
                    "not a Log or None; the log is kept unchanged",
                )
                result = log
            log = result
        return log

    return postprocess
