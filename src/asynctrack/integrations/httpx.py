"""
``TrackTransport``: outgoing httpx requests as calls, carrying W3C ``traceparent``.

Wrap the transport of an ``httpx.Client`` or ``httpx.AsyncClient``: a request sent
inside a tracked call is recorded as a call beneath it, named ``http.<METHOD>``, with
its URL (without query string, fragment and user-info) as a param, the response status
in its data, its duration (until the response headers arrived) and its error, and it
carries ``traceparent: 00-<trace_id>-<span_id of that call>-01`` (plus the
``tracestate`` the log's own request arrived with), so a service behind
``TrackMiddleware`` records its log in the same trace, under that call. Outside a
tracked call a request passes through untouched.

It uses only asynctrack's public API.

.. versionadded:: 0.2
"""

from __future__ import annotations

from types import TracebackType

import httpx

import asynctrack
from asynctrack import DEFAULT, CallScope, Tracker

__all__ = ["TrackTransport"]


class TrackTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """
    An httpx transport (sync and async) recording requests and propagating trace context.

    Args:
        transport: the transport to wrap; by default httpx's own
            (``HTTPTransport`` for a ``Client``, ``AsyncHTTPTransport`` for an
            ``AsyncClient``, made on first use).
        tracker: the tracker (or its name) recording the requests.
        level: the level of the request calls (``DEFAULT``).
        propagate: add ``traceparent``/``tracestate`` headers (a request that already
            has a ``traceparent`` keeps its own).

    Raises:
        TypeError: ``transport`` is not an httpx transport, ``tracker`` is neither a str
            nor a ``Tracker``, or ``propagate`` is not a bool.
        ValueError: ``level`` is unknown.

    Example::

        client = httpx.AsyncClient(transport=TrackTransport())

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        *,
        tracker: str | Tracker = "asynctrack.httpx",
        level: int | str = DEFAULT,
        propagate: bool = True,
    ) -> None:
        if transport is not None and not isinstance(
            transport, (httpx.BaseTransport, httpx.AsyncBaseTransport)
        ):
            raise TypeError(
                f"TrackTransport(): transport must be an httpx transport, not {transport!r}"
            )
        if isinstance(tracker, str):
            tracker = asynctrack.get_tracker(tracker)
        elif not isinstance(tracker, Tracker):
            raise TypeError(
                "TrackTransport(): tracker must be a tracker name (str) or an "
                f"asynctrack.Tracker, not {type(tracker).__name__}"
            )
        if not isinstance(propagate, bool):
            raise TypeError(
                f"TrackTransport(): propagate must be a bool, not {type(propagate).__name__}"
            )
        try:
            tracker.call("http", level=level)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"TrackTransport(): level: {exc}") from None
        self._sync = transport if isinstance(transport, httpx.BaseTransport) else None
        self._async = transport if isinstance(transport, httpx.AsyncBaseTransport) else None
        self._given = transport is not None
        self.tracker = tracker
        self.level = level
        self.propagate = propagate

    # -- sync ---------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """
        Send ``request`` through the wrapped transport, recorded when inside a call.
        """
        inner = self._sync
        if inner is None:
            if self._given:
                raise TypeError("TrackTransport: the wrapped transport is async-only")
            inner = self._sync = httpx.HTTPTransport()
        if asynctrack.current_span() is None:
            return inner.handle_request(request)
        scope = self._start(request)
        try:
            response = inner.handle_request(request)
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._end(scope, response)
        return response

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()

    # -- async --------------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """
        Send ``request`` through the wrapped async transport, recorded when inside a call.
        """
        inner = self._async
        if inner is None:
            if self._given:
                raise TypeError("TrackTransport: the wrapped transport is sync-only")
            inner = self._async = httpx.AsyncHTTPTransport()
        if asynctrack.current_span() is None:
            return await inner.handle_async_request(request)
        scope = self._start(request)
        try:
            response = await inner.handle_async_request(request)
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._end(scope, response)
        return response

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()

    # -- shared -------------------------------------------------------------------------
    def _start(self, request: httpx.Request) -> CallScope:
        url = request.url.copy_with(query=None, fragment=None, userinfo=b"")
        scope = self.tracker.call(
            f"http.{request.method}",
            level=self.level,
            params={"method": request.method, "url": str(url)},
        )
        scope.__enter__()
        if self.propagate and scope.tracked and "traceparent" not in request.headers:
            span = asynctrack.current_span()
            if span is not None and span.trace_id:
                request.headers["traceparent"] = span.traceparent
                state = span.tracestate
                if state and "tracestate" not in request.headers:
                    request.headers["tracestate"] = state
        return scope

    def _end(self, scope: CallScope, response: httpx.Response) -> None:
        try:
            scope.add_data("status", response.status_code)
        finally:
            scope.__exit__(None, None, None)

    def __enter__(self) -> TrackTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> TrackTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()


TrackTransport.__module__ = "asynctrack.integrations.httpx"
