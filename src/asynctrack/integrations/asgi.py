"""
TrackMiddleware: one log per HTTP request and per websocket session, in pure ASGI.

It wraps any ASGI application — Starlette, FastAPI, Quart, Litestar, a bare
``async def app(scope, receive, send)`` — without buffering anything: ``send`` is
wrapped only to observe the response status and the end of the body, ``receive``
only to notice a client disconnect. Starlette's ``BaseHTTPMiddleware`` costs about
30 % of throughput on a small handler; a pure ASGI middleware costs nothing
measurable (see docs/performance.md, "What tracking costs a web application").

It uses only asynctrack's public API (an import contract checks it; see
docs/design.md): :meth:`Tracker.call` records the request as the root call of a log,
and probed handlers called beneath it join that log.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import asynctrack
from asynctrack import DEFAULT, NONE, Tracker
from asynctrack.integrations._exchange import Exchange
from asynctrack.integrations._paths import (
    METHODS,
    PENDING,
    PLACEHOLDER,
    UNMATCHED,
    app_path,
    method_name,
    parse_query,
    redact_path,
    redact_values,
    route_template,
    secret_values,
)
from asynctrack.integrations._unmatched import near_secrets
from asynctrack.integrations._web import WebMiddleware

__all__ = ["TrackMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
InfoHook = Callable[[Scope], Mapping[str, Any] | None]
RouteHook = Callable[[Scope], str | None]

_PENDING_NAMES = {m: f"{m} {PENDING}" for m in METHODS}
_PENDING_OTHER = f"OTHER {PENDING}"


class TrackMiddleware(WebMiddleware):
    """
    Record each HTTP request and each websocket session as one log.

    The root call is named after the method and the route template when the framework
    exposes it (Starlette and FastAPI put the matched route in ``scope["route"]``; the
    ``route`` hook covers other frameworks), e.g. ``"GET /items/{item_id}"``; a request
    no route matched is named ``"GET <unmatched>"`` — one bounded name per method, never
    the raw path, which can carry ids or tokens and is unbounded. Websocket sessions are
    named ``"WEBSOCKET /ws/{room}"``. Methods other than the standard ones are named
    ``OTHER``.

    The log's info gets ``method``, ``path`` (the request's path, in which the values of
    path parameters whose names are on the redaction list are ``[REDACTED]``:
    ``/reset-password/[REDACTED]``), ``status`` (the response status; 500 when the
    application raised before responding; 101 for an accepted websocket) and
    ``client`` (the client's host), plus whatever ``info(scope)`` returns. The path is
    recorded once the request is routed (at its first message, or when it ends), so it
    is never written before its secrets are known. The root call's params hold the
    query string parsed (``{"query": {...}}``), so the values of names such as ``token``
    are redacted like any parameter; never the body.

    An exception from the application marks the root call ``status="error"`` and
    propagates unchanged; a client disconnect before the response ended is recorded as
    data ``disconnected: true``. A streaming response is tracked until its body ends.
    ``lifespan`` and other scope types pass straight through.

    A request with a W3C ``traceparent`` header continues the caller's trace: its log
    takes the header's trace id as ``trace_id`` and the caller's span id as
    ``remote_parent`` (``tracestate`` is kept in info and forwarded by
    :class:`~asynctrack.integrations.httpx.TrackTransport`). A malformed header is
    ignored and counted in :attr:`malformed_traceparent`.

    Args:
        app: the ASGI application to wrap.
        tracker: the tracker (or its name) recording the root calls; its level
            threshold applies like any probe's.
        exclude_paths: paths not to track, exact (``"/health"``) or as prefixes ending
            in ``*`` (``"/static/*"``), relative to the application: under a server's
            ``root_path`` (``uvicorn --root-path /api``) ``"/health"`` matches
            ``/api/health``. Probed calls made while serving them record nothing either
            (the request runs as a ``NONE`` call, which silences its subtree).
        info: a hook ``info(scope) -> dict`` called once per request after the
            application returned (so it sees what inner middleware put in the scope,
            such as ``scope["user"]``); its items are added to the log's info. An
            exception in the hook is counted in :attr:`info_errors`, reported once
            on the ``asynctrack`` logger, and never reaches the application.
        level: the level of the root call (``DEFAULT``).
        route: a hook ``route(scope) -> str | None`` returning the route template of a
            request, for frameworks that do not put the matched route in
            ``scope["route"]``; ``None`` means no route matched. An exception in it is
            counted in :attr:`info_errors`.

    Raises:
        TypeError: ``app`` is not callable, ``tracker`` is neither a str nor a
            ``Tracker``, ``exclude_paths`` is not a list of str, ``info`` or
            ``route`` is not callable, or ``level`` has a wrong type.
        ValueError: an ``exclude_paths`` entry does not start with ``/`` or has a
            ``*`` elsewhere than at its end, or ``level`` is unknown.

    Example::

        app = FastAPI(lifespan=lifespan)
        app.add_middleware(TrackMiddleware, exclude_paths=["/health"])

    .. versionadded:: 0.1
    """

    KIND = "an ASGI"
    HOOK_ARG = "scope"
    #: False names every request the general way, without the route cache (tests
    #: compare the two).
    _FAST_PATH = True

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracker: str | Tracker = "asynctrack.asgi",
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
        self._excludes = bool(self._exact or self._prefixes)
        # The root call's level as ``Tracker.call`` passes it to its scope (validated
        # above): NONE, which only silences, as -1.
        lvl = int(asynctrack.Level[level.strip().upper()]) if isinstance(level, str) else level
        self._call_level = int(lvl) if lvl < NONE else -1
        #: Whether the route data is cached (see _routed); tests turn it off to compare.
        self._cache_routes = False
        #: id(route) -> (route, template, placeholder names) of the routes seen.
        self._routes: dict[int, tuple[Any, str, frozenset[str]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """
        Serve one ASGI connection, recording HTTP and websocket scopes.
        """
        if scope["type"] != "http" or not self._checked:
            await self._other(scope, receive, send)
            return
        if self._excludes and self._excluded(app_path(scope, scope.get("root_path", ""))):
            with self.tracker.call("excluded", level=NONE):
                await self.app(scope, receive, send)
            return
        method: str = scope.get("method", "GET")
        query = scope.get("query_string")
        # The info known at the start goes in as the log opens (one dict, no update),
        # so a log written incomplete at shutdown (a long stream) still says what it
        # was; the path waits for the route.
        try:
            client = scope.get("client")
            info = {"method": method, "client": client[0]} if client else {"method": method}
        except Exception:
            self.internal_errors += 1
            info = {"method": method}
        # One Exchange, the root call and the observed send and receive at once, not a
        # ``with`` block: a request holds these objects at every await, and each one
        # held by each concurrent request brings the next gen0 collection nearer (see
        # docs/performance.md, "The garbage collector").
        ex = Exchange(
            self,
            self.tracker,
            _PENDING_NAMES.get(method, _PENDING_OTHER),
            self._call_level,
            {"query": parse_query(query)} if query else None,
            scope,
            method,
            send,
            receive,
            info,
        )
        ex.__enter__()
        try:
            if not ex.tracked:
                await self.app(scope, receive, send)
            else:
                headers = scope.get("headers")
                if headers:
                    self._trace_headers(ex, headers)
                try:
                    await self.app(scope, ex, ex)
                except Exception:
                    if ex.status is None:
                        ex.status = 500  # what the server (or ServerErrorMiddleware) sends
                    raise
                finally:
                    if not ex.named:
                        self._name(ex, scope, method, ex.root_path, final=True)
                    status = ex.status
                    if status != ex.recorded or self._info is not None:
                        self._finish(ex, scope, None if status == ex.recorded else status)
                    if ex.disconnected:
                        self._data(ex, "disconnected", True)
        except BaseException as exc:
            ex.__exit__(type(exc), exc, exc.__traceback__)
            raise
        ex.__exit__(None, None, None)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Websockets, lifespan and other scopes, and the first request.
        kind = scope["type"]
        if not self._checked and kind in ("http", "websocket"):
            self._check_configured()
            self._cache_routes = self._FAST_PATH
        if kind == "http":
            await self(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._excluded(app_path(scope, scope.get("root_path", ""))):
            with self.tracker.call("excluded", level=NONE):
                await self.app(scope, receive, send)
            return
        query = scope.get("query_string")
        call = self.tracker.call(
            f"WEBSOCKET {PENDING}",
            level=self.level,
            params={"query": parse_query(query)} if query else None,
        )
        with call:
            if not call.tracked:
                await self.app(scope, receive, send)
                return
            self._start_info(call, scope, "WEBSOCKET")
            root_path: str = scope.get("root_path", "")
            status: int | None = None
            close_code: int | None = None
            client_closed = False
            received = 0
            sent = 0
            named = False

            async def send_observed(message: Message) -> None:
                nonlocal status, close_code, sent, named
                if not named:
                    named = self._name(call, scope, "WEBSOCKET", root_path, final=False)
                kind = message["type"]
                if kind == "websocket.send":
                    sent += 1
                elif kind == "websocket.accept":
                    status = 101
                elif kind == "websocket.close":
                    if close_code is None:
                        close_code = message.get("code", 1000)
                    if status is None:
                        status = 403  # closed before accepting: servers answer 403
                elif kind == "websocket.http.response.start":
                    status = message.get("status")
                await send(message)

            async def receive_observed() -> Message:
                nonlocal close_code, client_closed, received, named
                if not named:
                    named = self._name(call, scope, "WEBSOCKET", root_path, final=False)
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    received += 1
                elif kind == "websocket.disconnect" and close_code is None:
                    close_code = message.get("code", 1005)
                    client_closed = True
                return message

            try:
                await self.app(scope, receive_observed, send_observed)
            except Exception:
                if status is None:
                    status = 500
                raise
            finally:
                if not named:
                    self._name(call, scope, "WEBSOCKET", root_path, final=True)
                self._finish(call, scope, status)
                self._data(call, "messages_received", received)
                self._data(call, "messages_sent", sent)
                if close_code is not None:
                    self._data(call, "close_code", close_code)
                if client_closed:
                    self._data(call, "disconnected", True)

    # -- bookkeeping: never raises into the application ------------------------------------
    def _start_info(self, call: Any, scope: Scope, method: str) -> None:
        # Set at the start, so a log written incomplete at shutdown (a long stream or
        # websocket session) still says what it was; the path waits for the route.
        try:
            client = scope.get("client")
            if client:
                call.add_info(method=method, client=client[0])
            else:
                call.add_info(method=method)
            headers = scope.get("headers")
            if headers:
                self._trace_headers(call, headers)
        except Exception:
            self.internal_errors += 1

    def _trace_headers(self, call: Any, headers: Iterable[tuple[bytes, bytes]]) -> None:
        try:
            # Looked up in a dict built in C; the loop only for a trace header.
            names = dict(headers)
            if b"traceparent" in names or b"tracestate" in names:
                self._link(call, headers)
        except Exception:
            self.internal_errors += 1

    def _link(self, call: Any, headers: Iterable[tuple[bytes, bytes]]) -> None:
        # W3C trace context: the request's log continues the caller's trace.
        parent: bytes | None = None
        state: bytes | None = None
        seen = 0
        for name, value in headers:
            if name == b"traceparent":
                parent = value
                seen += 1
            elif name == b"tracestate":
                state = value if state is None else state + b"," + value
        if parent is not None and (seen > 1 or not call.link_remote(parent, state)):
            self.malformed_traceparent += 1

    def _routed(
        self, call: Any, scope: Scope, method: str, root_path: str, status: int | None
    ) -> bool:
        """
        :meth:`_name`, with the route's data looked up once per route.

        The usual request only: no server root path, a route that is not a mount and
        has no secret-named placeholder or path parameter; :meth:`_name` decides every
        other (before the end of the request: not ``final``).
        """
        if root_path or not self._cache_routes:
            return self._name(call, scope, method, root_path, final=False, status=status)
        try:
            route = scope.get("route")
            entry = self._routes.get(id(route))
            if entry is None or entry[0] is not route:
                entry = self._route_entry(route)
        except Exception:
            entry = None  # a route object that raises: the general path counts it
        params = scope.get("path_params")
        if (
            entry is None
            or scope.get("root_path")
            or (params and not (type(params) is dict and params.keys() <= entry[2]))
        ):
            return self._name(call, scope, method, "", final=False, status=status)
        for name in entry[2]:
            if asynctrack.is_redacted(name):
                return self._name(call, scope, method, "", final=False, status=status)
        try:
            call.rename(f"{method if method in METHODS else 'OTHER'} {entry[1]}")
            if status is None:
                call.add_info(path=scope.get("path", ""))
            else:
                call.add_info(path=scope.get("path", ""), status=status)
        except Exception:
            self.internal_errors += 1
        return True

    def _route_entry(self, route: Any) -> tuple[Any, str, frozenset[str]] | None:
        if route is None or hasattr(route, "routes"):
            return None  # not routed yet, or a mount: the general path
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if not isinstance(template, str) or not template:
            return None
        entry = (route, template, frozenset(m[1] for m in PLACEHOLDER.finditer(template)))
        if len(self._routes) < 1024:
            self._routes[id(route)] = entry  # the route is kept: its id is never reused
        return entry

    def _template(self, scope: Scope, root_path: str) -> tuple[str | None, bool]:
        """
        Return the route template (None: no route yet) and whether that is final.
        """
        template = route_template(scope, root_path)
        hook = self._route
        if template is not None or hook is None:
            return template, False
        try:
            found = hook(scope)
            if found is not None and not isinstance(found, str):
                raise TypeError(f"returned {type(found).__name__}, not str")
        except Exception as exc:
            # Counted once per request: the request is then <unmatched>.
            self._hook_failed("route", hook, exc)
            return None, True
        return found or None, False

    def _name(
        self,
        call: Any,
        scope: Scope,
        method: str,
        root_path: str,
        *,
        final: bool,
        status: int | None = None,
    ) -> bool:
        """
        Name the root call after the route and record the redacted path.

        Before the request is routed (``final`` false and no route in the scope yet)
        this does nothing and returns False; at the end of the request a request with
        no route is named ``METHOD <unmatched>``.
        """
        try:
            template, failed = self._template(scope, root_path)
            if template is None and not (final or failed):
                return False
            secrets = secret_values(scope.get("path_params"))
            full: str = scope.get("path", "")
            relative = app_path(scope, root_path)
            root = full[: len(full) - len(relative)] if full.endswith(relative) else ""
            if template is None:
                call.rename(f"{method_name(method)} {UNMATCHED}")
                shown = redact_values(full, secrets + near_secrets(scope, relative, root_path))
            else:
                if hasattr(scope.get("route"), "routes"):
                    # Matched by a mount alone: none of its routes matched the rest.
                    secrets += near_secrets(scope, relative, root_path)
                call.rename(f"{method_name(method)} {redact_values(template, secrets)}")
                shown = root + redact_path(relative, template, secrets)
            if status is None:
                call.add_info(path=shown)
            else:
                call.add_info(path=shown, status=status)
        except Exception:
            self.internal_errors += 1
        return True


TrackMiddleware.__module__ = "asynctrack.integrations.asgi"
