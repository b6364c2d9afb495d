"""
TrackMiddleware for WSGI: one log per HTTP request (Flask, Django, Pyramid, Falcon…).

The WSGI twin of :class:`asynctrack.integrations.asgi.TrackMiddleware`, with the same
info and semantics. A WSGI response is an iterable the server consumes after the
application returned, so the request's call stays open until the server closes that
iterable: a streaming body is tracked until its end.

Each request runs in a context of its own (``contextvars.Context.run`` around the
application call, every ``next()`` of the body and its ``close()``): the call the
middleware opens is never left behind in the server thread's context, even when a
server forgets to close a response.

It uses only asynctrack's public API.

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import asynctrack
from asynctrack import DEFAULT, NONE, CallScope, Tracker
from asynctrack.integrations._paths import (
    PENDING,
    UNMATCHED,
    method_name,
    parse_query,
    redact_values,
)
from asynctrack.integrations._web import WebMiddleware

__all__ = ["TrackMiddleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
InfoHook = Callable[[Environ], Mapping[str, Any] | None]
RouteHook = Callable[[Environ], str | None]


class TrackMiddleware(WebMiddleware):
    """
    Record each WSGI request as one log.

    The root call is named after the method and the route template when the framework
    exposes it (Flask/Werkzeug's ``url_rule``, Pyramid's matched route, or the
    ``route`` hook), e.g. ``"GET /items/<int:item_id>"``; a request that matched no
    route is ``"GET <unmatched>"``, so scanners cannot create unbounded names. Its
    params hold the parsed query string (so names like ``token`` are redacted), never
    the body. The log's info gets ``method``, ``path`` (``SCRIPT_NAME`` +
    ``PATH_INFO``, with the values of path parameters whose names are on the
    redaction list replaced by ``[REDACTED]``), ``status`` (500 when the application
    raised before responding) and ``client`` (``REMOTE_ADDR``), plus whatever
    ``info(environ)`` returns.

    An exception from the application, or from its body while the server reads it,
    marks the root call ``status="error"`` and propagates unchanged. A body closed
    before it was read to its end (the client went away) is recorded as data
    ``disconnected: true``. A W3C ``traceparent`` header continues the caller's trace
    (``trace_id``, ``remote_parent``), as in the ASGI middleware; a malformed one is
    ignored and counted in :attr:`malformed_traceparent`.

    Args:
        app: the WSGI application to wrap.
        tracker: the tracker (or its name) recording the root calls.
        exclude_paths: paths not to track, exact (``"/health"``) or as prefixes ending
            in ``*``; probed calls made while serving them record nothing either.
        info: a hook ``info(environ) -> dict`` called once per request after the
            application returned; its items are added to the log's info. Its
            exceptions are counted in :attr:`info_errors` and reported once.
        level: the level of the root call (``DEFAULT``).
        route: a hook ``route(environ) -> str | None`` returning the route template of
            a request, for frameworks that do not expose it (Django:
            ``lambda environ: …``); ``None`` means no route matched. Called when the
            response starts; its exceptions are counted in :attr:`info_errors`.

    Raises:
        TypeError: ``app``, ``info`` or ``route`` is not callable, ``tracker`` is neither a str
            nor a ``Tracker``, ``exclude_paths`` is not a list of str, or ``level``
            has a wrong type.
        ValueError: a bad ``exclude_paths`` entry or an unknown ``level``.

    Example::

        app = Flask(__name__)
        app.wsgi_app = TrackMiddleware(app.wsgi_app, exclude_paths=["/health"])

    .. versionadded:: 0.2
    """

    KIND = "a WSGI"
    HOOK_ARG = "environ"

    def __init__(
        self,
        app: WSGIApp,
        *,
        tracker: str | Tracker = "asynctrack.wsgi",
        exclude_paths: Iterable[str] = (),
        info: InfoHook | None = None,
        level: int | str = DEFAULT,
        route: RouteHook | None = None,
    ) -> None:
        super().__init__(
            app,
            tracker=tracker,
            exclude_paths=exclude_paths,
            info=info,
            level=level,
            route=route,
        )
        self.app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """
        Serve one request; the returned body keeps the request's call open until closed.
        """
        if not self.tracker.enabled:
            if not self._checked:
                self._check_configured()
            return self.app(environ, start_response)
        path: str = environ.get("PATH_INFO", "") or "/"
        if self._excluded(path):
            call = self.tracker.call("excluded", level=NONE)
        else:
            method: str = environ.get("REQUEST_METHOD", "GET")
            query = environ.get("QUERY_STRING")
            client = environ.get("REMOTE_ADDR")
            call = self.tracker.call(
                f"{method_name(method)} {PENDING}",
                level=self.level,
                params={"query": parse_query(query)} if query else None,
                # Set as the log opens (no info update): a log written incomplete at
                # shutdown still says what it was; the path waits for the route.
                info={"method": method, "client": client} if client else {"method": method},
            )
        request = _Request(self, call, environ, path)
        # A fresh context per request: the call's ContextVar is set and reset in it,
        # never in the server thread's own context.
        return request.ctx.run(request.start, start_response)

    # -- bookkeeping: never raises into the application ------------------------------------
    def _link(self, call: CallScope, environ: Environ) -> None:
        # W3C trace context: the request's log continues the caller's trace.
        try:
            parent = environ.get("HTTP_TRACEPARENT")
            if parent is not None and not call.link_remote(parent, environ.get("HTTP_TRACESTATE")):
                self.malformed_traceparent += 1
        except Exception:
            self.internal_errors += 1

    def _route_of(self, environ: Environ) -> tuple[str | None, list[str]]:
        """
        Return the route template (None: no route matched) and the secret path values.
        """
        template, params = route_template(environ)
        hook = self._route
        if template is None and hook is not None:
            try:
                found = hook(environ)
                if found is not None and not isinstance(found, str):
                    raise TypeError(f"returned {type(found).__name__}, not str")
                template = found or None
            except Exception as exc:
                self._hook_failed("route", hook, exc)
        return template, _secrets(params)

    def _name(self, call: CallScope, environ: Environ, route: tuple[str | None, list[str]]) -> None:
        """
        Name the root call after its route (or ``<unmatched>``); record the redacted path.
        """
        try:
            template, secrets = route
            method = method_name(environ.get("REQUEST_METHOD", "GET"))
            if template is None:
                call.rename(f"{method} {UNMATCHED}")
            else:
                call.rename(f"{method} {redact_values(template, secrets)}")
            path = environ.get("SCRIPT_NAME", "") + (environ.get("PATH_INFO", "") or "/")
            call.add_info(path=redact_values(path, secrets))
        except Exception:
            self.internal_errors += 1


class _Request:
    """
    One request's state: its context, call, status and whether its body ended.
    """

    __slots__ = ("call", "ctx", "environ", "middleware", "named", "path", "status")

    def __init__(
        self, middleware: TrackMiddleware, call: CallScope, environ: Environ, path: str
    ) -> None:
        self.middleware = middleware
        self.call = call
        self.environ = environ
        self.path = path
        self.status: int | None = None
        self.named = False
        self.ctx = contextvars.copy_context()

    def start(self, start_response: StartResponse) -> Iterable[bytes]:
        call = self.call
        call.__enter__()
        if not call.tracked:
            try:
                body = self.middleware.app(self.environ, start_response)
            except BaseException as exc:
                call.__exit__(type(exc), exc, exc.__traceback__)
                raise
            return _Body(self, body)
        self.middleware._link(call, self.environ)

        def observe(status: str, headers: Any, exc_info: ExcInfo | None = None) -> Any:
            try:
                self.status = int(status.split(" ", 1)[0])
            except Exception:
                self.middleware.internal_errors += 1
            if not self.named:
                # Flask forgets its request object once the view returned: the route
                # is read while the response starts.
                self.named = True
                self.middleware._name(call, self.environ, self.middleware._route_of(self.environ))
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self.middleware.app(self.environ, observe)
        except BaseException as exc:
            self.end(exc)
            raise
        return _Body(self, body)

    def end(self, exc: BaseException | None, *, early: bool = False) -> None:
        """
        Close the request's call (in its context), recording ``exc`` when given.
        """
        call = self.call
        if call.tracked:
            if exc is not None and self.status is None:
                self.status = 500
            if not self.named:
                self.named = True
                self.middleware._name(call, self.environ, self.middleware._route_of(self.environ))
            self.middleware._finish(call, self.environ, self.status)
            if early:
                try:
                    call.add_data("disconnected", True)
                except Exception:
                    self.middleware.internal_errors += 1
        if exc is None:
            call.__exit__(None, None, None)
        else:
            call.__exit__(type(exc), exc, exc.__traceback__)


class _Body:
    """
    The application's response body, iterated and closed in the request's context.
    """

    __slots__ = ("_done", "_iter", "_request", "_source")

    def __init__(self, request: _Request, source: Iterable[bytes]) -> None:
        self._request = request
        self._source = source
        self._iter: Iterator[bytes] | None = None
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        request = self._request
        if self._done:
            raise StopIteration
        try:
            it = self._iter
            if it is None:
                it = self._iter = request.ctx.run(iter, self._source)
            return request.ctx.run(next, it)
        except StopIteration:
            self._finish(None, early=False)
            raise
        except BaseException as exc:
            self._finish(exc, early=False)
            raise

    def close(self) -> None:
        """
        Close the application's body (PEP 3333), then end the request's call.
        """
        if self._done:
            self._close_source()
            return
        # Closed before the body ended: the client went away (or the server gave up).
        try:
            self._close_source()
        except BaseException as exc:
            self._finish(exc, early=True)
            raise
        self._finish(None, early=True)

    def _close_source(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            self._request.ctx.run(close)

    def _finish(self, exc: BaseException | None, *, early: bool) -> None:
        if self._done:
            return
        self._done = True
        self._request.ctx.run(self._request.end, exc, early=early)


def route_template(environ: Environ) -> tuple[str | None, Any]:
    """
    Return the matched route's template and path parameters, when the framework left
    them in the environ.
    """
    request = environ.get("werkzeug.request")  # Flask and Werkzeug apps
    if request is not None:
        rule = getattr(request, "url_rule", None)
        template = getattr(rule, "rule", None)
        if isinstance(template, str) and template:
            return template, getattr(request, "view_args", None)
    route = environ.get("bfg.routes.matched_route")  # Pyramid
    pattern = getattr(route, "pattern", None)
    if isinstance(pattern, str) and pattern:
        template = pattern if pattern.startswith("/") else "/" + pattern
        return template, environ.get("bfg.routes.matchdict")
    return None, None


def _secrets(params: Any) -> list[str]:
    """
    Return the text of the path parameters whose names are on the redaction list.
    """
    if not isinstance(params, Mapping):
        return []
    out = []
    for name, value in params.items():
        if isinstance(name, str) and asynctrack.is_redacted(name):
            text = str(value).strip("/")
            if text:
                out.append(text)
    return out


TrackMiddleware.__module__ = "asynctrack.integrations.wsgi"
