"""
Misuse gets a clear message, early (#14, section 7): ``Tracker.flush_sync``, a warning
when a middleware or ``flush()`` is used while nothing is configured, and a warning
when a log reaches ``max_calls_per_log``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

import asynctrack
from asynctrack import NONE
from asynctrack.integrations import asgi, wsgi
from asynctrack.testing import capture
from tests.conftest import Configure

tr = asynctrack.get_tracker("tests.misuse")


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "asynctrack" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


class TestTrackerFlushSync:
    def test_flush_sync_writes_like_the_module_function(self, configured: Configure) -> None:
        """
        ``Tracker.flush_sync()`` blocks until the logs completed before it are written.
        """

        @tr.probe
        def job() -> None: ...

        sink = asynctrack.MemorySink()
        configured(sink)
        job()
        result = tr.flush_sync(timeout=10)
        assert len(sink.logs) == 1 and result.written == {sink.name: 1}


class TestFlushWhileUnconfigured:
    def test_flush_sync_warns_once(self, caplog: pytest.LogCaptureFixture) -> None:
        """
        Flushing while nothing is configured warns once on the ``asynctrack`` logger,
        naming ``configure()`` and ``tracking()``; later flushes stay quiet.
        """
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            asynctrack.flush_sync()
            tr.flush_sync()
        (message,) = _warnings(caplog, "nothing is configured")
        assert "flush_sync()" in message
        assert "asynctrack.configure(" in message and "asynctrack.tracking(" in message

    @pytest.mark.anyio
    async def test_async_flush_warns_once(self, caplog: pytest.LogCaptureFixture) -> None:
        """
        ``await flush()`` while nothing is configured warns once, on asyncio and trio.
        """
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            await asynctrack.flush()
            await tr.flush()
        (message,) = _warnings(caplog, "nothing is configured")
        assert "asynctrack.flush()" in message

    def test_no_warning_while_capturing_or_configured(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        Inside ``capture()`` (which records without a pipeline) and once configured,
        flushing is silent.
        """
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            with capture():
                asynctrack.flush_sync()
            configured(asynctrack.MemorySink())
            asynctrack.flush_sync()
        assert _warnings(caplog, "nothing is configured") == []


def _http_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Any) -> None:
    pass


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [])
    return [b"ok"]


def _environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }


def _serve_wsgi(mw: wsgi.TrackMiddleware, path: str) -> None:
    body = mw(_environ(path), lambda *a: None)
    list(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()


class TestMiddlewareWhileUnconfigured:
    @pytest.mark.anyio
    async def test_asgi_warns_once_at_the_first_request(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        An ASGI middleware serving while nothing is configured warns once, at the first
        request (not when built: the app may configure before serving).
        """
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            mw = asgi.TrackMiddleware(_asgi_app)
            assert _warnings(caplog, "TrackMiddleware") == []
            await mw(_http_scope("/a"), _receive, _discard)
            await mw(_http_scope("/b"), _receive, _discard)
        (message,) = _warnings(caplog, "TrackMiddleware")
        assert "nothing is configured" in message
        assert "asynctrack.configure(" in message and "asynctrack.tracking(" in message

    @pytest.mark.anyio
    async def test_asgi_silent_when_configured_or_level_none(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        No warning while capturing, nor for a tracker deliberately set to NONE.
        """
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            with capture() as logs:
                await asgi.TrackMiddleware(_asgi_app)(_http_scope("/a"), _receive, _discard)
                silenced = asynctrack.get_tracker("tests.misuse.silenced")
                silenced.set_level(NONE)
                mw = asgi.TrackMiddleware(_asgi_app, tracker=silenced)
                await mw(_http_scope("/b"), _receive, _discard)
        assert len(logs) == 1
        assert _warnings(caplog, "TrackMiddleware") == []

    def test_wsgi_warns_once_at_the_first_request(self, caplog: pytest.LogCaptureFixture) -> None:
        """
        A WSGI middleware serving while nothing is configured warns once; with capture
        it is silent.
        """
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            mw = wsgi.TrackMiddleware(_wsgi_app)
            _serve_wsgi(mw, "/a")
            _serve_wsgi(mw, "/b")
            with capture() as logs:
                _serve_wsgi(wsgi.TrackMiddleware(_wsgi_app), "/c")
        (message,) = _warnings(caplog, "TrackMiddleware")
        assert "asynctrack.configure(" in message
        assert len(logs) == 1


class TestMaxCallsWarning:
    def test_full_log_warns_once_naming_the_root(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        A log reaching ``max_calls_per_log`` warns once per root function, naming it;
        the calls beyond the limit are still counted.
        """

        @tr.probe
        def leaf() -> None: ...

        @tr.probe
        def main_loop(n: int) -> None:
            for _ in range(n):
                leaf()

        @tr.probe
        def other_root() -> None:
            for _ in range(10):
                leaf()

        sink = asynctrack.MemorySink()
        configured(sink, max_calls_per_log=4)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            main_loop(10)
            main_loop(10)
            other_root()
        asynctrack.flush_sync()
        messages = _warnings(caplog, "max_calls_per_log")
        assert len(messages) == 2
        assert "main_loop" in messages[0] and "other_root" in messages[1]
        assert "(4 calls)" in messages[0]
        assert [log.dropped_calls for log in sink.logs] == [7, 7, 7]

    def test_generators_and_call_blocks_warn_too(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        The general path (generators, ``Tracker.call`` blocks) warns like the generated
        wrappers.
        """

        @tr.probe
        def numbers() -> Iterator[int]:
            yield 1

        configured(asynctrack.MemorySink(), max_calls_per_log=2)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            with tr.call("worker loop"):
                for _ in range(5):
                    list(numbers())
        (message,) = _warnings(caplog, "max_calls_per_log")
        assert "worker loop" in message

    def test_warnings_stay_bounded_for_many_roots(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        Root names can come from requests (a raw path): however many distinct roots
        reach the limit, the warnings and the memory behind "once" stay bounded.
        """
        from asynctrack._core import selfwarn

        @tr.probe
        def leaf() -> None: ...

        configured(asynctrack.MemorySink(), max_calls_per_log=1)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            for i in range(400):
                with tr.call(f"GET /{i}" + "x" * 1000):
                    leaf()
        messages = _warnings(caplog, "max_calls_per_log")
        assert 250 <= len(messages) <= selfwarn._ONCE_MAX + 1
        assert len(selfwarn._once) <= selfwarn._ONCE_MAX
        assert max(len(m) for m in messages) < 1000
