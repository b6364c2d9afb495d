"""
TrackMiddleware never writes a secret from the URL and never turns paths into names
(#15): path parameters named like secrets are redacted in the recorded path, unmatched
requests share one name per method, and exclusions match the app-relative path.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

import asynctrack
from asynctrack import Log
from asynctrack.integrations.asgi import TrackMiddleware
from asynctrack.testing import capture
from tests.integrations.test_asgi import websocket_session

#: Parameter names on the default redaction list, and names that are not.
SECRET_NAMES = ["token", "password", "api_key", "reset_token", "session_id", "Secret", "authKey"]
PLAIN_NAMES = ["item_id", "room", "slug", "user", "org"]
#: Backends for the property tests, which drive the app with anyio.run.
BACKENDS = ["asyncio", "trio"]


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def client(app: Any, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def dump(logs: list[Log]) -> str:
    return json.dumps([log.to_dict() for log in logs], ensure_ascii=False)


@st.composite
def routes(draw: st.DrawFn) -> tuple[str, str, str, list[str], str]:
    """
    A route template, the request path, the expected recorded path, the secrets in
    the path, and the expected name (the template without convertors).
    """
    n = draw(st.integers(1, 4))
    names = draw(
        st.lists(st.sampled_from(SECRET_NAMES + PLAIN_NAMES), min_size=n, max_size=n, unique=True)
    )
    template, path, shown, name = [], [], [], []
    secrets: list[str] = []
    for i, param in enumerate(names):
        static = f"s{i}"
        template.append(static)
        path.append(static)
        shown.append(static)
        name.append(static)
        kind = draw(st.sampled_from(["str", "int", "uuid"]))
        if kind == "int":
            value = str(draw(st.integers(0, 10**6)))
        elif kind == "uuid":
            value = str(draw(st.uuids()))
        else:
            value = "v" + draw(st.text(alphabet="abcdefXYZ0123456789-_~.", min_size=4, max_size=20))
        secret = asynctrack.is_redacted(param)
        if secret:
            if kind != "uuid":  # a random uuid is distinct from everything already
                value = "S3CR3T" + value  # distinct from static segments and plain values
                kind = "str"
            secrets.append(value)
        template.append(f"{{{param}:{kind}}}")
        path.append(value)
        shown.append("[REDACTED]" if secret else value)
        name.append(f"{{{param}}}")
    return (
        "/" + "/".join(template),
        "/" + "/".join(path),
        "/" + "/".join(shown),
        secrets,
        "/" + "/".join(name),
    )


class TestPathSecrets:
    @pytest.mark.parametrize("backend", BACKENDS)
    @given(route=routes(), mounted=st.booleans(), root=st.sampled_from(["", "/api"]))
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_secret_path_parameters_never_reach_the_log(
        self, backend: str, route: tuple[str, str, str, list[str], str], mounted: bool, root: str
    ) -> None:
        """
        For any route whose parameters are named like secrets (under a mount, under a
        server root path or not), the log holds no secret value anywhere: the root call
        is named after the template and the recorded path has ``[REDACTED]`` in place
        of each secret segment, the other segments as requested.
        """
        template, path, shown, secrets, name = route
        if mounted:
            app = Starlette(routes=[Mount("/m", routes=[Route(template, ok)])])
            path, shown, name = "/m" + path, "/m" + shown, "/m" + name
        else:
            app = Starlette(routes=[Route(template, ok)])
        app.add_middleware(TrackMiddleware)

        async def main() -> list[Log]:
            with capture() as logs:
                async with client(app, root) as c:
                    query = "?token=" + secrets[0] if secrets else ""
                    r = await c.get(root + path + query)
                    assert r.status_code == 200, (template, path)
            return logs

        logs = anyio.run(main, backend=backend)
        assert len(logs) == 1
        log = logs[0]
        assert log.calls[0].function == "GET " + name
        assert log.info["path"] == root + shown
        text = dump(logs)
        for secret in secrets:
            assert secret not in text

    @pytest.mark.parametrize("backend", BACKENDS)
    @given(
        route=routes(),
        mounted=st.booleans(),
        variant=st.sampled_from(["trailing-slash", "encoded-slash", "no-trailing-slash"]),
    )
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_a_path_that_nearly_matches_a_secret_route_is_redacted(
        self, backend: str, route: tuple[str, str, str, list[str], str], mounted: bool, variant: str
    ) -> None:
        """
        A request that matches no route but nearly matches one whose parameters are
        named like secrets — a trailing slash added or missing (the router redirects
        it), an encoded ``/`` inside the secret — is named ``<unmatched>`` and its
        recorded path holds no secret value.
        """
        template, path, _, secrets, _ = route
        if variant == "no-trailing-slash":
            template += "/"
        elif variant == "trailing-slash":
            path += "/"
        elif "S3CR3T" in path:
            path = path.replace("S3CR3T", "S3CR3T%2F", 1)
        else:
            path += "/"
        routes_ = [Route(template, ok)]
        if mounted:
            app = Starlette(routes=[Mount("/m", routes=routes_)])
            path = "/m" + path
        else:
            app = Starlette(routes=routes_)
        app.add_middleware(TrackMiddleware)

        async def main() -> list[Log]:
            with capture() as logs:
                async with client(app) as c:
                    r = await c.get(path)
                    assert r.status_code in (307, 404), (template, path)
            return logs

        logs = anyio.run(main, backend=backend)
        text = dump(logs)
        assert "S3CR3T" not in text
        for secret in secrets:
            assert secret not in text

    @pytest.mark.anyio
    async def test_secret_parameter_of_a_mount(self) -> None:
        """
        A secret parameter of an enclosing mount (``/keys/{api_key}``) is redacted in
        the name and in the path.
        """
        app = Starlette(routes=[Mount("/keys/{api_key}", routes=[Route("/items/{n:int}", ok)])])
        app.add_middleware(TrackMiddleware)
        with capture() as logs:
            async with client(app) as c:
                assert (await c.get("/keys/AKIA-S3CR3T/items/4")).status_code == 200
        (log,) = logs
        assert log.calls[0].function == "GET /keys/[REDACTED]/items/{n}"
        assert log.info["path"] == "/keys/[REDACTED]/items/4"
        assert "S3CR3T" not in dump(logs)

    @pytest.mark.anyio
    async def test_websocket_path_secrets(self) -> None:
        """
        A websocket route's secret parameter is redacted too.
        """

        async def ws(websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.close()

        app = Starlette(routes=[WebSocketRoute("/live/{token}", ws)])
        app.add_middleware(TrackMiddleware)
        with capture() as logs:
            await websocket_session(app, "/live/S3CR3T-ws", [])
        (log,) = logs
        assert log.calls[0].function == "WEBSOCKET /live/{token}"
        assert log.info["path"] == "/live/[REDACTED]"
        assert "S3CR3T" not in dump(logs)

    @pytest.mark.anyio
    async def test_query_values_are_redacted_by_name(self) -> None:
        """
        The query string is recorded parsed, with the values of secret names redacted.
        """
        app = Starlette(routes=[Route("/r", ok)])
        app.add_middleware(TrackMiddleware)
        with capture() as logs:
            async with client(app) as c:
                await c.get("/r?access_token=S3CR3T&page=2")
        (log,) = logs
        assert log.calls[0].params == {"query": {"access_token": "[REDACTED]", "page": "2"}}
        assert "S3CR3T" not in dump(logs)


class TestUnmatched:
    @pytest.mark.parametrize("backend", BACKENDS)
    @given(
        paths=st.lists(
            st.text(alphabet="abcxyz0123456789-_~", min_size=1, max_size=30),
            min_size=1,
            max_size=30,
            unique=True,
        ),
        methods=st.lists(
            st.sampled_from(["GET", "POST", "DELETE", "PROPFIND", "X" * 300]), min_size=1
        ),
    )
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_unmatched_requests_get_one_name_per_method(
        self, backend: str, paths: list[str], methods: list[str]
    ) -> None:
        """
        However many distinct unmatched paths are requested, the root calls get one
        name per standard method (``OTHER`` for the rest); each path is in its info.
        """
        app = Starlette(routes=[Route("/known", ok)])
        app.add_middleware(TrackMiddleware)

        async def main() -> list[Log]:
            with capture() as logs:
                async with client(app) as c:
                    for i, p in enumerate(paths):
                        method = methods[i % len(methods)]
                        await c.request(method, f"/scan/{p}/wp-login.php")
            return logs

        logs = anyio.run(main, backend=backend)
        assert len(logs) == len(paths)
        names = {log.calls[0].function for log in logs}
        allowed = {f"{m} <unmatched>" for m in ("GET", "POST", "DELETE", "OTHER")}
        assert names <= allowed
        assert [log.info["path"] for log in logs] == [f"/scan/{p}/wp-login.php" for p in paths]

    @pytest.mark.anyio
    async def test_route_hook_names_requests_of_other_frameworks(self) -> None:
        """
        A bare ASGI app names its requests through the ``route`` hook; a failing hook
        is counted and the request is ``<unmatched>``.
        """

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        def route(scope: Scope) -> str | None:
            if scope["path"] == "/boom":
                raise LookupError("no")
            return "/users/{id}" if scope["path"].startswith("/users/") else None

        middleware = TrackMiddleware(app, route=route)
        with capture() as logs:
            async with client(middleware) as c:
                for p in ("/users/7", "/other", "/boom"):
                    await c.get(p)
        assert [log.calls[0].function for log in logs] == [
            "GET /users/{id}",
            "GET <unmatched>",
            "GET <unmatched>",
        ]
        assert middleware.info_errors == 1
        with pytest.raises(TypeError, match="route must be"):
            TrackMiddleware(app, route="users")  # type: ignore[arg-type]


class TestRootPath:
    @pytest.mark.anyio
    async def test_exclusions_and_names_use_the_app_relative_path(self) -> None:
        """
        Under a server root path (``uvicorn --root-path /api``), ``exclude_paths``
        matches the path relative to the app, as naming does; info keeps the full path.
        """

        async def health(request: Request) -> Response:
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/health", health), Route("/items/{n:int}", ok)])
        app.add_middleware(TrackMiddleware, exclude_paths=["/health"])
        with capture() as logs:
            async with client(app, "/api") as c:
                assert (await c.get("/api/health")).status_code == 200
                assert (await c.get("/api/items/3")).status_code == 200
        (log,) = logs
        assert log.calls[0].function == "GET /items/{n}"
        assert log.info["path"] == "/api/items/3"


def _redact_path_reference(path: str, template: str, secrets: list[str]) -> str:
    # The per-request parse that the per-template cache replaced (#20).
    from asynctrack.integrations._paths import PLACEHOLDER, redact_values

    segments = path.split("/")
    parts = template.split("/")
    if len(segments) == len(parts):
        for i, part in enumerate(parts):
            if any(asynctrack.is_redacted(m[1]) for m in PLACEHOLDER.finditer(part)):
                segments[i] = "[REDACTED]"
    return redact_values("/".join(segments), secrets)


_SEGMENT = st.one_of(
    st.sampled_from(["items", "a{b}", "{x:int}", "{", "}", "{}", "", "x{token}y{id}"]),
    st.builds("{{{}}}".format, st.sampled_from(SECRET_NAMES + PLAIN_NAMES)),
    st.builds("{{{}:path}}".format, st.sampled_from(SECRET_NAMES + PLAIN_NAMES)),
    st.text(st.sampled_from("ab{}:/"), max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(
    template=st.lists(_SEGMENT, max_size=5).map("/".join),
    path=st.lists(st.sampled_from(["", "a", "42", "s3cr3t", "x/y"]), max_size=6).map("/".join),
    secrets=st.lists(st.sampled_from(["s3cr3t", "42", "x/y"]), max_size=2),
)
def test_redact_path_cached_per_template_matches_the_per_request_parse(
    template: str, path: str, secrets: list[str]
) -> None:
    """
    Parsing a route template once and caching it (#20) redacts every path exactly as
    parsing the template on every request did, whatever the template's shape, and a
    second call (answered from the cache) gives the same result as the first.
    """
    from asynctrack.integrations._paths import redact_path

    expected = _redact_path_reference(path, template, secrets)
    assert redact_path(path, template, secrets) == expected
    assert redact_path(path, template, secrets) == expected
