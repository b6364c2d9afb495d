"""
``configure``: validates every option, then builds and wires the pipeline.

This is the only module that knows all layers: values (limits, redaction),
levels and trackers, hooks, sinks and the dispatcher.

Where a value comes from, highest priority first: a keyword argument of
``configure()`` / ``configure_from_file()``, then an ``ASYNCTRACK_*`` environment
variable, then the configuration file, then the default declared in
:mod:`asynctrack._config.options`.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from asynctrack._config.options import Layer, Options, resolve
from asynctrack._config.reference import docstring
from asynctrack._core import calltree, failure, params
from asynctrack._core import tracker as _tracker
from asynctrack._core.jsonsafe import has_nonfinite, jsonable
from asynctrack._core.records import Log
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.selfwarn import report
from asynctrack._core.values import Limits, set_limits
from asynctrack._delivery import pipeline as _pipeline
from asynctrack._delivery.worker import WorkerOptions
from asynctrack._exceptions import ConfigError
from asynctrack.sinks._base import Sink

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.12

__all__ = [
    "configure",
    "configure_from_file",
    "tracking",
]

_LOCK = threading.RLock()


# -- configure ---------------------------------------------------------------------------------


def configure(**options: Unpack[Options]) -> None:
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
        **options: the options of the reference table on the Configuration page of the
            manual, each with its default, bounds, environment variable and file form;
            ``help(configure)`` lists them too (both are generated from their
            declarations).

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


# help(configure) lists every option, described from its declaration.
configure.__doc__ = inspect.cleandoc(configure.__doc__ or "") + "\n\n" + docstring()


def configure_from_file(path: str | os.PathLike[str], **overrides: Unpack[Options]) -> None:
    """
    Configure tracking from a TOML file.

    The file holds an ``[asynctrack]`` table (``track.toml``) or a
    ``[tool.asynctrack]`` table (``pyproject.toml``); other tables are ignored. Its keys
    are the options of :func:`configure`; ``ASYNCTRACK_*`` environment variables
    override them, and keyword arguments given here override both::

        asynctrack.configure_from_file("track.toml", processors=[add_version])

    Args:
        path: the file. Relative paths inside it (a ``FileSink`` path, ``spill_dir``)
            are relative to the working directory, as in code.
        **overrides: options of :func:`configure` that take precedence.

    Raises:
        ConfigError: the file cannot be read, is not valid TOML (the message gives
            the line), or holds an invalid value; the message names the file, the
            key (``asynctrack.sinks[1].url``) and what was expected.

    .. versionadded:: 0.1
    """
    from asynctrack._config.file import load  # tomllib only when a file is read

    apply(resolve(overrides, load(path)))


@asynccontextmanager
async def tracking(**config: Unpack[Options]) -> AsyncIterator[None]:
    """
    Configure on enter and shut down on exit: a lifespan for FastAPI or Starlette::

        @asynccontextmanager
        async def lifespan(app):
            async with asynctrack.tracking(sinks=[asynctrack.SQLSink()]):
                yield

    .. versionadded:: 0.1
    """
    configure(**config)
    try:
        yield
    finally:
        await _pipeline.shutdown()


def apply(o: dict[str, Any]) -> None:
    """
    Install validated options (the result of :func:`resolve`).

    Raises:
        ConfigError: called from the dispatcher thread (a sink reconfiguring).
    """
    if threading.current_thread() is RUNTIME.dispatcher_thread:
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
    failure.set_max_traceback_frames(o["max_traceback_frames"])
    params.refresh_plans()  # the generated wrappers inline the limits and max_calls
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
        # A hook's values did not come through the probe's conversion: NaN and
        # infinities would be written as null (see docs/guarantees.md).
        if has_nonfinite(log.info):
            log.info = jsonable(log.info)
        return log

    return postprocess
