"""
``OTLPSink``: export logs as spans to an OpenTelemetry Collector (or any OTLP/HTTP
receiver: Jaeger, Tempo, Honeycomb…), protobuf over HTTP.

It is a sink like the others: a failed request (connection error, timeout, 429 or
5xx, or any other non-2xx answer) raises, so the dispatcher retries the batch with
backoff, spills it to disk when retries run out and replays it once the receiver is
back. A ``Retry-After`` answer is honoured: until then each write fails at once
without sending, so neither retries nor the replay hammer a receiver that asked for
time. Span ids are derived from log ids, so a batch sent twice (a retry after a lost
answer) carries the same spans.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from asynctrack._core.records import Log
from asynctrack._core.selfwarn import report
from asynctrack._exceptions import ConfigError
from asynctrack.sinks._base import Sink

if TYPE_CHECKING:
    import httpx

__all__ = ["OTLPExportError", "OTLPSink"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: The longest ``Retry-After`` honoured; a receiver asking for more is retried then.
MAX_RETRY_AFTER = 300.0


class OTLPExportError(Exception):
    """
    Raised by ``OTLPSink.write`` when the receiver refused a batch (the batch is retried).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OTLPSink(Sink):
    """
    Send logs as OTLP spans (protobuf over HTTP) to an OpenTelemetry receiver.

    Each log is the spans of its trace; each call one span (see the mapping table in
    the documentation, "Sending traces to OpenTelemetry"). Needs
    ``pip install asynctrack[otlp]``.

    Args:
        endpoint: the receiver's traces URL (the Collector's OTLP/HTTP default is
            ``http://localhost:4318/v1/traces``).
        headers: extra request headers (an API key, a tenant).
        service_name: the resource's ``service.name``; default ``OTEL_SERVICE_NAME``,
            then the running script's name.
        resource: more resource attributes (``{"deployment.environment": "prod"}``);
            ``OTEL_RESOURCE_ATTRIBUTES`` is read too.
        timeout: seconds per request.
        user_key: the info key whose value is the root span's ``enduser.id``
            (``None``: none).
        name: the sink's name (its spill file and counters); default ``otlp-<host>``.

    Raises:
        ConfigError: a bad endpoint or option.

    Example::

        asynctrack.configure(sinks=[asynctrack.OTLPSink("http://collector:4318/v1/traces")])

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        endpoint: str = "http://localhost:4318/v1/traces",
        *,
        headers: Mapping[str, str] | None = None,
        service_name: str | None = None,
        resource: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        user_key: str | None = "user",
        name: str | None = None,
    ) -> None:
        try:
            # Loaded here, in the application's thread (never lazily in the
            # dispatcher's), and only when an OTLPSink is made: `import asynctrack`
            # loads neither httpx nor protobuf.
            import httpx

            from asynctrack.sinks._otlp import mapping
        except ImportError as exc:
            raise ConfigError(
                f"OTLPSink needs the [otlp] extra: pip install 'asynctrack[otlp]' ({exc})"
            ) from None
        self._httpx = httpx
        self._response_type = mapping.ExportTraceServiceResponse
        if not isinstance(endpoint, str):
            raise ConfigError(f"OTLPSink(endpoint=...) must be a str, got {endpoint!r}")
        try:
            url = httpx.URL(endpoint)
        except Exception as exc:
            raise ConfigError(f"OTLPSink(endpoint=...): {endpoint!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"OTLPSink(endpoint=...) must be an http(s) URL with a host, got {endpoint!r}"
            )
        if headers is not None and (
            not isinstance(headers, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise ConfigError("OTLPSink(headers=...) must be a mapping of str to str")
        if service_name is not None and (not isinstance(service_name, str) or not service_name):
            raise ConfigError(
                f"OTLPSink(service_name=...) must be a non-empty str, got {service_name!r}"
            )
        if resource is not None and not (
            isinstance(resource, Mapping) and all(isinstance(k, str) for k in resource)
        ):
            raise ConfigError("OTLPSink(resource=...) must be a mapping with str keys")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"OTLPSink(timeout=...) must be a number > 0, got {timeout!r}")
        if user_key is not None and not isinstance(user_key, str):
            raise ConfigError(f"OTLPSink(user_key=...) must be a str or None, got {user_key!r}")
        if name is not None and (not isinstance(name, str) or not _NAME_RE.match(name)):
            raise ConfigError(
                "OTLPSink(name=...) must be 1-100 characters among letters, digits, '_.-', "
                f"got {name!r}"
            )
        self._endpoint = str(url)
        self._headers = {
            **(headers or {}),
            "content-type": "application/x-protobuf",
        }
        self._timeout = float(timeout)
        self._name = name or f"otlp-{url.host}" + (f"-{url.port}" if url.port else "")
        self._mapper = mapping.Mapper(
            resource=mapping.resource_attributes(service_name, resource),
            user_key=user_key,
            version=_version(),
        )
        self._client: httpx.AsyncClient | None = None
        self._not_before = 0.0
        #: Spans the receiver reported as rejected (OTLP partial success).
        self.rejected_spans = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def endpoint(self) -> str:
        """
        The receiver's URL.
        """
        return self._endpoint

    async def open(self) -> None:
        if self._client is None:
            self._client = self._httpx.AsyncClient(timeout=self._timeout, headers=self._headers)

    async def write(self, logs: Sequence[Log]) -> None:
        if not logs:
            return
        wait = self._not_before - time.monotonic()
        if wait > 0:
            raise OTLPExportError(
                f"OTLP receiver asked to retry after {wait:.1f} s (Retry-After)", status=None
            )
        await self.open()
        assert self._client is not None
        body = self._mapper.request(logs).SerializeToString()
        response = await self._client.post(self._endpoint, content=body)
        status = response.status_code
        if 200 <= status < 300:
            self._partial_success(response.content)
            return
        retry_after = _retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            self._not_before = time.monotonic() + retry_after
        raise OTLPExportError(
            f"OTLP receiver answered {status} {response.reason_phrase}"
            + (f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""),
            status=status,
        )

    def _partial_success(self, content: bytes) -> None:
        if not content:
            return
        try:
            answer = self._response_type.FromString(content)
        except Exception:
            return  # a receiver answering something else than protobuf: it took the spans
        rejected = answer.partial_success.rejected_spans
        if rejected:
            # Permanent by the protocol's definition: retrying would not help.
            self.rejected_spans += rejected
            report(
                f"otlp-rejected:{self._name}",
                f"asynctrack: OTLP receiver rejected {rejected} spans: "
                f"{answer.partial_success.error_message}",
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def after_fork(self) -> None:
        # The parent's connections belong to the parent's loop: forget them.
        self._client = None

    def __repr__(self) -> str:
        return f"<OTLPSink {self._name!r} {self._endpoint}>"


def _retry_after(value: str | None) -> float | None:
    """
    Seconds from a ``Retry-After`` header (delay seconds or an HTTP date), capped.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asynctrack")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


OTLPSink.__module__ = "asynctrack"
