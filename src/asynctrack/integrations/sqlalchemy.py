"""
Database statements as calls: ``instrument(engine)`` for SQLAlchemy engines.

Each statement an instrumented engine executes inside a tracked call becomes a call
beneath it, named ``sql.<VERB>`` (``sql.SELECT``, ``sql.INSERT``…), with the
statement's text (whitespace normalised, truncated like any value) as its
``statement`` param, the cursor's ``rowcount`` in its data when the driver reports
one, its duration, and its error and traceback when it fails. Parameter values are
never recorded: they hold user data. Statements executed outside any tracked call
record nothing, so an instrumented engine never opens logs of its own.

It listens to the engine's ``before_cursor_execute``, ``after_cursor_execute`` and
``handle_error`` events; an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` is
instrumented through its ``sync_engine``, whose events run in the awaiting task's
context. It uses only asynctrack's public API.

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

import asynctrack
from asynctrack import DEFAULT, CallScope, Tracker

__all__ = ["instrument", "uninstrument"]

#: The attribute of an execution context holding its statement's open call.
_SCOPE = "_asynctrack_scope"
#: Leading comments, spaces and parentheses before a statement's verb.
_VERB = re.compile(r"(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()*([A-Za-z]+)", re.DOTALL)

_instrumented: weakref.WeakKeyDictionary[sa.Engine, _Listener] = weakref.WeakKeyDictionary()


def instrument(
    engine: Any,
    *,
    tracker: str | Tracker = "asynctrack.sqlalchemy",
    level: int | str = DEFAULT,
    param_names: bool = False,
    hide_parameters: bool = True,
) -> None:
    """
    Record the statements ``engine`` executes inside tracked calls as calls.

    Instrumenting an engine twice keeps the first instrumentation (each statement is
    recorded once); :func:`uninstrument` removes it.

    Args:
        engine: a :class:`sqlalchemy.engine.Engine` or
            :class:`sqlalchemy.ext.asyncio.AsyncEngine`.
        tracker: the tracker (or its name) recording the statements; its level
            threshold applies like any probe's.
        level: the level of the statement calls (``DEFAULT``).
        param_names: also record the names of the statement's bound parameters (never
            their values) as the ``parameters`` param: a list of names, or their number
            for positional parameters.
        hide_parameters: set the engine's ``hide_parameters``, so that SQLAlchemy's
            exception messages (``[parameters: ('alice@example.org',)]``) and its echo
            log leave the values out: such a message is the recorded ``error`` of every
            probed call the exception passes through. ``False`` leaves the engine as
            it is.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy engine, ``tracker`` is neither a str
            nor a ``Tracker``, or ``param_names`` or ``hide_parameters`` is not a bool.
        ValueError: ``level`` is unknown.

    Example::

        engine = create_async_engine("postgresql+asyncpg://…")
        asynctrack.integrations.sqlalchemy.instrument(engine)

    .. versionadded:: 0.2
    """
    sync_engine = _sync_engine(engine, "instrument")
    if isinstance(tracker, str):
        tracker = asynctrack.get_tracker(tracker)
    elif not isinstance(tracker, Tracker):
        raise TypeError(
            "instrument(): tracker must be a tracker name (str) or an asynctrack.Tracker, "
            f"not {type(tracker).__name__}"
        )
    for option, flag in (("param_names", param_names), ("hide_parameters", hide_parameters)):
        if not isinstance(flag, bool):
            raise TypeError(f"instrument(): {option} must be a bool, not {type(flag).__name__}")
    try:
        tracker.call("sql", level=level)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"instrument(): level: {exc}") from None
    if hide_parameters:
        sync_engine.hide_parameters = True
    if sync_engine in _instrumented:
        return
    listener = _Listener(tracker, level, param_names)
    event.listen(sync_engine, "before_cursor_execute", listener.before)
    event.listen(sync_engine, "after_cursor_execute", listener.after)
    event.listen(sync_engine, "handle_error", listener.error)
    _instrumented[sync_engine] = listener


def uninstrument(engine: Any) -> None:
    """
    Stop recording ``engine``'s statements (a no-op when it was not instrumented).

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy engine.

    .. versionadded:: 0.2
    """
    sync_engine = _sync_engine(engine, "uninstrument")
    listener = _instrumented.pop(sync_engine, None)
    if listener is not None:
        event.remove(sync_engine, "before_cursor_execute", listener.before)
        event.remove(sync_engine, "after_cursor_execute", listener.after)
        event.remove(sync_engine, "handle_error", listener.error)


def _sync_engine(engine: Any, what: str) -> sa.Engine:
    sync = getattr(engine, "sync_engine", engine)  # AsyncEngine
    if not isinstance(sync, sa.Engine):
        raise TypeError(
            f"{what}(): engine must be a SQLAlchemy Engine or AsyncEngine, "
            f"not {type(engine).__name__}"
        )
    return sync


def verb(statement: str) -> str:
    """
    Return the upper-cased first keyword of ``statement`` (``"OTHER"`` when none).
    """
    match = _VERB.match(statement)
    return match.group(1).upper() if match else "OTHER"


class _Listener:
    """
    The three event handlers of one instrumented engine.
    """

    __slots__ = ("level", "param_names", "tracker")

    def __init__(self, tracker: Tracker, level: int | str, param_names: bool) -> None:
        self.tracker = tracker
        self.level = level
        self.param_names = param_names

    def before(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if context is None or asynctrack.current_span() is None:
            return  # outside any tracked call: statements never open logs
        try:
            params: dict[str, Any] = {"statement": " ".join(str(statement).split())}
            if self.param_names:
                params["parameters"] = _names(context, parameters, executemany)
            scope = self.tracker.call(f"sql.{verb(statement)}", level=self.level, params=params)
            scope.__enter__()
            setattr(context, _SCOPE, scope)
        except Exception:  # pragma: no cover - never raise into the application
            return

    def after(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        scope: CallScope | None = getattr(context, _SCOPE, None)
        if scope is None:
            return
        setattr(context, _SCOPE, None)
        try:
            rowcount = cursor.rowcount
            if isinstance(rowcount, int) and rowcount >= 0:
                scope.add_data("rowcount", rowcount)
        except Exception:
            pass  # a driver without rowcount: nothing to record
        scope.__exit__(None, None, None)

    def error(self, exception_context: Any) -> None:
        context = exception_context.execution_context
        scope: CallScope | None = getattr(context, _SCOPE, None)
        if scope is None:
            return
        setattr(context, _SCOPE, None)
        # The driver's exception, not SQLAlchemy's wrapper: the wrapper's message quotes
        # the bound parameter values.
        exc = exception_context.original_exception
        scope.__exit__(type(exc), exc, exc.__traceback__)


def _names(context: Any, parameters: Any, executemany: bool) -> Any:
    """
    Return the names of bound parameters (a list), or their number when positional.
    """
    # Drivers with positional parameters (qmark, format, numeric) get tuples: the
    # compiled statement still knows the names, in order.
    positions = getattr(getattr(context, "compiled", None), "positiontup", None)
    if positions:
        return list(dict.fromkeys(str(name) for name in positions))
    if executemany and isinstance(parameters, (list, tuple)):
        parameters = parameters[0] if parameters else {}
    if isinstance(parameters, dict):
        return sorted(str(name) for name in parameters)
    try:
        return len(parameters)
    except TypeError:
        return None
