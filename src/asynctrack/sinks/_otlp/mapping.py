"""
Logs to OTLP spans, with the official ``opentelemetry-proto`` messages.

One log is the spans of one trace (``Log.trace_id``); one call is one span
(``Call.span_id``) whose parent is the span of ``Call.parent``. A log's first call
hangs under the call that spawned it (a continuation: ``parent_id`` + ``parent_seq``)
or under the caller in another service (``remote_parent``). Params, data and info
become attributes under ``asynctrack.param.``, ``asynctrack.data.`` and
``asynctrack.info.``, plus the OpenTelemetry semantic-convention names a web request's
root span has (``http.request.method``, ``url.path``, ``http.route``,
``http.response.status_code``, ``enduser.id``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from asynctrack._core.ids import span_id_of, trace_id_of
from asynctrack._core.records import Call, Log
from asynctrack._core.slices import in_slices

__all__ = [
    "CLIENT_TRACKERS",
    "ExportTraceServiceResponse",
    "Mapper",
    "default_service_name",
    "resource_attributes",
]

#: Trackers whose calls are requests to another system (OTLP span kind CLIENT).
CLIENT_TRACKERS = frozenset({"asynctrack.httpx", "asynctrack.sqlalchemy"})
#: Info keys with a semantic-convention name on the root span of a web request.
_WEB_INFO = {
    "method": "http.request.method",
    "path": "url.path",
    "status": "http.response.status_code",
    "client": "client.address",
}
_INT64 = (-(2**63), 2**63 - 1)
_SERVER = Span.SpanKind.SPAN_KIND_SERVER
_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL


def default_service_name() -> str:
    """
    ``OTEL_SERVICE_NAME``, else the running script's name, else ``unknown_service:python``.
    """
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if script.endswith(".py"):
        script = script[:-3]
    if script and script not in ("-c", "-m", "__main__"):
        return script
    return "unknown_service:python"


def resource_attributes(
    service_name: str | None, resource: Mapping[str, Any] | None
) -> dict[str, Any]:
    """
    The resource's attributes: ``OTEL_RESOURCE_ATTRIBUTES``, then ``resource``, then
    ``service.name`` (the argument, ``OTEL_SERVICE_NAME`` or the script name).
    """
    attrs: dict[str, Any] = {}
    for item in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attrs[key.strip()] = value.strip()
    attrs.update(resource or {})
    if service_name is not None:
        attrs["service.name"] = service_name
    elif "service.name" not in attrs or "OTEL_SERVICE_NAME" in os.environ:
        attrs["service.name"] = default_service_name()
    attrs.setdefault("telemetry.sdk.name", "asynctrack")
    attrs.setdefault("telemetry.sdk.language", "python")
    return attrs


def any_value(value: Any) -> AnyValue:
    """
    Scalars as typed values; containers (and ints beyond 64 bits) as JSON text.
    """
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if value is None:
        return AnyValue(string_value="null")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    return AnyValue(string_value=text)


def key_values(prefix: str, values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=prefix + str(k), value=any_value(v)) for k, v in values.items()]


def stacktrace(call: Call) -> str:
    """
    A Python-style stack trace from ``Call.traceback`` and ``Call.error``.
    """
    lines = ["Traceback (most recent call last):"]
    for entry in call.traceback or ():
        file, line, function = entry[0], entry[1], entry[2]
        lines.append(f'  File "{file}", line {line}, in {function}')
    lines.append(call.error or "")
    return "\n".join(lines)


class Mapper:
    """
    Builds ``ExportTraceServiceRequest`` messages for batches of logs.
    """

    def __init__(self, *, resource: Mapping[str, Any], user_key: str | None, version: str) -> None:
        self.resource = Resource(attributes=key_values("", resource))
        self.scope = InstrumentationScope(name="asynctrack", version=version)
        self.user_key = user_key

    def request(self, logs: Iterable[Log]) -> ExportTraceServiceRequest:
        # In chunks, the GIL released between them past a slice (docs/pipeline.md,
        # "The dispatcher's slices").
        spans: list[Span] = []
        for part in in_slices(self._spans_of, logs if isinstance(logs, Sequence) else [*logs]):
            spans += part
        scope_spans = ScopeSpans(scope=self.scope, spans=spans)
        return ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=self.resource, scope_spans=[scope_spans])]
        )

    def _spans_of(self, logs: Sequence[Log]) -> list[Span]:
        spans: list[Span] = []
        for log in logs:
            spans += self.spans(log)
        return spans

    def spans(self, log: Log) -> list[Span]:
        # Logs written before trace ids existed (read back from old files) get the id
        # a live log would have had.
        trace = bytes.fromhex(log.trace_id or trace_id_of(log.id))
        t0 = log.started_at_ns
        calls = log.calls
        ids = [bytes.fromhex(call.span_id) for call in calls]
        by_seq = {call.seq: i for i, call in enumerate(calls)}
        out: list[Span] = []
        for i, call in enumerate(calls):
            start = t0 + call.offset_us * 1000
            end = start + max(call.duration_us, 0) * 1000
            if call.parent is not None and call.parent in by_seq:
                parent = ids[by_seq[call.parent]]
            elif i:
                # Its parent was left out (a filter_call hook): under the first call,
                # so that the trace stays one tree.
                parent = ids[0]
            else:
                parent = _root_parent(log)
            attrs = key_values("asynctrack.param.", call.params)
            attrs += key_values("asynctrack.data.", call.data)
            attrs.append(
                KeyValue(key="asynctrack.tracker", value=AnyValue(string_value=call.tracker))
            )
            kind = _CLIENT if call.tracker in CLIENT_TRACKERS else _INTERNAL
            trace_state = ""
            if call.parent is None:
                kind = self._root(log, call, attrs, kind)
                state = log.info.get("tracestate")
                if isinstance(state, str):
                    trace_state = state
            span = Span(
                trace_id=trace,
                span_id=ids[i],
                parent_span_id=parent,
                name=call.function,
                kind=kind,
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes=attrs,
                trace_state=trace_state,
            )
            if call.status == "error":
                span.status.CopyFrom(
                    Status(code=Status.StatusCode.STATUS_CODE_ERROR, message=call.error or "")
                )
                span.events.append(_exception_event(call, end))
            elif call.status != "ok":  # cancelled, or still running in an incomplete log
                span.attributes.append(
                    KeyValue(key="asynctrack.status", value=AnyValue(string_value=call.status))
                )
            out.append(span)
        return out

    def _root(self, log: Log, call: Call, attrs: list[KeyValue], kind: Any) -> Any:
        """
        Add the log's attributes to its root span; return the root span's kind.
        """
        info = log.info
        attrs += key_values(
            "asynctrack.info.", {k: v for k, v in info.items() if k != "tracestate"}
        )
        attrs.append(KeyValue(key="asynctrack.log_id", value=AnyValue(string_value=log.id)))
        if log.parent_id:
            attrs.append(
                KeyValue(key="asynctrack.parent_log_id", value=AnyValue(string_value=log.parent_id))
            )
        if not log.complete:
            attrs.append(KeyValue(key="asynctrack.incomplete", value=AnyValue(bool_value=True)))
        if self.user_key is not None and info.get(self.user_key) is not None:
            attrs.append(KeyValue(key="enduser.id", value=any_value(str(info[self.user_key]))))
        method = info.get("method")
        if isinstance(method, str) and log.parent_id is None:
            for key, name in _WEB_INFO.items():
                if key in info:
                    attrs.append(KeyValue(key=name, value=any_value(info[key])))
            route = _route(method, call.function)
            if route is not None:
                attrs.append(KeyValue(key="http.route", value=AnyValue(string_value=route)))
            return _SERVER
        return kind


def _root_parent(log: Log) -> bytes:
    if log.parent_id and log.parent_seq is not None:
        return bytes.fromhex(span_id_of(log.parent_id, log.parent_seq))
    if log.remote_parent:
        return bytes.fromhex(log.remote_parent)
    return b""


def _route(method: str, function: str) -> str | None:
    """
    The route template of a web request's root call named ``"<METHOD> <template>"``.
    """
    prefix = method + " "
    if function.startswith(prefix):
        route = function[len(prefix) :]
        if route.startswith("/"):
            return route
    return None


def _exception_event(call: Call, when: int) -> Span.Event:
    error = call.error or ""
    kind, sep, message = error.partition(": ")
    if not sep:
        kind, message = error, ""
    attrs = [
        KeyValue(key="exception.type", value=AnyValue(string_value=kind)),
        KeyValue(key="exception.message", value=AnyValue(string_value=message)),
    ]
    if call.traceback:
        attrs.append(
            KeyValue(key="exception.stacktrace", value=AnyValue(string_value=stacktrace(call)))
        )
    return Span.Event(name="exception", time_unix_nano=when, attributes=attrs)
