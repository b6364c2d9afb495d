"""
An OTLP/HTTP traces receiver for tests: decodes every request with the official
protobuf classes, and can refuse requests (503, 429 with Retry-After) on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class Receiver:
    """
    A threaded HTTP server on 127.0.0.1 collecting the spans of accepted requests.

    ``refuse`` (a status, or None) makes it answer that status without keeping the
    request; ``retry_after`` adds that header to refusals.
    """

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.refused = 0
        self.refuse: int | None = None
        self.retry_after: str | None = None
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    refuse = receiver.refuse
                    if refuse is not None:
                        receiver.refused += 1
                    else:
                        request = ExportTraceServiceRequest.FromString(body)
                        receiver.requests.append(request)
                        receiver.headers.append(dict(self.headers.items()))
                if refuse is not None:
                    self.send_response(refuse)
                    if receiver.retry_after is not None:
                        self.send_header("Retry-After", receiver.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def spans(self) -> list[Span]:
        with self.lock:
            return [
                span
                for request in self.requests
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def resources(self) -> Iterator[dict[str, Any]]:
        with self.lock:
            for request in self.requests:
                for rs in request.resource_spans:
                    yield {kv.key: value(kv.value) for kv in rs.resource.attributes}


def value(v: AnyValue) -> Any:
    """
    The Python value of an OTLP ``AnyValue``.
    """
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attributes(span: Span | Span.Event) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in span.attributes}
