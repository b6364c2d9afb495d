"""
TrackMiddleware names the usual request from its route's cached data, and records
the same logs as when it names every request the general way.

The usual request (no server root path, a route that is not a mount, no secret-named
placeholder) is named from data looked up once per route; every other request is named
by the general code. Both ways are run here on the same requests, the general one
forced by ``_FAST_PATH = False``, and their logs compared field by field (ids, times
and random trace ids aside).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

import asynctrack
from asynctrack import Log
from asynctrack.integrations.asgi import TrackMiddleware
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.asgi_fast")


class Boom(Exception):
    pass


@tr.probe
async def load(key: str) -> dict[str, str]:
    await anyio.lowlevel.checkpoint()
    return {"key": key}


async def item(request: Request) -> Response:
    asynctrack.add_info("user", request.headers.get("x-user", "-"))
    return JSONResponse(await load(str(dict(request.path_params))))


async def boom(request: Request) -> Response:
    await load("boom")
    raise Boom("kaput")


async def stream(request: Request) -> Response:
    fail = request.query_params.get("fail")

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        if fail:
            raise Boom("mid-stream")
        yield b"b"

    return StreamingResponse(body())


async def read(request: Request) -> Response:
    body = await request.body()
    return Response(body, status_code=201)


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/reset/{token}", item),
            Route("/users/{user_id:int}/posts/{post}", item),
            Route("/boom", boom),
            Route("/stream", stream),
            Route("/read", read, methods=["GET", "POST"]),
            Mount("/m", routes=[Route("/items/{item_id}", item)]),
        ]
    )


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """
    A bare ASGI app: no route in the scope, so every request is unmatched.
    """
    if scope["path"] == "/boom":
        raise Boom("bare")
    if scope["path"] == "/read":
        await receive()
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"tea"})


TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADERS = [
    (b"traceparent", TRACEPARENT),
    (b"traceparent", b"00-zz-bad-01"),
    (b"tracestate", b"k=v"),
    (b"x-user", b"alice"),
    (b"host", b"example.com"),
]


class ClientGone(OSError):
    pass


async def run(app: Any, scope: Scope, *, body: bytes, gone: bool) -> None:
    requests: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if requests:
            return requests.pop()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if gone and message["type"] == "http.response.body":
            raise ClientGone()

    try:
        await app(scope, receive, send)
    except (Boom, ClientGone, ClientDisconnect):
        pass


def comparable(log: Log) -> dict[str, Any]:
    d = log.to_dict()
    for key in ("id", "started_at", "duration_us"):
        d.pop(key)
    if d["remote_parent"] is None:
        d.pop("trace_id")  # random unless the request continued a trace
    for call in d["calls"]:
        call.pop("offset_us")
        call.pop("duration_us")
    return d


@given(
    kind=st.sampled_from(["starlette", "bare"]),
    method=st.sampled_from(["GET", "POST", "HEAD", "DELETE", "BREW"]),
    path=st.sampled_from(
        [
            "/items/42",
            "/reset/s3cr3t-value",
            "/users/7/posts/hello",
            "/users/x/posts/hello",
            "/boom",
            "/stream",
            "/read",
            "/m/items/9",
            "/nowhere/s3cr3t",
            "/",
        ]
    ),
    query=st.sampled_from([b"", b"page=2&page=3&token=abc", b"fail=1", b"%zz=&x"]),
    headers=st.lists(st.sampled_from(HEADERS), max_size=4),
    client=st.sampled_from([None, ("10.0.0.1", 5000)]),
    root_path=st.sampled_from(["", "", "/api"]),
    gone=st.booleans(),
    hook=st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_path_records_what_the_general_path_records(
    kind: str,
    method: str,
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    root_path: str,
    gone: bool,
    hook: bool,
) -> None:
    """
    For any method, route (matched, with a secret-named parameter, under a mount,
    unmatched), query string, trace headers, client, server root path, an exception
    before or during the response and a client gone while sending, the two paths
    record identical logs.
    """
    inner = starlette_app() if kind == "starlette" else bare_app

    def info(scope: Scope) -> dict[str, Any]:
        return {"seen": scope.get("path")}

    options: dict[str, Any] = {"info": info} if hook else {}
    fast = TrackMiddleware(inner, **options)
    general = TrackMiddleware(inner, **options)
    general._FAST_PATH = False

    def scope() -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": root_path + path,
            "raw_path": (root_path + path).encode(),
            "root_path": root_path,
            "query_string": query,
            "headers": list(headers),
            "client": client,
            "server": ("127.0.0.1", 8000),
        }

    async def main() -> list[Log]:
        with capture() as logs:
            for middleware in (fast, general, fast, general):  # the second: cached routes
                await run(middleware, scope(), body=b"payload", gone=gone)
        return logs

    logs = anyio.run(main)
    assert len(logs) == 4
    first, second, third, fourth = map(comparable, logs)
    assert first == second
    assert third == fourth
    assert fast.malformed_traceparent == general.malformed_traceparent
    assert (fast.internal_errors, general.internal_errors) == (0, 0)


@pytest.mark.anyio
async def test_routes_are_looked_up_once() -> None:
    """
    A route's data is cached at its first request (the route object kept, so its id
    is never reused); requests under a server root path, on an excluded path or on a
    route with a secret-named parameter are named the general way, correctly.
    """
    middleware = TrackMiddleware(starlette_app(), exclude_paths=["/health"])

    async def request(path: str, root_path: str = "") -> None:
        scope: Scope = {
            "type": "http",
            "method": "GET",
            "path": root_path + path,
            "root_path": root_path,
            "query_string": b"",
            "headers": [],
        }
        await run(middleware, scope, body=b"", gone=False)

    with capture() as logs:
        for path in ("/items/1", "/items/2", "/health", "/reset/s3cr3t", "/m/items/3"):
            await request(path)
        await request("/items/4", "/api")
    assert [(log.calls[0].function, log.info["path"]) for log in logs] == [
        ("GET /items/{item_id}", "/items/1"),
        ("GET /items/{item_id}", "/items/2"),
        ("GET /reset/{token}", "/reset/[REDACTED]"),
        ("GET /m/items/{item_id}", "/m/items/3"),
        ("GET /items/{item_id}", "/api/items/4"),
    ]
    # Three route objects: the mounted route is one of its own (named the general way).
    cached = [entry[1] for entry in middleware._routes.values()]
    assert cached == ["/items/{item_id}", "/reset/{token}", "/items/{item_id}"]


class TouchyRoute:
    """
    A route object whose attributes raise what hasattr() does not catch.
    """

    path_format = "/touchy/{item}"

    @property
    def routes(self) -> Any:
        raise RuntimeError("not a mount, and says so loudly")


async def touchy_app(scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = TouchyRoute()
    scope["path_params"] = {"item": "1"}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.anyio
async def test_a_route_that_raises_never_reaches_the_application() -> None:
    """
    The route cache's lookup is bookkeeping: an exception from the route object is
    counted in internal_errors, as the general path counts it, and the request is
    served and recorded all the same.
    """
    fast = TrackMiddleware(touchy_app)
    general = TrackMiddleware(touchy_app)
    general._FAST_PATH = False
    scope: Scope = {"type": "http", "method": "GET", "path": "/touchy/1", "headers": []}
    with capture() as logs:
        for middleware in (fast, general):
            await run(middleware, dict(scope), body=b"", gone=False)
    assert len(logs) == 2
    assert comparable(logs[0]) == comparable(logs[1])
    assert (fast.internal_errors, general.internal_errors) == (1, 1)
