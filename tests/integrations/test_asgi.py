"""
TrackMiddleware: one log per HTTP request and websocket session, in pure ASGI.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

import asynctrack
from asynctrack import Log
from asynctrack.integrations.asgi import TrackMiddleware
from asynctrack.testing import capture
from tests.helpers import CyclicGarbage

tr = asynctrack.get_tracker("tests.asgi")


class Boom(Exception):
    pass


@tr.probe
async def load(item_id: int) -> dict[str, int]:
    await anyio.lowlevel.checkpoint()
    return {"item_id": item_id}


@tr.probe
async def work(i: int) -> int:
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
    asynctrack.add_data("seen", i)
    return i


@tr.probe
async def chunk(i: int) -> bytes:
    await anyio.lowlevel.checkpoint()
    return f"chunk{i};".encode()


@tr.probe
def health_check() -> str:
    return "ok"


@tr.probe
async def shout(text: str) -> str:
    return text.upper()


def only(logs: list[Log]) -> Log:
    assert len(logs) == 1, [log.to_dict() for log in logs]
    return logs[0]


def functions(log: Log) -> list[str]:
    return [call.function for call in log.calls]


# -- a Starlette app ----------------------------------------------------------------------


async def item_endpoint(request: Request) -> Response:
    return JSONResponse(await load(int(request.path_params["item_id"])))


async def echo_endpoint(request: Request) -> Response:
    i = int(request.path_params["i"])
    asynctrack.add_info("user", request.headers["x-user"])
    return JSONResponse({"i": await work(i)})


async def boom_endpoint(request: Request) -> Response:
    raise Boom("kaput")


async def stream_endpoint(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for i in range(3):
            yield await chunk(i)

    return StreamingResponse(body(), media_type="text/plain")


async def health_endpoint(request: Request) -> Response:
    return PlainTextResponse(health_check())


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close(code=1000)
                return
            await websocket.send_text(await shout(text))
    except WebSocketDisconnect:
        pass


def starlette_app(*, middleware: bool = True, **options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/items/{item_id:int}", item_endpoint),
            Route("/echo/{i}", echo_endpoint),
            Route("/boom", boom_endpoint),
            Route("/stream", stream_endpoint),
            Route("/health", health_endpoint),
            Route("/static-ish/{rest:path}", health_endpoint),
            Mount("/api", routes=[Route("/items/{item_id:int}", item_endpoint)]),
            WebSocketRoute("/ws/{room}", ws_endpoint),
        ]
    )
    if middleware:
        app.add_middleware(TrackMiddleware, **options)
    return app


def client(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


# -- a FastAPI app --------------------------------------------------------------------------


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Db:
    def __init__(self) -> None:
        self.closed = False


def get_db() -> Iterator[Db]:
    db = Db()
    try:
        yield db
    finally:
        db.closed = True


async def current_user(x_user: Annotated[str, Header()] = "anonymous") -> str:
    asynctrack.add_info("user", x_user)
    return x_user


def fastapi_app(*, probed: bool = True) -> FastAPI:
    """
    The same app with or without ``@tr.probe`` on its endpoints.
    """

    def p(func: Any) -> Any:
        return tr.probe(func) if probed else func

    app = FastAPI(title="shop")
    router = APIRouter(prefix="/api/v1", tags=["users"])

    @app.get("/items/{item_id}", response_model=dict[str, Any])
    @p
    async def read_item(
        item_id: int, db: Annotated[Db, Depends(get_db)], q: str | None = None, limit: int = 10
    ) -> dict[str, Any]:
        """
        Read an item.
        """
        assert not db.closed
        return {"item": await load(item_id), "q": q, "limit": limit}

    @app.put("/items/{item_id}")
    @p
    async def update_item(
        item_id: int, item: Item, user: Annotated[str, Depends(current_user)]
    ) -> dict[str, Any]:
        return {"item_id": item_id, "name": item.name, "total": item.price * 2, "user": user}

    @router.get("/users/{user_id}")
    @p
    def read_user(user_id: int, verbose: bool = False) -> dict[str, Any]:
        # A sync endpoint: FastAPI runs it in a thread pool (with a copied context).
        return {"user_id": user_id, "verbose": verbose}

    @app.get("/fail")
    @p
    async def fail() -> None:
        raise Boom("fastapi kaput")

    app.include_router(router)
    app.add_middleware(TrackMiddleware)
    return app


# -- tests -------------------------------------------------------------------------------------


class TestRequests:
    @pytest.mark.anyio
    async def test_one_log_per_request_with_info_and_probed_calls(self) -> None:
        """
        Each request is one log: root named after the route template, info method,
        path, status and client, the query string as params (redacted by name), and
        the handler's probed calls inside.
        """
        app = starlette_app()
        with capture() as logs:
            async with client(app) as c:
                r = await c.get("/items/7?q=shoes&q=red&token=s3cret")
                assert r.json() == {"item_id": 7}
                await c.get("/items/8")
        first, second = logs
        assert functions(first) == ["GET /items/{item_id}", "tests.integrations.test_asgi.load"]
        root, inner = first.calls
        assert root.tracker == "asynctrack.asgi"
        assert root.status == "ok"
        assert root.params == {"query": {"q": ["shoes", "red"], "token": "[REDACTED]"}}
        assert inner.depth == 1
        assert inner.params == {"item_id": 7}
        assert first.info == {
            "method": "GET",
            "path": "/items/7",
            "status": 200,
            "client": "127.0.0.1",
        }
        assert second.info["path"] == "/items/8"
        assert second.calls[0].params == {}

    @pytest.mark.anyio
    async def test_route_templates_for_mounts_routers_and_unmatched_paths(self) -> None:
        """
        Mounted routes get the mount's prefix, FastAPI routers their prefix; a path no
        route matched is named ``GET <unmatched>`` with the path in info; a 404 is
        still one log.
        """
        with capture() as logs:
            async with client(starlette_app()) as c:
                assert (await c.get("/api/items/3")).status_code == 200
                assert (await c.get("/static-ish/a/b")).status_code == 200
                assert (await c.get("/nowhere")).status_code == 404
            async with client(fastapi_app()) as c:
                assert (await c.get("/api/v1/users/5")).status_code == 200
        names = [log.calls[0].function for log in logs]
        assert names == [
            "GET /api/items/{item_id}",
            "GET /static-ish/{rest}",
            "GET <unmatched>",
            "GET /api/v1/users/{user_id}",
        ]
        assert logs[2].info["status"] == 404
        assert logs[2].info["path"] == "/nowhere"

    @pytest.mark.anyio
    async def test_mounted_static_files_use_the_mount_template(self, tmp_path: Any) -> None:
        """
        A mount of a non-routing app (StaticFiles) is named after the mount's template.
        """
        (tmp_path / "a.txt").write_text("hello")
        inner = Starlette(routes=[Mount("/static", StaticFiles(directory=tmp_path))])
        app = Starlette(routes=[Mount("/site", app=inner)])
        app.add_middleware(TrackMiddleware)
        with capture() as logs:
            async with client(app) as c:
                assert (await c.get("/site/static/a.txt")).text == "hello"
        assert only(logs).calls[0].function == "GET /site/static/{path}"

    @pytest.mark.anyio
    async def test_concurrent_requests_do_not_cross_talk(self) -> None:
        """
        500 concurrent requests give 500 logs, each holding only its own params, info
        and probed calls.
        """
        app = starlette_app()
        n = 500
        with capture() as logs:
            async with client(app) as c:

                async def one(i: int) -> None:
                    r = await c.get(f"/echo/{i}?n={i}", headers={"x-user": f"u{i}"})
                    assert r.json() == {"i": i}

                async with anyio.create_task_group() as tg:
                    for i in range(n):
                        tg.start_soon(one, i)
        assert len(logs) == n
        seen = set()
        for log in logs:
            i = int(log.info["path"].rsplit("/", 1)[1])
            seen.add(i)
            assert log.info["user"] == f"u{i}"
            assert functions(log) == ["GET /echo/{i}", "tests.integrations.test_asgi.work"]
            root, inner = log.calls
            assert root.params == {"query": {"n": str(i)}}
            assert inner.params == {"i": i}
            assert inner.data == {"seen": i}
        assert seen == set(range(n))

    @pytest.mark.anyio
    async def test_exception_marks_error_and_the_500_is_unchanged(self) -> None:
        """
        An exception in a handler marks the root call error with status 500; the
        framework's 500 response is byte-for-byte the same as without the middleware.
        """
        responses = []
        for middleware in (False, True):
            with capture() as logs:
                app = starlette_app(middleware=middleware)
                async with client(app, raise_app_exceptions=False) as c:
                    responses.append(await c.get("/boom"))
        plain, tracked = responses
        assert tracked.status_code == plain.status_code == 500
        assert tracked.content == plain.content
        assert tracked.headers.multi_items() == plain.headers.multi_items()
        root = only(logs).calls[0]
        assert root.function == "GET /boom"
        assert root.status == "error"
        assert root.error == "Boom: kaput"
        assert logs[0].info["status"] == 500

    @pytest.mark.anyio
    async def test_exception_propagates_as_the_same_object(self) -> None:
        """
        The application's exception reaches the server unchanged (same object).
        """
        raised: list[BaseException] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            exc = Boom("raw")
            raised.append(exc)
            raise exc

        with capture() as logs:
            with pytest.raises(Boom) as info:
                await TrackMiddleware(app)(http_scope("/raw"), receive_nothing, discard)
        assert info.value is raised[0]
        assert only(logs).calls[0].status == "error"
        assert logs[0].info["status"] == 500

    @pytest.mark.anyio
    async def test_excluded_paths_record_nothing_beneath(self) -> None:
        """
        Excluded paths (exact or prefix*) produce no log, and probed calls made while
        serving them record nothing either; other paths still do.
        """
        app = starlette_app(exclude_paths=["/health", "/static-ish/*"])
        with capture() as logs:
            async with client(app) as c:
                assert (await c.get("/health")).text == "ok"
                assert (await c.get("/static-ish/x/y")).text == "ok"
                assert (await c.get("/healthz")).status_code == 404
        assert [log.info["path"] for log in logs] == ["/healthz"]
        # Without the exclusion the probed health_check would have opened its own log.
        with capture() as logs:
            assert health_check() == "ok"
        assert functions(only(logs)) == ["tests.integrations.test_asgi.health_check"]

    @pytest.mark.anyio
    async def test_streaming_response_is_tracked_until_the_body_ends(self) -> None:
        """
        A streaming response's log holds every chunk's probed call, inside the root
        call's span: the root ends after the last chunk was produced.
        """
        with capture() as logs:
            async with client(starlette_app()) as c:
                r = await c.get("/stream")
        assert r.text == "chunk0;chunk1;chunk2;"
        log = only(logs)
        assert functions(log) == ["GET /stream"] + ["tests.integrations.test_asgi.chunk"] * 3
        root = log.calls[0]
        last = log.calls[-1]
        assert last.offset_us + last.duration_us <= root.offset_us + root.duration_us
        assert log.info["status"] == 200
        assert "disconnected" not in root.data

    @pytest.mark.anyio
    async def test_client_disconnect_is_recorded(self) -> None:
        """
        A client that disconnects during a streaming response: the log records
        ``disconnected: true`` and the chunks produced until then.
        """
        first_chunk_sent = anyio.Event()
        never = anyio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield await chunk(0)
            await never.wait()  # the stream stalls; the client gives up
            yield b"unreachable"

        async def endless(request: Request) -> Response:
            return StreamingResponse(body())

        app = Starlette(routes=[Route("/endless", endless)])
        app.add_middleware(TrackMiddleware)
        messages: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await first_chunk_sent.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                first_chunk_sent.set()

        scope = http_scope("/endless")
        scope["asgi"] = {"version": "3.0", "spec_version": "2.3"}
        with capture() as logs:
            with anyio.fail_after(10):
                await app(scope, receive, send)
        log = only(logs)
        assert log.calls[0].data == {"disconnected": True}
        assert functions(log) == ["GET /endless", "tests.integrations.test_asgi.chunk"]
        assert log.info["status"] == 200

    @pytest.mark.anyio
    async def test_send_failing_on_a_gone_client_is_recorded(self) -> None:
        """
        A server that raises OSError from ``send`` once the client is gone (ASGI spec
        2.4): the same exception reaches the server, the log records the error and
        ``disconnected: true``.
        """

        class ClientDisconnected(OSError):
            pass

        gone = ClientDisconnected()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                raise gone

        with capture() as logs:
            with pytest.raises(ClientDisconnected) as info:
                await TrackMiddleware(app)(http_scope("/gone"), receive_nothing, send)
        assert info.value is gone
        root = only(logs).calls[0]
        assert root.status == "error"
        assert root.data == {"disconnected": True}
        assert logs[0].info["status"] == 200

    @pytest.mark.anyio
    async def test_disconnect_after_the_response_ended_is_not_recorded(self) -> None:
        """
        Servers answer reads after the response with ``http.disconnect``; that is not
        the client going away and is not recorded.
        """

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            assert (await receive())["type"] == "http.disconnect"

        async def receive() -> Message:
            return {"type": "http.disconnect"}

        with capture() as logs:
            await TrackMiddleware(app)(http_scope("/x"), receive, discard)
        log = only(logs)
        assert log.calls[0].data == {}
        assert log.info["status"] == 204

    @pytest.mark.anyio
    async def test_plain_asgi_app_and_messages_pass_unchanged(self) -> None:
        """
        A bare ASGI app: every message reaches the server as the same object, in
        order and at once (nothing buffered); with no route to name it after, the
        root call is ``POST <unmatched>`` and the path is kept in info.
        """
        sent: list[Message] = []
        start: Message = {"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]}
        parts: list[Message] = [
            {"type": "http.response.body", "body": b"a", "more_body": True},
            {"type": "http.response.body", "body": b"b"},
        ]
        request: Message = {"type": "http.request", "body": b"payload", "more_body": False}

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            assert await receive() is request
            await send(start)
            for part in parts:
                await send(part)
                assert sent[-1] is part  # passed on at once, not buffered

        async def receive() -> Message:
            return request

        async def record(message: Message) -> None:
            sent.append(message)

        with capture() as logs:
            await TrackMiddleware(app)(http_scope("/plain", method="POST"), receive, record)
        assert sent == [start, *parts]
        assert all(a is b for a, b in zip(sent, [start, *parts], strict=True))
        log = only(logs)
        assert log.calls[0].function == "POST <unmatched>"
        assert log.info == {"method": "POST", "path": "/plain", "status": 201}

    @pytest.mark.anyio
    async def test_lifespan_and_other_scopes_pass_through(self) -> None:
        """
        ``lifespan`` scopes reach the app with the original receive and send, untracked.
        """
        seen: list[tuple[Any, Any]] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append((receive, send))
            await health_check_async()

        with capture() as logs:
            await TrackMiddleware(app)({"type": "lifespan"}, receive_nothing, discard)
        assert seen == [(receive_nothing, discard)]
        # The probe inside ran as its own log: the lifespan itself is not a request.
        assert functions(only(logs)) == ["tests.integrations.test_asgi.health_check_async"]

    @pytest.mark.anyio
    async def test_info_hook_adds_info_and_its_errors_are_swallowed(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        The ``info(scope)`` hook's items join the log's info; a hook that raises is
        counted and reported once, and the request is served and tracked as usual.
        """

        def hook(scope: Scope) -> dict[str, Any]:
            headers = dict(scope["headers"])
            if b"x-fail" in headers:
                raise LookupError("no tenant")
            return {"tenant": headers[b"x-tenant"].decode(), "route": scope["route"].name}

        app = starlette_app(info=hook)
        with caplog.at_level(logging.WARNING, logger="asynctrack"), capture() as logs:
            async with client(app) as c:
                await c.get("/items/1", headers={"x-tenant": "acme"})
                for _ in range(3):
                    assert (await c.get("/items/2", headers={"x-fail": "1"})).status_code == 200
        assert logs[0].info["tenant"] == "acme"
        assert logs[0].info["route"] == "item_endpoint"
        assert all("tenant" not in log.info and log.info["status"] == 200 for log in logs[1:])
        assert len(logs) == 4
        middleware = find_middleware(app)
        assert middleware.info_errors == 3
        assert middleware.internal_errors == 0
        warnings = [r for r in caplog.records if "info hook" in r.getMessage()]
        assert len(warnings) == 1
        assert "LookupError" in warnings[0].getMessage()

    @pytest.mark.anyio
    async def test_root_call_below_threshold_silences_the_request(self) -> None:
        """
        With the middleware's tracker set above its level nothing of the request is
        recorded, not even probed calls of trackers that would track.
        """
        asynctrack.get_tracker("tests.asgi.quiet").set_level("NONE")
        app = starlette_app(tracker="tests.asgi.quiet")
        with capture() as logs:
            async with client(app) as c:
                assert (await c.get("/items/1")).status_code == 200
        assert logs == []

    @pytest.mark.anyio
    async def test_untracked_when_nothing_is_configured(self) -> None:
        """
        Without configure() or capture() the middleware passes requests through.
        """
        app = starlette_app()
        async with client(app) as c:
            assert (await c.get("/items/4")).json() == {"item_id": 4}
            assert (await c.get("/stream")).text == "chunk0;chunk1;chunk2;"
        assert find_middleware(app).internal_errors == 0

    @pytest.mark.anyio
    async def test_custom_tracker_and_level(self) -> None:
        """
        A Tracker instance and a level are used for the root call (tracked when the
        tracker's threshold allows that level).
        """
        own = asynctrack.get_tracker("tests.asgi.own")
        own.set_level("INFO")
        app = starlette_app(tracker=own, level="INFO")
        with capture() as logs:
            async with client(app) as c:
                await c.get("/items/1")
        root = logs[0].calls[0]
        assert (root.tracker, root.level) == ("tests.asgi.own", "INFO")

    @pytest.mark.anyio
    async def test_requests_leave_no_cyclic_garbage(self) -> None:
        """
        Tracked requests (ok, failing, streamed, unmatched, with a query) leave nothing
        of asynctrack's that only the collector can free: the app is called directly,
        with the collector off and saving what it finds (issue #20).
        """
        app = starlette_app()
        sent: list[int] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        def scope(path: str, query: bytes = b"") -> Scope:
            return {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": query,
                "headers": [(b"host", b"testserver"), (b"x-user", b"u")],
                "client": ("127.0.0.1", 40000),
                "server": ("testserver", 80),
            }

        with capture() as logs, CyclicGarbage() as found:
            for i in range(10):
                await app(scope(f"/items/{i}", b"q=1&token=t"), receive, send)
                await app(scope(f"/echo/{i}"), receive, send)
                await app(scope("/stream"), receive, send)
                await app(scope("/nowhere"), receive, send)
                try:
                    await app(scope("/boom"), receive, send)
                except Boom:  # not bound to a name: that would be the test's own cycle
                    pass
        assert sent == [200, 200, 200, 404, 500] * 10
        assert len(logs) == 50
        assert found == []

    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            pytest.param({"tracker": 3}, TypeError, "tracker must be", id="tracker"),
            pytest.param({"exclude_paths": "/health"}, TypeError, "exclude_paths", id="str"),
            pytest.param({"exclude_paths": [b"/x"]}, TypeError, "exclude_paths", id="bytes"),
            pytest.param({"exclude_paths": ["health"]}, ValueError, "start with /", id="slash"),
            pytest.param({"exclude_paths": ["/a*/b"]}, ValueError, r"'\*'", id="star"),
            pytest.param({"info": "user"}, TypeError, "info must be", id="info"),
            pytest.param({"level": "LOUD"}, ValueError, "level", id="level"),
            pytest.param({"level": 2.5}, TypeError, "level", id="level-type"),
        ],
    )
    def test_bad_arguments_fail_at_construction(
        self, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """
        Bad arguments raise TypeError/ValueError naming the argument, at construction.
        """

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            pass

        with pytest.raises(error, match=match):
            TrackMiddleware(app, **options)
        with pytest.raises(TypeError, match="app must be"):
            TrackMiddleware("app")  # type: ignore[arg-type]


class TestWebSocket:
    @pytest.mark.anyio
    async def test_session_is_one_log(self) -> None:
        """
        A websocket session is one log: root ``WEBSOCKET /ws/{room}``, status 101,
        the messages' probed calls inside, message counts and the close code.
        """
        with capture() as logs:
            sent = await websocket_session(
                starlette_app(), "/ws/lobby", ["hi", "there", "bye"], query=b"token=abc"
            )
        assert [m.get("text") for m in sent if m["type"] == "websocket.send"] == ["HI", "THERE"]
        log = only(logs)
        assert (
            functions(log) == ["WEBSOCKET /ws/{room}"] + ["tests.integrations.test_asgi.shout"] * 2
        )
        root = log.calls[0]
        assert root.params == {"query": {"token": "[REDACTED]"}}
        assert root.data == {"messages_received": 3, "messages_sent": 2, "close_code": 1000}
        assert log.info["method"] == "WEBSOCKET"
        assert log.info["path"] == "/ws/lobby"
        assert log.info["status"] == 101

    @pytest.mark.anyio
    async def test_client_disconnect_is_recorded(self) -> None:
        """
        A session the client closes records ``disconnected`` and the client's code.
        """
        with capture() as logs:
            await websocket_session(starlette_app(), "/ws/lobby", ["hi", 4001])
        root = only(logs).calls[0]
        assert root.data == {
            "messages_received": 1,
            "messages_sent": 1,
            "close_code": 4001,
            "disconnected": True,
        }
        assert root.status == "ok"

    @pytest.mark.anyio
    async def test_excluded_websocket_is_not_tracked(self) -> None:
        """
        ``exclude_paths`` applies to websocket paths too.
        """
        app = starlette_app(exclude_paths=["/ws/*"])
        with capture() as logs:
            sent = await websocket_session(app, "/ws/lobby", ["hi", "bye"])
        assert [m.get("text") for m in sent if m["type"] == "websocket.send"] == ["HI"]
        assert logs == []

    @pytest.mark.anyio
    async def test_rejected_session_records_403_and_error(self) -> None:
        """
        A session closed before accept records status 403; one whose app raises
        before accepting records status 500 and the error.
        """

        async def reject(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "websocket.close", "code": 1008})

        async def crash(scope: Scope, receive: Receive, send: Send) -> None:
            raise Boom("ws")

        async def connect() -> Message:
            return {"type": "websocket.connect"}

        with capture() as logs:
            await TrackMiddleware(reject)(ws_scope("/ws/x"), connect, discard)
            with pytest.raises(Boom):
                await TrackMiddleware(crash)(ws_scope("/ws/y"), connect, discard)
        rejected, crashed = logs
        assert rejected.info["status"] == 403
        assert rejected.calls[0].data["close_code"] == 1008
        assert crashed.info["status"] == 500
        assert crashed.calls[0].status == "error"


class TestFastAPI:
    @pytest.mark.anyio
    async def test_dependencies_and_parameters_work_through_probes(self) -> None:
        """
        Path, query, header and body parameters, and dependencies (with yield), reach
        probed endpoints as without probes; the endpoints' params are recorded.
        """
        results = []
        for probed in (False, True):
            with capture() as logs:
                async with client(fastapi_app(probed=probed)) as c:
                    results.append(
                        [
                            (await c.get("/items/3?q=x&limit=2")).json(),
                            (
                                await c.put(
                                    "/items/4",
                                    json={"name": "hat", "price": 2.5, "tags": ["a"]},
                                    headers={"x-user": "alice"},
                                )
                            ).json(),
                            (await c.get("/api/v1/users/9?verbose=true")).json(),
                            (await c.get("/items/notanint")).status_code,
                            (await c.put("/items/4", json={"name": "hat"})).status_code,
                        ]
                    )
        plain, probed_results = results
        assert probed_results == plain
        assert plain[0] == {"item": {"item_id": 3}, "q": "x", "limit": 2}
        assert plain[1] == {"item_id": 4, "name": "hat", "total": 5.0, "user": "alice"}
        assert plain[3:] == [422, 422]
        read, update, user, bad_path, bad_body = logs
        assert functions(read) == [
            "GET /items/{item_id}",
            "tests.integrations.test_asgi.fastapi_app.<locals>.read_item",
            "tests.integrations.test_asgi.load",
        ]
        assert read.calls[1].params["item_id"] == 3
        assert read.calls[1].params["q"] == "x"
        # The body model is recorded by its representation (a repr unless registered).
        assert "hat" in str(update.calls[1].params["item"])
        assert update.calls[1].params["user"] == "alice"
        assert update.info["user"] == "alice"
        assert functions(user) == [
            "GET /api/v1/users/{user_id}",
            "tests.integrations.test_asgi.fastapi_app.<locals>.read_user",
        ]
        assert user.calls[1].params == {"user_id": 9, "verbose": True}
        assert bad_path.info["status"] == bad_body.info["status"] == 422
        assert len(bad_path.calls) == 1  # validation failed before the endpoint ran

    def test_openapi_schema_is_unchanged_by_probes(self) -> None:
        """
        ``app.openapi()`` is identical with and without probes on the endpoints.
        """
        assert fastapi_app(probed=True).openapi() == fastapi_app(probed=False).openapi()

    @pytest.mark.anyio
    async def test_exception_gives_error_and_unchanged_500(self) -> None:
        """
        An exception in a probed FastAPI endpoint: both the endpoint's call and the
        root call are errors, and the 500 response is FastAPI's own.
        """
        responses = []
        for probed in (False, True):
            with capture() as logs:
                async with client(fastapi_app(probed=probed), raise_app_exceptions=False) as c:
                    responses.append(await c.get("/fail"))
        assert responses[0].status_code == responses[1].status_code == 500
        assert responses[0].content == responses[1].content
        log = only(logs)
        assert [c.status for c in log.calls] == ["error", "error"]
        assert log.calls[0].error == "Boom: fastapi kaput"
        assert log.info["status"] == 500


# -- helpers -------------------------------------------------------------------------------


@tr.probe
async def health_check_async() -> None:
    await anyio.lowlevel.checkpoint()


def http_scope(path: str, *, method: str = "GET") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }


def ws_scope(path: str) -> Scope:
    return {**http_scope(path), "type": "websocket", "scheme": "ws"}


async def receive_nothing() -> Message:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def discard(message: Message) -> None:
    pass


async def websocket_session(
    app: Any, path: str, script: list[str | int], *, query: bytes = b""
) -> list[Message]:
    """
    Run one websocket session: the client sends each str of ``script`` as a text
    message and, for an int, disconnects with that code. Return what the app sent.
    """
    inbox: list[Message] = [{"type": "websocket.connect"}]
    for step in script:
        if isinstance(step, str):
            inbox.append({"type": "websocket.receive", "text": step})
        else:
            inbox.append({"type": "websocket.disconnect", "code": step})
    inbox.reverse()
    sent: list[Message] = []

    async def receive() -> Message:
        if inbox:
            return inbox.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = ws_scope(path)
    scope["query_string"] = query
    with anyio.fail_after(10):
        await app(scope, receive, send)
    return sent


def find_middleware(app: Starlette) -> TrackMiddleware:
    """
    Build the app's middleware stack if needed and return its TrackMiddleware.
    """
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer: Any = app.middleware_stack
    while not isinstance(layer, TrackMiddleware):
        layer = layer.app
    return layer
