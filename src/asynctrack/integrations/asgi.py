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

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import asynctrack
from asynctrack import DEFAULT, NONE, Tracker

__all__ = ["TrackMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
InfoHook = Callable[[Scope], Mapping[str, Any] | None]

_logger = logging.getLogger("asynctrack")


class TrackMiddleware:
    """
    Record each HTTP request and each websocket session as one log.

    The root call is named after the method and the route template when the framework
    exposes it (Starlette and FastAPI put the matched route in ``scope["route"]``),
    e.g. ``"GET /items/{item_id}"``, else after the raw path; websocket sessions are
    named ``"WEBSOCKET /path"``. Its params hold the query string (``{"query": {...}}``,
    parsed, so names like ``token`` are redacted), never the body. The log's info gets
    ``method``, ``path``, ``status`` (the response status; 500 when the application
    raised before responding; 101 for an accepted websocket) and ``client`` (the
    client's host), plus whatever ``info(scope)`` returns.

    An exception from the application marks the root call ``status="error"`` and
    propagates unchanged; a client disconnect before the response ended is recorded as
    data ``disconnected: true``. A streaming response is tracked until its body ends.
    ``lifespan`` and other scope types pass straight through.

    Args:
        app: the ASGI application to wrap.
        tracker: the tracker (or its name) recording the root calls; its level
            threshold applies like any probe's.
        exclude_paths: paths not to track, exact (``"/health"``) or as prefixes ending
            in ``*`` (``"/static/*"``). Probed calls made while serving them record
            nothing either (the request runs as a ``NONE`` call, which silences its
            subtree).
        info: a hook ``info(scope) -> dict`` called once per request after the
            application returned (so it sees what inner middleware put in the scope,
            such as ``scope["user"]``); its items are added to the log's info. An
            exception in the hook is counted in :attr:`info_errors`, reported once
            on the ``asynctrack`` logger, and never reaches the application.
        level: the level of the root call (``DEFAULT``).

    Raises:
        TypeError: ``app`` is not callable, ``tracker`` is neither a str nor a
            ``Tracker``, ``exclude_paths`` is not a list of str, ``info`` is not
            callable, or ``level`` has a wrong type.
        ValueError: an ``exclude_paths`` entry does not start with ``/`` or has a
            ``*`` elsewhere than at its end, or ``level`` is unknown.

    Example::

        app = FastAPI(lifespan=lifespan)
        app.add_middleware(TrackMiddleware, exclude_paths=["/health"])

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracker: str | Tracker = "asynctrack.asgi",
        exclude_paths: Iterable[str] = (),
        info: InfoHook | None = None,
        level: int | str = DEFAULT,
    ) -> None:
        if not callable(app):
            raise TypeError(f"TrackMiddleware(): app must be an ASGI application, not {app!r}")
        if isinstance(tracker, str):
            tracker = asynctrack.get_tracker(tracker)
        elif not isinstance(tracker, Tracker):
            raise TypeError(
                "TrackMiddleware(): tracker must be a tracker name (str) or an "
                f"asynctrack.Tracker, not {type(tracker).__name__}"
            )
        if info is not None and not callable(info):
            raise TypeError(
                f"TrackMiddleware(): info must be a callable(scope) -> dict, not {info!r}"
            )
        try:
            tracker.call("TrackMiddleware", level=level)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"TrackMiddleware(): level: {exc}") from None
        self.app = app
        self.tracker = tracker
        self.level = level
        self._exact, self._prefixes = _parse_excludes(exclude_paths)
        self._info = info
        #: How many times the ``info`` hook raised or returned something unusable.
        self.info_errors = 0
        #: How many times the middleware's own bookkeeping failed (never raised).
        self.internal_errors = 0

    def _excluded(self, path: str) -> bool:
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """
        Serve one ASGI connection, recording HTTP and websocket scopes.
        """
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self._excluded(path):
            with self.tracker.call("excluded", level=NONE):
                await self.app(scope, receive, send)
            return
        method: str = scope.get("method", "GET")
        query = scope.get("query_string")
        call = self.tracker.call(
            f"{method} {path}", level=self.level, params={"query": _query(query)} if query else None
        )
        with call:
            if not call.tracked:
                await self.app(scope, receive, send)
                return
            self._start_info(call, scope, method, path)
            root_path: str = scope.get("root_path", "")
            status: int | None = None
            ended = False
            disconnected = False

            async def send_observed(message: Message) -> None:
                nonlocal status, ended, disconnected
                kind = message["type"]
                if kind == "http.response.start":
                    status = message.get("status")
                elif (
                    kind == "http.response.body" and not message.get("more_body", False)
                ) or kind == "http.response.pathsend":
                    ended = True
                try:
                    await send(message)
                except OSError:
                    # Servers implementing ASGI spec 2.4 (uvicorn) raise an OSError
                    # from send once the client is gone.
                    disconnected = True
                    raise

            async def receive_observed() -> Message:
                nonlocal disconnected
                message = await receive()
                # Servers answer http.disconnect to reads after the response ended;
                # only a disconnect before the end is the client going away.
                if message["type"] == "http.disconnect" and not ended:
                    disconnected = True
                return message

            try:
                await self.app(scope, receive_observed, send_observed)
            except Exception:
                if status is None:
                    status = 500  # what the server (or ServerErrorMiddleware) will send
                raise
            finally:
                self._finish(call, scope, method, root_path, status)
                if disconnected:
                    self._data(call, "disconnected", True)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if self._excluded(path):
            with self.tracker.call("excluded", level=NONE):
                await self.app(scope, receive, send)
            return
        query = scope.get("query_string")
        call = self.tracker.call(
            f"WEBSOCKET {path}",
            level=self.level,
            params={"query": _query(query)} if query else None,
        )
        with call:
            if not call.tracked:
                await self.app(scope, receive, send)
                return
            self._start_info(call, scope, "WEBSOCKET", path)
            root_path: str = scope.get("root_path", "")
            status: int | None = None
            close_code: int | None = None
            client_closed = False
            received = 0
            sent = 0

            async def send_observed(message: Message) -> None:
                nonlocal status, close_code, sent
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
                nonlocal close_code, client_closed, received
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
                self._finish(call, scope, "WEBSOCKET", root_path, status)
                self._data(call, "messages_received", received)
                self._data(call, "messages_sent", sent)
                if close_code is not None:
                    self._data(call, "close_code", close_code)
                if client_closed:
                    self._data(call, "disconnected", True)

    # -- bookkeeping: never raises into the application ------------------------------------
    def _start_info(self, call: Any, scope: Scope, method: str, path: str) -> None:
        # Set at the start, so a log written incomplete at shutdown (a long stream or
        # websocket session) still says what it was.
        try:
            client = scope.get("client")
            if client:
                call.add_info(method=method, path=path, client=client[0])
            else:
                call.add_info(method=method, path=path)
        except Exception:
            self.internal_errors += 1

    def _finish(
        self, call: Any, scope: Scope, method: str, root_path: str, status: int | None
    ) -> None:
        try:
            template = _route_template(scope, root_path)
            if template is not None:
                call.rename(f"{method} {template}")
            if status is not None:
                call.add_info(status=status)
        except Exception:
            self.internal_errors += 1
        hook = self._info
        if hook is not None:
            try:
                extra = hook(scope)
                if extra is not None:
                    call.add_info(**extra)
            except Exception as exc:
                self.info_errors += 1
                if self.info_errors == 1:
                    _logger.warning(
                        "asynctrack: TrackMiddleware info hook %r failed: %r "
                        "(counted in info_errors; reported once)",
                        hook,
                        exc,
                    )

    def _data(self, call: Any, key: str, value: Any) -> None:
        try:
            call.add_data(key, value)
        except Exception:
            self.internal_errors += 1


def _parse_excludes(paths: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        raise TypeError(
            f"TrackMiddleware(): exclude_paths must be a list of str, not {type(paths).__name__}"
        )
    exact: set[str] = set()
    prefixes: list[str] = []
    for entry in paths:
        if not isinstance(entry, str):
            raise TypeError(
                f"TrackMiddleware(): exclude_paths entries must be str, not {type(entry).__name__}"
            )
        if not entry.startswith("/"):
            raise ValueError(f"TrackMiddleware(): exclude_paths entry {entry!r} must start with /")
        if "*" in entry[:-1]:
            raise ValueError(
                f"TrackMiddleware(): exclude_paths entry {entry!r}: '*' is only allowed at the end"
            )
        if entry.endswith("*"):
            prefixes.append(entry[:-1])
        else:
            exact.add(entry)
    return frozenset(exact), tuple(prefixes)


def _query(raw: bytes | str) -> Any:
    """
    Parse a query string into ``{name: value}`` (a list for repeated names).

    A dict rather than the raw string, so that the value of ``?token=...`` is redacted
    like any parameter named ``token``.
    """
    try:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        parsed: dict[str, Any] = {}
        for key, value in parse_qsl(text, keep_blank_values=True):
            old = parsed.get(key)
            if old is None:
                parsed[key] = value
            elif isinstance(old, list):
                old.append(value)
            else:
                parsed[key] = [old, value]
        return parsed
    except Exception:
        return "<unparsable query string>"


def _route_template(scope: Scope, root_path: str) -> str | None:
    """
    Return the matched route's path template, with the prefixes of enclosing mounts.
    """
    route = scope.get("route")
    if route is None:
        return None
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return None
    # Starlette's Mount extends root_path by the part of the path it matched.
    mounted = scope.get("root_path", "")
    prefix = ""
    if isinstance(mounted, str) and mounted != root_path and mounted.startswith(root_path):
        prefix = mounted[len(root_path) :]
    if not prefix:
        return template
    if hasattr(route, "routes"):
        # The route is itself a mount (of a non-routing app such as StaticFiles): its
        # own template already covers the last prefix segment.
        own = getattr(route, "path", "")
        if isinstance(own, str) and prefix.endswith(own):
            return prefix[: len(prefix) - len(own)] + template
        return prefix + "/{path:path}"
    return prefix + template


TrackMiddleware.__module__ = "asynctrack.integrations.asgi"
