"""
Trackers: one per dotted name, each with an effective threshold.

Thresholds are resolved once, when levels change, and stored on the tracker as
``_th``, so a probe compares two ints per call. While nothing is configured and
nothing captures, every tracker is *off* (``_off``) and probes pass straight through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from asynctrack._core import activity, calltree, failure, tracecontext
from asynctrack._core.layout import FRAME_LOG, FRAME_SLOT, FRAME_SLOTS, FRAME_UP, META, NO_PARAMS
from asynctrack._core.levels import DEFAULT, NONE, OFF, Level, level_name, parse_level
from asynctrack._core.levels import NAMES as LEVEL_NAMES
from asynctrack._core.probe import make_probe
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.values import convert_mapping

if TYPE_CHECKING:
    from asynctrack._core.records import Call, Log

__all__ = ["Tracker", "get_tracker", "set_levels"]

P = ParamSpec("P")
R = TypeVar("R")

_REGISTRY: dict[str, Tracker] = {}
_REGISTRY_LOCK = threading.Lock()


class Tracker:
    """
    A named source of probes, like a ``logging.Logger``: ``get_tracker(__name__)``.

    Subclass it and pass ``configure(tracker_class=...)`` to customise what happens to
    each log; the hook methods are :meth:`extend_log` and :meth:`filter_call`.

    .. versionadded:: 0.1
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._th = OFF
        self._off = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} level={level_name(self.level)}>"

    # -- levels -----------------------------------------------------------------------
    @property
    def level(self) -> int:
        """
        The effective threshold: this name's level, else the nearest dotted ancestor's,
        else the root level.
        """
        return _effective(self.name)

    def set_level(self, level: int | str | None) -> None:
        """
        Set the threshold of this tracker and its dotted descendants (``None`` unsets it).

        It applies to calls that start afterwards.
        """
        with _REGISTRY_LOCK:
            if level is None:
                RUNTIME.name_levels.pop(self.name, None)
            else:
                RUNTIME.name_levels[self.name] = parse_level(level, "set_level(): level")
            _refresh()

    # -- probing ------------------------------------------------------------------------
    @overload
    def probe(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def probe(
        self,
        *,
        level: int | str = ...,
        fname: str | None = ...,
        inc: Iterable[str] | None = ...,
        exc: Iterable[str] | None = ...,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def probe(  # type: ignore[misc]  # mypy cannot match ParamSpec-only return overloads
        self,
        func: Any = None,
        /,
        *,
        level: int | str = DEFAULT,
        fname: str | None = None,
        inc: Iterable[str] | None = None,
        exc: Iterable[str] | None = None,
    ) -> Any:
        """
        Record each call of the decorated function; bare (``@tr.probe``) or called.

        Args:
            level: the call is tracked when ``level >= `` the tracker's threshold;
                ``NONE`` never tracks and silences the call's subtree.
            fname: the recorded function name (default ``module.qualname``).
            inc: keep only these parameters (``self``/``cls`` only when named here).
            exc: leave these parameters out.

        Works on functions, coroutine functions, generators, async generators, methods,
        classmethods and staticmethods. The result, exceptions, signature and
        coroutine-ness of the function are unchanged.

        Raises:
            TypeError: a wrong type for ``level``, ``fname``, ``inc`` or ``exc``.
            ValueError: an unknown level, or an ``inc``/``exc`` name that is not a
                parameter.
        """
        if func is not None:
            return make_probe(self, func, level=level, fname=fname, inc=inc, exc=exc)
        parse_level(level, "probe(): level")  # fail at decoration time, not later

        def decorate(f: Any) -> Any:
            return make_probe(self, f, level=level, fname=fname, inc=inc, exc=exc)

        return decorate

    def call(
        self,
        function: str,
        /,
        *,
        level: int | str = DEFAULT,
        params: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ) -> CallScope:
        """
        Record a block of code as one call, like a probed function.

        Use it where a decorator does not fit (a middleware, a loop body)::

            with tracker.call("import batch", params={"rows": n}, info={"source": "csv"}) as call:
                ...
                call.rename("import batch (csv)")

        Works with ``with`` and ``async with``; the block's exception is recorded and
        propagates unchanged.

        ``info`` holds items for the info of the block's log, set when the block starts,
        as :meth:`CallScope.add_info` would (converted, and redacted by name); a block
        that opens its log sets them without copying the info dict, the cheapest way
        to give a log the items known at its start (the ASGI and WSGI middlewares give
        an HTTP request's log its method and client this way).

        Raises:
            TypeError: ``function`` is not a str, ``params`` or ``info`` not a dict, or
                a key of ``info`` not a str.

        .. versionchanged:: 0.2
            ``info``.
        """
        if type(function) is not str:
            raise TypeError(f"call(): function must be a str, not {type(function).__name__}")
        if params is not None and type(params) is not dict:
            raise TypeError(f"call(): params must be a dict, not {type(params).__name__}")
        if info is not None:
            if type(info) is not dict:
                raise TypeError(f"call(): info must be a dict, not {type(info).__name__}")
            # A copy (the caller may change theirs meanwhile), its keys checked now: a
            # block must not fail as it starts.
            info = {activity.check_key(key, "call(): info"): value for key, value in info.items()}
        lvl = level if type(level) is int or level.__class__ is Level else None
        if lvl is None or not 0 <= lvl <= NONE:
            lvl = parse_level(level, "call(): level")
        if self._off:
            return _OFF_SCOPE  # nothing is configured: a shared scope that does nothing
        # NONE never tracks: -1 is below every threshold, so the block only silences.
        return CallScope(self, function, lvl if lvl < NONE else -1, params, info or None)

    @property
    def enabled(self) -> bool:
        """
        True when tracking is on (configured or capturing) and this tracker's
        threshold is below ``NONE``; integrations use it to skip work.
        """
        return not self._off and self._th < NONE

    # -- info and data ------------------------------------------------------------------
    def add_info(self, key: str, value: Any) -> None:
        """
        Same as :func:`asynctrack.add_info`.
        """
        activity.add_info(key, value)

    def add_data(self, key: str, value: Any, depth: int | None = None) -> None:
        """
        Same as :func:`asynctrack.add_data`.
        """
        activity.add_data(key, value, depth)

    async def flush(self, timeout: float | None = None) -> Any:
        """
        Same as ``await asynctrack.flush(timeout)``.
        """
        return await RUNTIME.flush(timeout)

    def flush_sync(self, timeout: float | None = 5.0) -> Any:
        """
        Same as ``asynctrack.flush_sync(timeout)``: blocking, for threads and sync code.

        .. versionadded:: 0.2
        """
        return RUNTIME.flush_sync(timeout)

    # -- hooks --------------------------------------------------------------------------
    def extend_log(self, log: Log) -> None:
        """
        Hook: called with each completed log whose root call this tracker recorded.

        It runs in the thread or task that completed the log, before the log is handed
        to the pipeline: the place to add info (``log.info["host"] = ...``). Exceptions
        are counted and reported once, never raised into the application.
        """

    def filter_call(self, call: Call) -> bool:
        """
        Hook: return False to leave ``call`` out of its log.

        Called when the log completes, on the tracker that recorded the call, before
        :meth:`extend_log` and the processors. A log left with no calls is dropped
        and counted in ``stats().dropped``.
        """
        return True


Tracker.__module__ = "asynctrack"


#: The (function, tracker, level) tuples of renamed calls, shared: a request's root
#: call is renamed after its route, and a tuple made per request would stay with each
#: buffered log until it is written (see docs/performance.md, "The garbage
#: collector"). Bounded: a name can come from the request.
_RENAMED: dict[tuple[str, str, str], tuple[str, str, str]] = {}
_RENAMED_MAX = 4096


def _renamed(meta: tuple[str, str, str]) -> tuple[str, str, str]:
    if len(_RENAMED) < _RENAMED_MAX and len(meta[0]) <= 512:
        _RENAMED[meta] = meta
    return meta


_get_frame = calltree.FRAME.get
_set_frame = calltree.FRAME.set
_SILENT = calltree.SILENT
_leave = calltree.leave


class CallScope:
    """
    A call recorded around a block (see :meth:`Tracker.call`).
    """

    __slots__ = ("_frame", "_function", "_info", "_level", "_params", "_token", "_tracker")

    def __init__(
        self,
        tracker: Tracker,
        function: str,
        level: int,
        params: dict[str, Any] | None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self._tracker = tracker
        self._function = function
        self._level = level
        self._params = params
        self._info = info  # the scope's own dict (see Tracker.call)
        self._frame: Any = None
        self._token: Any = None

    @property
    def tracked(self) -> bool:
        """
        True when this block is being recorded.
        """
        return self._frame is not None and self._frame is not calltree.SILENT

    def rename(self, function: str) -> None:
        """
        Change the recorded function name (e.g. to a route template known only later).
        """
        frame = self._frame
        if frame is not None and frame is not _SILENT:
            slots = frame[FRAME_SLOTS]
            at = frame[FRAME_SLOT] + META
            meta = slots[at]
            named = (function if type(function) is str else str(function), meta[1], meta[2])
            slots[at] = _RENAMED.get(named) or _renamed(named)

    def add_info(self, **values: Any) -> None:
        """
        Set several info keys of this call's log at once (one copy of the info dict).
        """
        frame = self._frame
        if frame is not None and frame is not calltree.SILENT and values:
            activity.add_info_many(frame[FRAME_LOG], values)

    def link_remote(self, traceparent: str | bytes | None, tracestate: Any = None) -> bool:
        """
        Continue the trace of an incoming W3C ``traceparent`` header.

        When this call opened its log, the log takes the header's trace id as its
        ``trace_id`` and the caller's span id as its ``remote_parent``; a valid
        ``tracestate`` is kept in the log's info (``tracestate``) and forwarded by
        :class:`~asynctrack.integrations.httpx.TrackTransport`. A call that joined a
        log changes nothing. Call it right after entering the block.

        Returns:
            False when the header is malformed (it is then ignored), else True.

        .. versionadded:: 0.2
        """
        try:
            return tracecontext.link_remote(self._frame, traceparent, tracestate)
        except Exception:  # pragma: no cover - never raise into the application
            return False

    def add_data(self, key: str, value: Any) -> None:
        """
        Set ``key`` in this call's data (works after the block's inner calls returned).
        """
        frame = self._frame
        if frame is not None and frame is not calltree.SILENT:
            token = calltree.FRAME.set(frame)
            try:
                activity.add_data(key, value)
            finally:
                calltree.FRAME.reset(token)

    def __enter__(self) -> CallScope:
        # calltree.begin and the tracked start inlined: one Python frame per block
        # instead of four (see docs/performance.md, "Instructions per request").
        tracker = self._tracker
        cur = _get_frame()
        level = self._level
        if level < tracker._th:
            if not tracker._off and cur is not _SILENT:
                self._frame = _SILENT  # not tracked: silences its subtree
                self._token = _set_frame(_SILENT)
            return self
        if cur is _SILENT:
            return self  # inside a silenced subtree: passes straight through
        # Tracked: the params are converted only now. The frame it replaces in the
        # context is kept rather than a ContextVar token: one object less held while
        # the block runs (see docs/performance.md, "The garbage collector").
        self._token = cur
        raw = self._params
        meta = (self._function, tracker.name, LEVEL_NAMES.get(level) or level_name(level))
        frame = calltree.enter(tracker, meta, cur, convert_mapping(raw) if raw else NO_PARAMS)
        info = self._info
        if info is not None:
            self._info = None
            try:
                # Opened by this block: its first slot, no caller in the log.
                opened = frame[FRAME_SLOT] == 0 and frame[FRAME_UP] is None
                activity.add_info_many(frame[FRAME_LOG], info, opened)
            except Exception:  # pragma: no cover - keys checked by call(); never raise here
                pass
        self._frame = frame
        _set_frame(frame)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        frame = self._frame
        if frame is None:
            return
        if frame is _SILENT:
            try:
                calltree.FRAME.reset(self._token)
            except ValueError:
                pass
            return
        if _get_frame() is frame or calltree.within(frame):
            # Back to the frame the block replaced; only in the context the block
            # entered, where its frame or a call below it is current (elsewhere the
            # frame is not ours to restore).
            _set_frame(self._token)
        if exc is not None:
            failure.fail(frame, exc)
        _leave(frame)

    async def __aenter__(self) -> CallScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _effective(name: str) -> int:
    probe = name
    while True:
        level = RUNTIME.name_levels.get(probe)
        if level is not None:
            return level
        if "." not in probe:
            break
        probe = probe.rsplit(".", 1)[0]
    level = RUNTIME.name_levels.get("")
    return level if level is not None else RUNTIME.root_level


def _refresh() -> None:
    on = RUNTIME.enabled > 0
    for tracker in _REGISTRY.values():
        if on:
            tracker._th = _effective(tracker.name)
            tracker._off = False
        else:
            tracker._th = OFF
            tracker._off = True


def get_tracker(name: str = "") -> Tracker:
    """
    Return the tracker for ``name``; the same name always gives the same object.

    Names are dotted like logger names (``"shop.db"``); levels set for ``"shop"``
    apply to ``"shop.db"`` unless it has its own.

    .. versionadded:: 0.1
    """
    if not isinstance(name, str):
        raise TypeError(f"get_tracker(): name must be a str, not {type(name).__name__}")
    tracker = _REGISTRY.get(name)
    if tracker is not None:
        return tracker
    with _REGISTRY_LOCK:
        tracker = _REGISTRY.get(name)
        if tracker is None:
            cls = RUNTIME.tracker_class or Tracker
            tracker = cls(name)
            _REGISTRY[name] = tracker
            _refresh()
        return tracker


def set_levels(root: int | None = None, levels: dict[str, int] | None = None) -> None:
    """
    Set the root threshold and replace the per-name thresholds (configuration layer).
    """
    with _REGISTRY_LOCK:
        if root is not None:
            RUNTIME.root_level = root
        if levels is not None:
            RUNTIME.name_levels.clear()
            RUNTIME.name_levels.update(levels)
        _refresh()


def tracking_on() -> bool:
    """
    True while anything turns tracking on: a configured pipeline or a capture().
    """
    return RUNTIME.enabled > 0


def enable(delta: int) -> None:
    """
    Turn tracking on (+1) or off (-1) for one reason (the pipeline, a capture).
    """
    with _REGISTRY_LOCK:
        RUNTIME.enabled = max(0, RUNTIME.enabled + delta)
        _refresh()


def set_tracker_class(cls: type[Tracker] | None) -> None:
    """
    Make every tracker, existing or future, an instance of ``cls``.

    Existing trackers keep their identity (probes hold them): their class is switched
    and ``cls.__init__`` runs again on them.
    """
    with _REGISTRY_LOCK:
        RUNTIME.tracker_class = cls
        target = cls or Tracker
        for name, tracker in _REGISTRY.items():
            if type(tracker) is not target:
                tracker.__class__ = target
                target.__init__(tracker, name)
        _refresh()


def trackers() -> list[Tracker]:
    return list(_REGISTRY.values())


def _after_reset() -> None:
    # RUNTIME.reset(): existing trackers become plain Trackers again and take the
    # default levels (tracking off).
    set_tracker_class(None)


RUNTIME.on_reset.append(_after_reset)


class _OffScope(CallScope):
    """
    The scope returned while tracking is off: every method does nothing.
    """

    __slots__ = ()

    def __enter__(self) -> CallScope:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None


_OFF_SCOPE = _OffScope(Tracker(""), "", int(DEFAULT), None)
