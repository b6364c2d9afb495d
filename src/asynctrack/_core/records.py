"""
The records handed to sinks: :class:`Log` and :class:`Call`.

A live log is built by the probe with as little work as possible per call: each
call appends its fields to the log's one flat ``_raw`` list (``_core/layout.py``).
A completed log is then two objects for the garbage collector to visit (the log and
its list), whatever its number of calls: buffered logs are what full collections
walk over (see docs/design.md, "Traps"). :class:`Call` objects, ``seq`` numbers and
microsecond offsets are computed only when someone asks (a sink, a hook, a test),
which is almost always in the dispatcher thread, off the application's hot path.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import Any

from asynctrack._core.ids import format_id, span_id_of, trace_id_of
from asynctrack._core.jsonform import (
    hex_or_none,
    iso,
    parse_time,
    parse_traceback,
    raw_dicts,
    traceback_json,
)
from asynctrack._core.layout import (
    DATA,
    DEPTH,
    END,
    ERROR,
    META,
    PARAMS,
    PARENT,
    REC,
    START,
    STATUS,
    TRACEBACK,
    records,
    seq_map,
    start_of,
)

__all__ = ["Call", "Log", "fill"]

_UTC = _dt.UTC


class Call:
    """
    One probed call inside a :class:`Log`.

    Attributes:
        seq: start order within the log (0 is the root call).
        parent: ``seq`` of the call this one was started from (exact under tasks,
            threads and generators), ``None`` for the log's first call.
        depth: 0 for the root call, parent's depth + 1 below.
        function: ``fname`` given to the probe, else ``module.qualname``.
        tracker: name of the tracker whose probe recorded the call.
        level: level name (``"DEFAULT"``; custom levels as their number).
        params: the bound parameters, converted to JSON-safe values.
        data: values added with ``add_data``.
        offset_us: start, in microseconds after the log's start.
        duration_us: duration in microseconds.
        status: ``"ok"``, ``"error"``, ``"cancelled"``, or ``"running"`` in a log
            written incomplete at shutdown.
        error: ``"TypeName: message"`` when the call raised (a ``raise … from``
            cause appended as ``"; caused by TypeName: message"``), else ``None``.
        traceback: ``[(file, line, function), …]`` from this call down to where the
            exception was raised, innermost last, on the innermost probed call the
            exception passed through only; else ``None``.
        span_id: 16 hex characters derived from the log id and ``seq`` (read-only).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        ``parent``, ``traceback`` and ``span_id``.
    """

    __slots__ = (
        "_log_id",
        "data",
        "depth",
        "duration_us",
        "error",
        "function",
        "level",
        "offset_us",
        "params",
        "parent",
        "seq",
        "status",
        "traceback",
        "tracker",
    )

    def __init__(
        self,
        *,
        seq: int,
        depth: int,
        function: str,
        tracker: str,
        level: str = "DEFAULT",
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        offset_us: int = 0,
        duration_us: int = 0,
        status: str = "ok",
        error: str | None = None,
        parent: int | None = None,
        traceback: list[tuple[str, int, str]] | None = None,
    ) -> None:
        self.seq = seq
        self.parent = parent
        self.depth = depth
        self.function = function
        self.tracker = tracker
        self.level = level
        self.params = params if params is not None else {}
        self.data = data if data is not None else {}
        self.offset_us = offset_us
        self.duration_us = duration_us
        self.status = status
        self.error = error
        self.traceback = traceback
        self._log_id = ""

    @property
    def span_id(self) -> str:
        """
        16 hex characters naming this call everywhere (derived from log id and ``seq``).

        A call not (yet) in a log derives it from an empty log id.
        """
        return span_id_of(self._log_id, self.seq)

    def to_dict(self) -> dict[str, Any]:
        """
        Return the JSON form of the call (keys in the documented order).
        """
        return {
            "seq": self.seq,
            "parent": self.parent,
            "depth": self.depth,
            "function": self.function,
            "tracker": self.tracker,
            "level": self.level,
            "params": self.params,
            "data": self.data,
            "offset_us": self.offset_us,
            "duration_us": self.duration_us,
            "status": self.status,
            "error": self.error,
            "traceback": traceback_json(self.traceback),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Call:
        """
        Build a call from its JSON form (records of 0.1, without ``parent`` and
        ``traceback``, read with both ``None``).

        Raises:
            ValueError: a required key is missing or has the wrong type.
        """
        try:
            parent = d.get("parent")
            return cls(
                seq=int(d["seq"]),
                parent=None if parent is None else int(parent),
                depth=int(d["depth"]),
                function=str(d["function"]),
                tracker=str(d.get("tracker", "")),
                level=str(d.get("level", "DEFAULT")),
                params=dict(d.get("params") or {}),
                data=dict(d.get("data") or {}),
                offset_us=int(d.get("offset_us", 0)),
                duration_us=int(d.get("duration_us", 0)),
                status=str(d.get("status", "ok")),
                error=None if d.get("error") is None else str(d["error"]),
                traceback=parse_traceback(d.get("traceback")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed call record: {exc!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Call):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Call(seq={self.seq}, parent={self.parent}, depth={self.depth}, "
            f"function={self.function!r}, status={self.status!r}, "
            f"duration_us={self.duration_us})"
        )


class Log:
    """
    All tracked calls made on behalf of one top-level call (one request, one job).

    Attributes:
        id: 32 hex characters, sortable by creation time.
        trace_id: 32 hex characters (W3C trace context) shared by a request's log and
            all its continuations; ``None`` in records written by 0.1.
        parent_id: id of the log this one continues (a task that started after its
            parent's log was complete), else ``None``.
        parent_seq: ``seq`` of the call in the parent log from which the
            continuation was spawned, else ``None``.
        remote_parent: 16-hex span id of the caller in another service, else ``None``.
        started_at: aware UTC ``datetime`` of the first call's start.
        duration_us: from the first call's start to the last call's end.
        complete: False for a log written at shutdown while calls were still running.
        info: values shared by the whole log (``add_info``).
        calls: the calls, ordered by ``seq``.
        dropped_calls: calls not recorded because the log reached ``max_calls_per_log``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        ``trace_id``, ``parent_seq`` and ``remote_parent``.
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_calls",
        "_claim",
        "_done",
        "_id",
        "_number",
        "_raw",
        "_t0",
        "_t1",
        "_trace",
        "_tracker",
        "_wall_ns",
        "complete",
        "dropped_calls",
        "info",
        "parent_id",
        "parent_seq",
        "remote_parent",
    )

    _id: str | None
    _number: int
    _wall_ns: int
    _t0: int
    _t1: int
    _raw: list[Any] | None
    _calls: list[Call] | None
    _active: bytearray  # running calls, one byte each (see _core/calltree.py)
    _claim: bool  # the completion token while present (see _core/calltree.py)
    _done: bool
    _tracker: Any
    _trace: str | None
    parent_id: str | None
    parent_seq: int | None
    remote_parent: str | None
    info: dict[str, Any]
    complete: bool
    dropped_calls: int

    def __init__(
        self,
        *,
        id: str,
        trace_id: str | None = None,
        parent_id: str | None = None,
        parent_seq: int | None = None,
        remote_parent: str | None = None,
        started_at: _dt.datetime | str,
        duration_us: int = 0,
        complete: bool = True,
        info: dict[str, Any] | None = None,
        calls: list[Call] | None = None,
        dropped_calls: int = 0,
    ) -> None:
        calls = calls if calls is not None else []
        for call in calls:
            call._log_id = id
        fill(
            self,
            id,
            0,
            parse_time(started_at, "started_at"),
            0,
            duration_us * 1000,
            trace_id,
            parent_id,
            parent_seq,
            remote_parent,
            info if info is not None else {},
            None,
            calls,
            complete,
            dropped_calls,
            None,
            False,
        )

    # -- public attributes -------------------------------------------------------
    @property
    def id(self) -> str:
        ident = self._id
        if ident is None:
            ident = self._id = format_id(self._wall_ns, self._number)
        return ident

    @property
    def trace_id(self) -> str | None:
        trace = self._trace
        if trace is None and self._number:
            # A live request's log: derived from its id when first asked (never on the
            # probe's path); continuations copy their parent's.
            trace = self._trace = trace_id_of(self.id)
        return trace

    @trace_id.setter
    def trace_id(self, value: str | None) -> None:
        self._trace = value

    @property
    def started_at(self) -> _dt.datetime:
        seconds, ns = divmod(self._wall_ns, 1_000_000_000)
        return _dt.datetime.fromtimestamp(seconds, _UTC).replace(microsecond=ns // 1000)

    @property
    def started_at_ns(self) -> int:
        """
        Start as integer nanoseconds since the epoch (UTC), microsecond precision.
        """
        return self._wall_ns - self._wall_ns % 1000

    @property
    def duration_us(self) -> int:
        raw = self._raw
        if raw is not None and self._t1 == self._t0 and raw:
            # A live log: the last call's end is found once, off the hot path.
            self._t1 = max(self._t0, max(raw[END::REC]))
        return (self._t1 - self._t0) // 1000

    @property
    def calls(self) -> list[Call]:
        calls = self._calls
        if calls is None:
            calls = self._calls = list(self._materialize(0))
        return calls

    @calls.setter
    def calls(self, calls: list[Call]) -> None:
        self.trace_id  # noqa: B018 - derived from the live records: keep it
        self._calls = list(calls)
        ident = self.id
        for call in self._calls:
            call._log_id = ident
        self._raw = None

    def _materialize(self, now: int) -> Iterator[Call]:
        raw: list[Any] = self._raw or []
        t0 = self._t0
        ident = self.id
        ordered: Any = records(raw)
        seqs = seq_map(raw)
        if seqs is not None:
            ordered = sorted(ordered, key=start_of)
        for seq, rec in enumerate(ordered):
            function, tracker, level = rec[META]
            start = rec[START]
            end = rec[END]
            status = rec[STATUS]
            if end == 0:  # still running: only in a snapshot taken at shutdown
                end = now or start
                status = "running"
            data = rec[DATA]
            parent = rec[PARENT]
            if parent is not None:
                parent = parent // REC if seqs is None else seqs[parent]
            call = Call(
                seq=seq,
                parent=parent,
                depth=rec[DEPTH],
                function=function,
                tracker=tracker,
                level=level,
                params=rec[PARAMS] or {},  # never the shared NO_PARAMS
                data=dict(data) if data else {},
                offset_us=(start - t0) // 1000,
                duration_us=(end - start) // 1000,
                status=status,
                error=rec[ERROR],
                traceback=rec[TRACEBACK],
            )
            call._log_id = ident
            yield call

    def _snapshot_incomplete(self, now: int) -> Log:
        """
        Return a copy of this live log marked incomplete, calls still running included.
        """
        return fill(
            Log.__new__(Log),
            self.id,
            self._number,
            self._wall_ns,
            self._t0,
            max(self._t1, now, *(self._raw or ())[END::REC]),
            self.trace_id,
            self.parent_id,
            self.parent_seq,
            self.remote_parent,
            dict(self.info),
            None,
            list(Log._materialize(self, now)),
            False,
            self.dropped_calls,
            self._tracker,
            False,
        )

    # -- conversion ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """
        Return the JSON form of the log, as written by ``FileSink``.
        """
        calls_list = self._calls
        if calls_list is None and self._raw is not None:
            # Straight from the live records: no Call objects (the dispatcher's path).
            calls: list[dict[str, Any]] = raw_dicts(self._raw, self._t0)
        else:
            calls = [c.to_dict() for c in self.calls]
        d: dict[str, Any] = {
            "id": self.id,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "parent_seq": self.parent_seq,
            "remote_parent": self.remote_parent,
            "started_at": iso(self._wall_ns),
            "duration_us": self.duration_us,
            "complete": self.complete,
            "info": self.info,
            "calls": calls,
        }
        if self.dropped_calls:
            d["dropped_calls"] = self.dropped_calls
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Log:
        """
        Build a log from its JSON form (the inverse of :meth:`to_dict`).

        Raises:
            ValueError: the mapping is not a log record.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a log record must be a JSON object, not {type(d).__name__}")
        try:
            ident = d["id"]
            if not isinstance(ident, str):
                raise ValueError("id must be a string")
            calls = d.get("calls") or []
            if not isinstance(calls, list):
                raise ValueError("calls must be a list")
            info = d.get("info") or {}
            if not isinstance(info, dict):
                raise ValueError("info must be an object")
            parent = d.get("parent_id")
            parent_seq = d.get("parent_seq")
            return cls(
                id=ident,
                trace_id=hex_or_none(d.get("trace_id"), "trace_id"),
                parent_id=None if parent is None else str(parent),
                parent_seq=None if parent_seq is None else int(parent_seq),
                remote_parent=hex_or_none(d.get("remote_parent"), "remote_parent"),
                started_at=d["started_at"],
                duration_us=int(d.get("duration_us", 0)),
                complete=bool(d.get("complete", True)),
                info=info,
                calls=[Call.from_dict(c) for c in calls],
                dropped_calls=int(d.get("dropped_calls", 0)),
            )
        except KeyError as exc:
            raise ValueError(f"malformed log record: missing {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed log record: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Log):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        root = self.calls[0].function if self.calls else None
        return (
            f"Log(id={self.id!r}, root={root!r}, calls={len(self.calls)}, "
            f"duration_us={self.duration_us}, complete={self.complete})"
        )


def fill(
    log: Log,
    ident: str | None,
    number: int,
    wall_ns: int,
    t0: int,
    t1: int,
    trace: str | None,
    parent_id: str | None,
    parent_seq: int | None,
    remote_parent: str | None,
    info: dict[str, Any],
    raw: list[Any] | None,
    calls: list[Call] | None,
    complete: bool,
    dropped_calls: int,
    tracker: Any,
    live: bool,
) -> Log:
    """
    Set every slot of ``log``, a new object, and return it: the one place that does.

    Used by ``Log.__init__`` (a finished log), by ``calltree.open_root`` (a *live* log,
    whose calls append to ``raw``: it counts its first call as running) and by the
    incomplete snapshot taken at shutdown. ``ident`` None: formatted when first read;
    ``trace`` None: derived from the id when first read (a request's log).
    """
    log._id = ident
    log._number = number
    log._wall_ns = wall_ns
    log._t0 = t0
    log._t1 = t1
    log._trace = trace
    log.parent_id = parent_id
    log.parent_seq = parent_seq
    log.remote_parent = remote_parent
    log.info = info
    log._raw = raw
    log._calls = calls
    log.complete = complete
    log.dropped_calls = dropped_calls
    log._tracker = tracker
    if live:
        log._active = bytearray(1)
        log._claim = True
        log._done = False
    else:
        log._active = bytearray()  # and no ``_claim``: nobody can complete it
        log._done = True
    return log


Call.__module__ = "asynctrack"
Log.__module__ = "asynctrack"
