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
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import asynctrack
from asynctrack import DEFAULT, NONE, Tracker
from asynctrack.integrations._exchange import Exchange
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

#: The name of a request no route matched: one per method, however many paths (#15).
UNMATCHED = "<unmatched>"
#: The name of a request not routed yet (seen only in a log written incomplete).
PENDING = "<pending>"
REDACTED = "[REDACTED]"
#: Methods named as they are; any other (a client can send any token) is ``OTHER``.
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "WEBSOCKET"}
)
_PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")

_logger = logging.getLogger("asynctrack")


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
        self._info = info
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """
        Serve one ASGI connection, recording HTTP and websocket scopes.
        """
        kind = scope["type"]
        if kind == "websocket":
            if not self._checked:
                self._check_configured()
            await self._websocket(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        if not self._checked:
            self._check_configured()
        if self._excluded(_app_path(scope, scope.get("root_path", ""))):
            with self.tracker.call("excluded", level=NONE):
                await self.app(scope, receive, send)
            return
        method: str = scope.get("method", "GET")
        query = scope.get("query_string")
        call = self.tracker.call(
            f"{_method_name(method)} {PENDING}",
            level=self.level,
            params={"query": _query(query)} if query else None,
        )
        # Not a ``with`` block, and one Exchange rather than two closures: a request
        # holds these objects at every await, and each one held by each concurrent
        # request brings the next gen0 collection nearer (see docs/performance.md,
        # "The garbage collector").
        call.__enter__()
        try:
            if not call.tracked:
                await self.app(scope, receive, send)
            else:
                self._start_info(call, scope, method)
                ex = Exchange(self, call, scope, method, send, receive)
                try:
                    await self.app(scope, ex.receive, ex)
                except Exception:
                    if ex.status is None:
                        ex.status = 500  # what the server (or ServerErrorMiddleware) sends
                    raise
                finally:
                    if not ex.named:
                        self._name(call, scope, method, ex.root_path, final=True)
                    self._finish(call, scope, None if ex.status == ex.recorded else ex.status)
                    if ex.disconnected:
                        self._data(call, "disconnected", True)
        except BaseException as exc:
            call.__exit__(type(exc), exc, exc.__traceback__)
            raise
        call.__exit__(None, None, None)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._excluded(_app_path(scope, scope.get("root_path", ""))):
            with self.tracker.call("excluded", level=NONE):
                await self.app(scope, receive, send)
            return
        query = scope.get("query_string")
        call = self.tracker.call(
            f"WEBSOCKET {PENDING}",
            level=self.level,
            params={"query": _query(query)} if query else None,
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

    def _template(self, scope: Scope, root_path: str) -> tuple[str | None, bool]:
        """
        Return the route template (None: no route yet) and whether that is final.
        """
        template = _route_template(scope, root_path)
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
            secrets = _secret_values(scope.get("path_params"))
            full: str = scope.get("path", "")
            relative = _app_path(scope, root_path)
            root = full[: len(full) - len(relative)] if full.endswith(relative) else ""
            if template is None:
                call.rename(f"{_method_name(method)} {UNMATCHED}")
                shown = _redact_values(full, secrets + near_secrets(scope, relative, root_path))
            else:
                if hasattr(scope.get("route"), "routes"):
                    # Matched by a mount alone: none of its routes matched the rest.
                    secrets += near_secrets(scope, relative, root_path)
                call.rename(f"{_method_name(method)} {_redact_values(template, secrets)}")
                shown = root + _redact_path(relative, template, secrets)
            if status is None:
                call.add_info(path=shown)
            else:
                call.add_info(path=shown, status=status)
        except Exception:
            self.internal_errors += 1
        return True

    def _finish(self, call: Any, scope: Scope, status: int | None) -> None:
        try:
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
                self._hook_failed("info", hook, exc)

    def _hook_failed(self, kind: str, hook: Any, exc: Exception) -> None:
        self.info_errors += 1
        if self.info_errors == 1:
            _logger.warning(
                "asynctrack: TrackMiddleware %s hook %r failed: %r "
                "(counted in info_errors; reported once)",
                kind,
                hook,
                exc,
            )

    def _data(self, call: Any, key: str, value: Any) -> None:
        try:
            call.add_data(key, value)
        except Exception:
            self.internal_errors += 1


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


def _method_name(method: str) -> str:
    return method if method in _METHODS else "OTHER"


def _app_path(scope: Scope, root: str) -> str:
    """
    Return the request's path relative to the server's ``root_path`` (``root``).

    ASGI servers include ``root_path`` in ``path`` (``uvicorn --root-path /api``
    gives ``/api/health``); routes and ``exclude_paths`` are relative to the app.
    ``root`` is read before the app runs: Starlette's mounts extend the scope's.
    """
    path: str = scope.get("path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def _secret_values(params: Any) -> list[str]:
    """
    Return the text of the path parameters whose names are on the redaction list.
    """
    if type(params) is not dict:
        if not isinstance(params, Mapping):
            return []
    elif not params:
        return []
    out = []
    for name, value in params.items():
        if isinstance(name, str) and asynctrack.is_redacted(name):
            text = str(value).strip("/")
            if text:
                out.append(text)
    return out


def _redact_path(path: str, template: str, secrets: list[str]) -> str:
    """
    Replace in ``path`` the segments of ``template``'s redacted placeholders.

    Segments are aligned with the template when both have as many (a placeholder's
    raw text, whatever its convertor); values are matched segment by segment otherwise
    (``{rest:path}`` parameters, parameters of enclosing mounts).
    """
    count, named = _template_parts(template)
    if named:
        segments = path.split("/")
        if len(segments) == count:
            for i, names in named:
                if any(asynctrack.is_redacted(name) for name in names):
                    segments[i] = REDACTED
            path = "/".join(segments)
    return _redact_values(path, secrets)


#: Route template -> its segment count and the placeholder names of each segment that
#: has any. Parsed once per template rather than per request; bounded, because a
#: ``route`` hook may return templates built from the request.
_TEMPLATES: dict[str, tuple[int, tuple[tuple[int, tuple[str, ...]], ...]]] = {}


def _template_parts(template: str) -> tuple[int, tuple[tuple[int, tuple[str, ...]], ...]]:
    hit = _TEMPLATES.get(template)
    if hit is None:
        parts = template.split("/")
        named = tuple(
            (i, tuple(m[1] for m in _PLACEHOLDER.finditer(part)))
            for i, part in enumerate(parts)
            if "{" in part
        )
        hit = (len(parts), tuple(x for x in named if x[1]))
        if len(_TEMPLATES) < 4096 and len(template) <= 512:
            _TEMPLATES[template] = hit
    return hit


def _redact_values(path: str, secrets: list[str]) -> str:
    """
    Replace each run of whole segments of ``path`` that spells a secret value.
    """
    if not secrets:
        return path
    segments = path.split("/")
    for secret in sorted(secrets, key=len, reverse=True):
        wanted = secret.split("/")
        n = len(wanted)
        out: list[str] = []
        i = 0
        while i < len(segments):
            if segments[i : i + n] == wanted:
                out.append(REDACTED)
                i += n
            else:
                out.append(segments[i])
                i += 1
        segments = out
    return "/".join(segments)


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
