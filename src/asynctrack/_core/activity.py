"""
What application code adds to the current log: info, data, and context propagation.

``add_info`` and ``info`` set values shared by the whole log (or bound to the context
outside any log), ``add_data`` sets values on one call entry, ``propagate`` carries the
context into executors that do not copy it. Info dicts are copy-on-write: a dict
handed to the pipeline is never mutated. Writers of shared log state take one lock,
never held while blocking and never taken by the per-call path.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asynctrack._core import values as _values
from asynctrack._core.calltree import FRAME, INFO, SILENT
from asynctrack._core.layout import DATA, FRAME_DEPTH, FRAME_LOG, FRAME_SLOT, FRAME_SLOTS, FRAME_UP
from asynctrack._core.records import Log
from asynctrack._core.values import (
    _ATOMS,
    _REDACT_CACHE,
    PLAIN_NAMES,
    REDACTED,
    convert,
    current_limits,
    is_redacted,
)

__all__ = ["add_data", "add_info", "add_info_many", "check_key", "info", "propagate"]

_get = FRAME.get

#: Serialises writers of shared log state (add_info/add_data); never held while
#: blocking and never taken by the per-call path.
_LOCK = threading.Lock()


def check_key(key: object, what: str) -> str:
    """
    Return ``key`` as a plain str (a str subclass converted).

    Raises:
        TypeError: ``key`` is not a str (the message starts with ``what``).
    """
    if type(key) is not str:
        if isinstance(key, str):
            return str.__str__(key)
        raise TypeError(f"{what}: key must be a str, not {type(key).__name__}")
    return key


def _value(key: str, value: Any) -> Any:
    return REDACTED if is_redacted(key) else convert(value)


def _converted(values: dict[Any, Any], what: str) -> dict[str, Any]:
    # Keys checked, values converted (sensitive keys redacted). Inlined for the usual
    # item, a name already known not to be secret and an atom or a short plain string:
    # a web middleware sets four such items per request.
    out: dict[str, Any] = {}
    known = _REDACT_CACHE.get  # cleared, never replaced, when the limits change
    longest = current_limits().max_string
    for key, value in values.items():
        if type(key) is not str:
            key = check_key(key, what)
        if known(key, True) and is_redacted(key):
            out[key] = REDACTED
        elif type(value) in _ATOMS or (
            type(value) is str and len(value) <= longest and "://" not in value
        ):
            out[key] = value
        else:
            out[key] = convert(value)
    return out


def add_info(key: str, value: Any) -> None:
    """
    Set ``key`` in the info of the current log, shared by all its calls (last write wins).

    Outside any log, bind it to the current context instead: logs opened later in this
    context, and in tasks spawned from it, start with it (the way a middleware records
    the user before the handler runs). Inside an untracked call it does nothing.

    Raises:
        TypeError: ``key`` is not a str.

    .. versionadded:: 0.1
    """
    key = check_key(key, "add_info")
    frame = _get()
    if frame is SILENT:
        return
    converted = _value(key, value)
    if frame is not None:
        log = frame[FRAME_LOG]
        if not log._done:
            with _LOCK:
                # Copy on write: a dict handed to the pipeline is never mutated.
                log.info = {**log.info, key: converted}
            return
    bound = INFO.get()
    INFO.set({**bound, key: converted} if bound else {key: converted})


def add_info_many(log: Log, values: dict[str, Any], opened: bool = False) -> None:
    """
    Set several info keys of ``log`` with one copy of its info dict.

    ``values`` is the caller's own dict (a ``**kwargs``, or the ``info=`` of
    ``Tracker.call``), never used after this. ``opened``: the call starting now just
    opened ``log``; if its info is empty (nothing bound in the context) it takes
    ``values`` as its info dict, without a copy and without the lock, since no other
    thread can reach the log's info yet (the call's frame is in no context).
    """
    # The usual items are stored as they are, without a copy: names known not to be
    # sensitive with atoms or short plain strings (see convert); any other item has
    # them all converted.
    # A web middleware sets its info this way once or twice per request, so this path
    # avoids a call (the limits are read from their module) and a ``with`` block (its
    # bound methods) where it can (see docs/performance.md, "Instructions per request").
    plain = PLAIN_NAMES
    longest = _values._LIMITS.max_string
    for key, value in values.items():
        if type(key) is not str or key not in plain:
            values = _converted(values, "add_info")
            break
        if type(value) is str:
            if len(value) > longest or "://" in value:
                values = _converted(values, "add_info")
                break
        elif type(value) not in _ATOMS:
            values = _converted(values, "add_info")
            break
    if log._done:
        return
    if opened and not log.info:
        log.info = values
        return
    _LOCK.acquire()
    try:
        log.info = {**log.info, **values}
    finally:
        _LOCK.release()


def add_data(key: str, value: Any, depth: int | None = None) -> None:
    """
    Set ``key`` in the data of the current call entry (or of an ancestor).

    Args:
        key: the name.
        value: any value; converted like parameters.
        depth: ``None`` for the current call, ``k >= 0`` for the ancestor at depth k,
            a negative number counts up from the current call (-1 is its caller).

    Outside a tracked call it does nothing.

    Raises:
        TypeError: ``key`` is not a str, or ``depth`` is not an int.
        ValueError: ``depth`` is out of range for the current call.

    .. versionadded:: 0.1
    """
    key = check_key(key, "add_data")
    if depth is not None and (type(depth) is not int):
        raise TypeError(f"add_data: depth must be an int or None, not {type(depth).__name__}")
    frame = _get()
    if frame is None or frame is SILENT:
        return
    target = frame
    if depth is not None:
        current = frame[FRAME_DEPTH]
        wanted = depth if depth >= 0 else current + depth
        if not 0 <= wanted <= current:
            raise ValueError(
                f"add_data: depth={depth} is out of range for a call at depth {current}"
            )
        while target[FRAME_DEPTH] != wanted:
            target = target[FRAME_UP]
    log = target[FRAME_LOG]
    if log._done:
        return
    converted = _value(key, value)
    slots, at = target[FRAME_SLOTS], target[FRAME_SLOT] + DATA
    with _LOCK:
        old = slots[at]
        slots[at] = {**old, key: converted} if old else {key: converted}


@contextmanager
def info(**values: Any) -> Iterator[None]:
    """
    Bind info values for the duration of a ``with`` block.

    Logs opened inside the block (and in tasks spawned from it) start with these
    values; a log already open gets them too.

    .. versionadded:: 0.1
    """
    frame = _get()
    if frame is SILENT:
        yield
        return
    converted = _converted(values, "info")
    if frame is not None and not frame[FRAME_LOG]._done:
        log = frame[FRAME_LOG]
        with _LOCK:
            log.info = {**log.info, **converted}
    bound = INFO.get()
    token = INFO.set({**bound, **converted} if bound else converted)
    try:
        yield
    finally:
        try:
            INFO.reset(token)
        except ValueError:  # exited in another context (a generator moved between tasks)
            pass


def propagate(func: Callable[..., Any]) -> Callable[..., Any]:
    """
    Return a callable that runs ``func`` in a copy of the current context.

    ``loop.run_in_executor`` and ``ThreadPoolExecutor.submit`` do not copy the context
    (``asyncio.to_thread`` and ``anyio.to_thread.run_sync`` do); wrap the function with
    ``propagate`` so its probed calls join the current log::

        await loop.run_in_executor(None, asynctrack.propagate(work), arg)

    .. versionadded:: 0.1
    """
    ctx = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> Any:
        # A Context cannot be entered twice at once: run each call in its own copy.
        return ctx.copy().run(func, *args, **kwargs)

    run.__wrapped__ = func  # type: ignore[attr-defined]
    run.__name__ = getattr(func, "__name__", "propagated")
    run.__doc__ = getattr(func, "__doc__", None)
    return run


def _after_fork_in_child() -> None:
    # The lock may have been held by a thread that does not exist in the child.
    _LOCK._at_fork_reinit()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
