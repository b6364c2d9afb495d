"""
W3C trace context: the current call's span, and ``traceparent`` headers.

``current_span()`` names the innermost tracked call as ``(trace_id, span_id,
tracestate)``, which is what an outgoing request's ``traceparent`` carries;
``parse_traceparent`` reads an incoming one (any malformed value is ``None``, never an
error), and ``link_remote`` makes a log that a request opened continue the caller's
trace.
"""

from __future__ import annotations

from typing import Any

from asynctrack._core import activity, calltree
from asynctrack._core.ids import span_id_of
from asynctrack._core.layout import FRAME_LOG, FRAME_SLOT, FRAME_SLOTS, FRAME_UP, REC, seq_map
from asynctrack._core.records import Log

__all__ = ["SpanContext", "current_span", "link_remote", "parse_traceparent"]

_HEX = frozenset("0123456789abcdef")
#: The longest ``tracestate`` kept (W3C: 32 members of at most 256 characters, but
#: receivers may cut it at 512; anything longer is dropped, not truncated).
MAX_TRACESTATE = 512


class SpanContext:
    """
    The innermost tracked call in W3C terms (see :func:`asynctrack.current_span`).

    Its ids are worked out when first read, so asking whether there is a current span
    costs next to nothing.

    Attributes:
        trace_id: the log's 32-hex trace id.
        span_id: the call's 16-hex span id (``Call.span_id``).
        tracestate: the ``tracestate`` the log's request arrived with, else None.

    .. versionadded:: 0.2
    """

    __slots__ = ("_frame", "_span", "_trace")

    def __init__(self, frame: tuple[Any, ...]) -> None:
        self._frame = frame
        self._trace: str | None = None
        self._span: str | None = None

    @property
    def trace_id(self) -> str:
        trace = self._trace
        if trace is None:
            trace = self._trace = self._frame[FRAME_LOG].trace_id or ""
        return trace

    @property
    def span_id(self) -> str:
        span = self._span
        if span is None:
            span = self._span = _span_of(self._frame)
        return span

    @property
    def tracestate(self) -> str | None:
        state = self._frame[FRAME_LOG].info.get("tracestate")
        return state if isinstance(state, str) else None

    @property
    def traceparent(self) -> str:
        """
        The ``traceparent`` header naming this call: ``00-<trace_id>-<span_id>-01``.
        """
        return f"00-{self.trace_id}-{self.span_id}-01"

    def __repr__(self) -> str:
        return f"SpanContext(trace_id={self.trace_id!r}, span_id={self.span_id!r})"


SpanContext.__module__ = "asynctrack"


def current_span() -> SpanContext | None:
    """
    Return the innermost tracked call's span, or None outside any tracked call.

    Its ``traceparent`` is what an outgoing request sent from here carries, and its
    ``trace_id`` and ``span_id`` what to print beside a message to find the call again;
    ``tracestate`` is the one the log's request arrived with, if any. Integrations use
    it to do nothing outside tracked calls.

    .. versionadded:: 0.2
    """
    frame = calltree.FRAME.get()
    if frame is None or frame is calltree.SILENT:
        return None
    return SpanContext(frame)


def _span_of(frame: tuple[Any, ...]) -> str:
    log, slots, i = frame[FRAME_LOG], frame[FRAME_SLOTS], frame[FRAME_SLOT]
    raw = log._raw
    if slots is not raw or raw is None:
        # A call the log had no room for has no seq: it is named by its nearest
        # recorded ancestor (the span its work will be attributed to).
        parent = frame[FRAME_UP]
        while parent is not None and parent[FRAME_SLOTS] is not raw:
            parent = parent[FRAME_UP]
        if parent is None:
            return span_id_of(log.id, 0)
        slots, i = parent[FRAME_SLOTS], parent[FRAME_SLOT]
    seqs = seq_map(slots)
    return span_id_of(log.id, i // REC if seqs is None else seqs[i])


def parse_traceparent(value: str | bytes | None) -> tuple[str, str] | None:
    """
    Return ``(trace_id, parent span id)`` of a ``traceparent`` header, or None when
    malformed (W3C Trace Context level 1: version ``00`` exactly, later versions by
    their first four fields; all-zero ids and version ``ff`` are invalid).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    value = value.strip()
    if len(value) < 55:
        return None
    version, trace, span, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    if not _hex(version) or version == "ff" or not _hex(flags):
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    if not _hex(trace) or not _hex(span) or trace == "0" * 32 or span == "0" * 16:
        return None
    return trace, span


def _hex(text: str) -> bool:
    return bool(text) and all(c in _HEX for c in text)


def link_remote(frame: Any, traceparent: str | bytes | None, tracestate: Any = None) -> bool:
    """
    Make the log of ``frame`` continue the trace of ``traceparent``.

    Only a log's first call takes a remote parent (a call that joined a log or opened
    a continuation already has its parent here). Returns False when the header is
    malformed (nothing changes), True otherwise.
    """
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return False
    if frame is None or frame is calltree.SILENT:
        return True
    log: Log = frame[FRAME_LOG]
    if frame[FRAME_SLOT] != 0 or frame[FRAME_SLOTS] is not log._raw or log.parent_id is not None:
        return True
    log.trace_id, log.remote_parent = parsed
    if isinstance(tracestate, bytes):
        tracestate = tracestate.decode("latin-1")
    if isinstance(tracestate, str) and tracestate.strip() and len(tracestate) <= MAX_TRACESTATE:
        activity.add_info_many(log, {"tracestate": tracestate.strip()})
    return True
