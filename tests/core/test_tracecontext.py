"""
W3C trace context across services: ``traceparent`` parsing, the middlewares' remote
parents, ``TrackTransport`` (sync and async), and two services in one trace — in
process and under uvicorn, exported to an OTLP receiver.
"""

from __future__ import annotations

import contextvars
import functools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import asynctrack
from asynctrack import Log
from asynctrack._core.tracecontext import parse_traceparent
from asynctrack.integrations.asgi import TrackMiddleware
from asynctrack.integrations.httpx import TrackTransport
from asynctrack.integrations.wsgi import TrackMiddleware as WSGIMiddleware
from asynctrack.sinks._otlp.mapping import Mapper
from asynctrack.testing import capture
from tests.otlp_receiver import Receiver
from tests.reliability import _support as s

tr = asynctrack.get_tracker("svc")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
GOOD = f"00-{TRACE}-{SPAN}-01"


class TestParse:
    @pytest.mark.parametrize(
        "header",
        [
            pytest.param(GOOD, id="version-00"),
            pytest.param(GOOD.encode(), id="bytes"),
            pytest.param(f"  {GOOD} ", id="spaces"),
            pytest.param(f"01-{TRACE}-{SPAN}-00-extra", id="future-version-extra-field"),
        ],
    )
    def test_valid(self, header: str | bytes) -> None:
        """
        Valid headers give (trace id, parent span id).
        """
        assert parse_traceparent(header) == (TRACE, SPAN)

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param("", id="empty"),
            pytest.param(GOOD.upper(), id="upper-case"),
            pytest.param(f"ff-{TRACE}-{SPAN}-01", id="version-ff"),
            pytest.param(f"00-{'0' * 32}-{SPAN}-01", id="zero-trace"),
            pytest.param(f"00-{TRACE}-{'0' * 16}-01", id="zero-span"),
            pytest.param(GOOD + "-x", id="version-00-extra"),
            pytest.param(f"00_{TRACE}-{SPAN}-01", id="separator"),
            pytest.param(f"00-{TRACE[:-1]}g-{SPAN}-01", id="not-hex"),
            pytest.param(f"01-{TRACE}-{SPAN}-01x", id="future-version-glued"),
            pytest.param(b"\xff" * 60, id="not-ascii"),
            pytest.param(f"{GOOD},{GOOD}", id="two-joined"),
        ],
    )
    def test_malformed(self, header: str | bytes) -> None:
        """
        Malformed headers give None.
        """
        assert parse_traceparent(header) is None

    @settings(max_examples=500, deadline=None)
    @given(st.one_of(st.text(), st.binary()))
    def test_never_raises(self, header: str | bytes) -> None:
        """
        Any text or bytes parses to None or to two lowercase hex ids, never an error.
        """
        got = parse_traceparent(header)
        assert got is None or (len(got[0]) == 32 and len(got[1]) == 16)

    @settings(max_examples=200, deadline=None)
    @given(
        trace=st.binary(min_size=16, max_size=16).filter(any),
        span=st.binary(min_size=8, max_size=8).filter(any),
        flags=st.integers(0, 255),
    )
    def test_round_trip(self, trace: bytes, span: bytes, flags: int) -> None:
        """
        Every valid version-00 header parses back to its ids.
        """
        header = f"00-{trace.hex()}-{span.hex()}-{flags:02x}"
        assert parse_traceparent(header) == (trace.hex(), span.hex())


# -- two services in process ---------------------------------------------------------------


@tr.probe
async def lookup(item: int) -> int:
    return item * 2


class _InContext:
    """
    Await a coroutine with each of its steps run in ``ctx`` (asyncio and trio alike).
    """

    def __init__(self, coro: Any, ctx: contextvars.Context) -> None:
        self.coro, self.ctx = coro, ctx

    def __await__(self) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is not None:
                    step = self.ctx.run(self.coro.throw, error)
                else:
                    step = self.ctx.run(self.coro.send, value)
            except StopIteration as stop:
                return stop.value
            try:
                value, error = (yield step), None
            except BaseException as exc:
                value, error = None, exc


def separate_service(app: Any) -> Any:
    """
    An ASGI app served as if by another process: in a context of its own, so what the
    caller's context holds (its open call) is not visible to it.
    """

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        await _InContext(app(scope, receive, send), contextvars.Context())

    return serve


def service_b() -> Any:
    async def item(request: Request) -> Response:
        return JSONResponse({"value": await lookup(int(request.path_params["item"]))})

    app = Starlette(routes=[Route("/items/{item:int}", item)])
    app.add_middleware(TrackMiddleware)
    return separate_service(app)


def service_a(b: Any) -> Starlette:
    @tr.probe
    async def fetch(item: int) -> int:
        async with httpx.AsyncClient(
            transport=TrackTransport(httpx.ASGITransport(app=b)), base_url="http://b"
        ) as client:
            r = await client.get(f"/items/{item}?secret=1", headers={"x-req": "1"})
            return int(r.json()["value"])

    async def page(request: Request) -> Response:
        return JSONResponse({"value": await fetch(int(request.path_params["item"]))})

    app = Starlette(routes=[Route("/page/{item:int}", page)])
    app.add_middleware(TrackMiddleware)
    return app


def check_one_trace(a: Log, b: Log) -> None:
    """
    B's log is in A's trace, under A's request call; their OTLP spans are one tree.
    """
    http = next(c for c in a.calls if c.function == "http.GET")
    assert b.trace_id == a.trace_id
    assert b.remote_parent == http.span_id
    assert http.params["url"].endswith("/items/7")
    assert http.data["status"] == 200
    mapper = Mapper(resource={}, user_key=None, version="0")
    spans = mapper.spans(a) + mapper.spans(b)
    assert {span.trace_id.hex() for span in spans} == {a.trace_id}
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if not span.parent_span_id]
    assert len(roots) == 1 and roots[0].name == "GET /page/{item}"
    assert all(span.parent_span_id in ids for span in spans if span.parent_span_id)


class TestInProcess:
    @pytest.mark.anyio
    async def test_two_services_share_one_trace(self) -> None:
        """
        A calls B through TrackTransport: B's log has A's trace id and, as remote
        parent, the span of A's call that sent the request.
        """
        app = service_a(service_b())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://a"
        ) as client:
            with capture() as logs:
                r = await client.get("/page/7")
        assert r.json() == {"value": 14}
        a = next(log for log in logs if log.info["path"] == "/page/7")
        b = next(log for log in logs if log.info["path"] == "/items/7")
        check_one_trace(a, b)
        assert a.remote_parent is None

    @pytest.mark.anyio
    async def test_incoming_header_sets_trace_and_remote_parent(self) -> None:
        """
        A request arriving with a traceparent continues that trace; tracestate is
        kept in info; a malformed header is ignored and counted.
        """

        async def item(request: Request) -> Response:
            return JSONResponse({"value": await lookup(int(request.path_params["item"]))})

        mw = TrackMiddleware(Starlette(routes=[Route("/items/{item:int}", item)]))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://b"
        ) as client:
            with capture() as logs:
                await client.get("/items/1", headers={"traceparent": GOOD, "tracestate": "k=v"})
                await client.get("/items/2", headers={"traceparent": "00-bad"})
                await client.get("/items/3")
        first, bad, plain = logs
        assert first.trace_id == TRACE and first.remote_parent == SPAN
        assert first.info["tracestate"] == "k=v"
        assert bad.remote_parent is None and bad.trace_id != TRACE
        assert plain.remote_parent is None
        assert mw.malformed_traceparent == 1

    def test_wsgi_incoming_header(self) -> None:
        """
        The WSGI middleware reads traceparent from the environ like the ASGI one.
        """

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [])
            return [b"ok"]

        mw = WSGIMiddleware(app)
        with capture() as logs:
            for header in (GOOD, "nonsense"):
                env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_TRACEPARENT": header}
                body = mw(env, lambda *a: lambda data: None)
                list(body)
                body.close()  # type: ignore[attr-defined]
        assert logs[0].trace_id == TRACE and logs[0].remote_parent == SPAN
        assert logs[1].remote_parent is None
        assert mw.malformed_traceparent == 1


# -- TrackTransport ------------------------------------------------------------------------


def echo_headers(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={k: v for k, v in request.headers.items() if k.startswith("trace")}
    )


class TestTransport:
    def test_sync_request_inside_a_call_is_recorded_and_propagates(self) -> None:
        """
        A sync client's request inside a probed function is an ``http.GET`` call with
        the URL stripped of query and user-info, its status, and a traceparent naming
        that call.
        """
        client = httpx.Client(transport=TrackTransport(httpx.MockTransport(echo_headers)))

        @tr.probe
        def call_out() -> dict[str, str]:
            return dict(client.get("https://u:pw@api.example/v1/x?token=abc#f").json())

        with capture() as logs:
            sent = call_out()
        (log,) = logs
        http = log.calls[1]
        assert http.function == "http.GET" and http.parent == 0
        assert http.params == {"method": "GET", "url": "https://api.example/v1/x"}
        assert http.data == {"status": 200}
        assert sent == {"traceparent": f"00-{log.trace_id}-{http.span_id}-01"}

    def test_outside_a_call_nothing_is_added(self) -> None:
        """
        Outside any tracked call a request is neither recorded nor given headers.
        """
        client = httpx.Client(transport=TrackTransport(httpx.MockTransport(echo_headers)))
        with capture() as logs:
            assert client.get("http://x/").json() == {}
        assert logs == []

    def test_errors_are_recorded_and_propagate(self) -> None:
        """
        A transport error marks the request call as an error and reaches the caller
        unchanged; an existing traceparent is kept.
        """
        boom = httpx.ConnectError("refused")

        def fail(request: httpx.Request) -> httpx.Response:
            assert request.headers["traceparent"] == GOOD
            raise boom

        client = httpx.Client(transport=TrackTransport(httpx.MockTransport(fail)))

        @tr.probe
        def call_out() -> None:
            client.get("http://x/", headers={"traceparent": GOOD})

        with capture() as logs, pytest.raises(httpx.ConnectError) as caught:
            call_out()
        assert caught.value is boom
        http = logs[0].calls[1]
        assert http.status == "error" and http.error == "ConnectError: refused"

    @pytest.mark.anyio
    async def test_async_request_forwards_tracestate(self) -> None:
        """
        An async client's request carries the traceparent of its call and the
        tracestate the log's own request arrived with.
        """
        inner = httpx.MockTransport(echo_headers)
        client = httpx.AsyncClient(transport=TrackTransport(inner))

        async def app(scope: Any, receive: Any, send: Any) -> None:
            r = await client.get("http://down/")
            body = json.dumps(r.json()).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        front = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=TrackMiddleware(app)), base_url="http://a"
        )
        with capture() as logs:
            r = await front.get("/", headers={"traceparent": GOOD, "tracestate": "k=v"})
        (log,) = logs
        http = log.calls[1]
        assert r.json() == {"traceparent": f"00-{TRACE}-{http.span_id}-01", "tracestate": "k=v"}
        await client.aclose()
        await front.aclose()

    def test_bad_arguments(self) -> None:
        """
        Wrong argument types raise TypeError naming the argument.
        """
        with pytest.raises(TypeError, match="transport"):
            TrackTransport(3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="tracker"):
            TrackTransport(tracker=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="propagate"):
            TrackTransport(propagate="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="level"):
            TrackTransport(level="LOUD")


# -- two services under uvicorn, exported to an OTLP receiver -----------------------------

SERVICE = """
import contextlib
import os
import httpx
import asynctrack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from asynctrack.integrations.asgi import TrackMiddleware
from asynctrack.integrations.httpx import TrackTransport


@contextlib.asynccontextmanager
async def lifespan(app):
    # uvicorn ends with the signal it got (no exit hooks): shut down in the lifespan.
    async with asynctrack.tracking(
        sinks=[
            asynctrack.FileSink(os.environ["LOGS"]),
            asynctrack.OTLPSink(os.environ["OTLP"], service_name=os.environ["NAME"]),
        ],
        spill_dir=os.environ["SPILL"],
    ):
        yield
tr = asynctrack.get_tracker("svc")
client = httpx.AsyncClient(transport=TrackTransport(), base_url=os.environ.get("DOWN", "http://x"))

@tr.probe
async def fetch(item):
    r = await client.get(f"/items/{item}")
    return r.json()["value"]

@tr.probe
async def lookup(item):
    return item * 2

async def page(request: Request):
    return JSONResponse({"value": await fetch(request.path_params["item"])})

async def item(request: Request):
    return JSONResponse({"value": await lookup(request.path_params["item"])})

async def health(request: Request):
    return JSONResponse("ok")

app = Starlette(lifespan=lifespan, routes=[
    Route("/page/{item:int}", page),
    Route("/items/{item:int}", item),
    Route("/health", health),
])
app.add_middleware(TrackMiddleware, exclude_paths=["/health"])
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.mark.slow
class TestUvicorn:
    def test_two_services_one_trace_in_files_and_otlp(
        self, tmp_path: Path, receiver: Receiver
    ) -> None:
        """
        Two uvicorn services, A calling B over HTTP through TrackTransport: B's logs
        have A's trace ids and A's request calls as remote parents, and the OTLP
        export of both services shows one connected trace per request.
        """
        (tmp_path / "svc.py").write_text(SERVICE, encoding="utf-8")
        port_a, port_b = s.free_port(), s.free_port()
        servers = []
        try:
            for name, port in (("b", port_b), ("a", port_a)):
                env = s.env(
                    LOGS=str(tmp_path / f"{name}.jsonl"),
                    OTLP=receiver.endpoint,
                    NAME=f"service-{name}",
                    SPILL=str(tmp_path),
                    DOWN=f"http://127.0.0.1:{port_b}",
                )
                cmd = [sys.executable, "-m", "uvicorn", "svc:app", "--app-dir", str(tmp_path)]
                cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
                servers.append(
                    subprocess.Popen(
                        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    )
                )
                assert s.wait_for(functools.partial(_up, port), timeout=60), "not started"
            with httpx.Client(base_url=f"http://127.0.0.1:{port_a}", timeout=30) as c:
                for i in range(5):
                    assert c.get(f"/page/{i}").json() == {"value": 2 * i}
            for server in servers:
                server.send_signal(signal.SIGTERM)
            for server in servers:
                _, err = server.communicate(timeout=60)
                assert server.returncode in (0, -signal.SIGTERM), err[-3000:]
                assert "Traceback" not in err, err[-3000:]
        finally:
            for server in servers:
                s.kill(server)
        a_logs = list(asynctrack.read_logs(tmp_path / "a.jsonl"))
        b_logs = {log.trace_id: log for log in asynctrack.read_logs(tmp_path / "b.jsonl")}
        assert len(a_logs) == len(b_logs) == 5
        for a in a_logs:
            check_one_trace_by_id(a, b_logs[a.trace_id])
        spans = receiver.spans()
        assert len(spans) == sum(len(a.calls) + len(b_logs[a.trace_id].calls) for a in a_logs)
        services = {r["service.name"] for r in receiver.resources()}
        assert services == {"service-a", "service-b"}
        by_trace: dict[bytes, list[Any]] = {}
        for span in spans:
            by_trace.setdefault(span.trace_id, []).append(span)
        assert len(by_trace) == 5
        for group in by_trace.values():
            ids = {span.span_id for span in group}
            assert sum(1 for span in group if not span.parent_span_id) == 1
            assert all(span.parent_span_id in ids for span in group if span.parent_span_id)


def check_one_trace_by_id(a: Log, b: Log) -> None:
    http = next(c for c in a.calls if c.function == "http.GET")
    assert b.remote_parent == http.span_id
    assert b.calls[0].function == "GET /items/{item}"


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class TestCurrentSpan:
    def test_names_the_innermost_tracked_call(self) -> None:
        """
        ``current_span()`` is None outside tracked calls and inside silenced ones, and
        names the innermost tracked call (its span id and its log's trace id) inside.
        """
        seen: list[Any] = []

        @tr.probe
        def inner() -> None:
            seen.append(asynctrack.current_span())

        @tr.probe
        def outer() -> None:
            seen.append(asynctrack.current_span())
            inner()

        @tr.probe(level=asynctrack.NONE)
        def silenced() -> None:
            seen.append(asynctrack.current_span())

        assert asynctrack.current_span() is None
        with capture() as logs:
            outer()
            silenced()
        (log,) = logs
        outer_span, inner_span, silent = seen
        assert silent is None
        assert outer_span.trace_id == inner_span.trace_id == log.trace_id
        assert outer_span.span_id == log.calls[0].span_id
        assert inner_span.span_id == log.calls[1].span_id
        assert inner_span.traceparent == f"00-{log.trace_id}-{log.calls[1].span_id}-01"
        assert inner_span.tracestate is None
        assert log.calls[1].span_id in repr(inner_span)
