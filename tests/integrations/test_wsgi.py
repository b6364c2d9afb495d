"""
WSGI TrackMiddleware: one log per request, with Flask's test client, plain WSGI apps
and a real server (gunicorn sync workers, stopped by SIGTERM).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

import asynctrack
from asynctrack import Log
from asynctrack.integrations.wsgi import TrackMiddleware
from asynctrack.testing import capture
from tests.reliability import _support as s

tr = asynctrack.get_tracker("tests.wsgi")


class Boom(Exception):
    pass


@tr.probe
def load(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@tr.probe
def chunk(i: int) -> bytes:
    return f"chunk{i};".encode()


@tr.probe
def health_check() -> str:
    return "ok"


def only(logs: list[Log]) -> Log:
    assert len(logs) == 1, [log.to_dict() for log in logs]
    return logs[0]


# The test client closes a response only when told to; buffered=True reads the body
# and closes it like a server does, which is when the request's log completes.
def flask_app(**options: Any) -> Flask:
    app = Flask("wsgi_test")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        asynctrack.add_info("user", request.headers.get("x-user", "anon"))
        return load(item_id)

    @app.get("/boom")
    def boom() -> Any:
        raise Boom("kaput")

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[bytes]:
            for i in range(3):
                yield chunk(i)

        return Response(body(), mimetype="text/plain")

    @app.get("/health")
    def health() -> str:
        return health_check()

    @app.get("/reset-password/<token>")
    def reset(token: str) -> str:
        return "reset"

    app.wsgi_app = TrackMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


class TestFlask:
    def test_one_log_per_request_with_route_template_and_info(self) -> None:
        """
        A Flask request is one log: the root call is named after Flask's url rule,
        probed view code joins it, and info has method, path, status and client.
        """
        with capture() as logs:
            r = (
                flask_app()
                .test_client()
                .get("/items/7?page=2&token=x", headers={"x-user": "al"}, buffered=True)
            )
        assert r.status_code == 200
        log = only(logs)
        assert [c.function for c in log.calls] == [
            "GET /items/<int:item_id>",
            "tests.integrations.test_wsgi.load",
        ]
        assert log.calls[1].depth == 1 and log.calls[1].params == {"item_id": 7}
        assert log.calls[0].params == {"query": {"page": "2", "token": "[REDACTED]"}}
        assert log.info == {
            "method": "GET",
            "path": "/items/7",
            "client": "127.0.0.1",
            "status": 200,
            "user": "al",
        }

    def test_error_is_recorded_and_the_500_is_unchanged(self) -> None:
        """
        An exception in a view marks the root call as an error; Flask's own 500 answer
        reaches the client unchanged and the log says status 500.
        """
        with capture() as logs:
            r = flask_app().test_client().get("/boom", buffered=True)
        assert r.status_code == 500
        log = only(logs)
        assert log.info["status"] == 500
        assert log.calls[0].function == "GET /boom"

    def test_streaming_body_is_tracked_until_it_ends(self) -> None:
        """
        Calls made while the server reads a streaming body join the request's log,
        which completes only when the body ended.
        """
        with capture() as logs:
            r = flask_app().test_client().get("/stream", buffered=True)
        assert r.data == b"chunk0;chunk1;chunk2;"
        log = only(logs)
        assert [c.function for c in log.calls][1:] == ["tests.integrations.test_wsgi.chunk"] * 3
        assert all(c.depth == 1 for c in log.calls[1:])

    def test_unmatched_and_secret_paths(self) -> None:
        """
        A request matching no route is named ``GET <unmatched>`` (one name, whatever
        the path), with its path in info; a path parameter named like a secret is
        redacted in the recorded path.
        """
        with capture() as logs:
            client = flask_app().test_client()
            assert client.get("/scan/1234/wp-login.php", buffered=True).status_code == 404
            assert client.get("/reset-password/S3CR3T", buffered=True).data == b"reset"
        missing, reset = logs
        assert missing.calls[0].function == "GET <unmatched>"
        assert missing.info["path"] == "/scan/1234/wp-login.php"
        assert missing.info["status"] == 404
        assert reset.calls[0].function == "GET /reset-password/<token>"
        assert reset.info["path"] == "/reset-password/[REDACTED]"
        assert "S3CR3T" not in str(reset.to_dict())

    def test_excluded_path_records_nothing(self) -> None:
        """
        An excluded path records no log, not even for probed calls beneath it.
        """
        with capture() as logs:
            r = flask_app(exclude_paths=["/health"]).test_client().get("/health", buffered=True)
        assert r.data == b"ok"
        assert logs == []

    def test_info_hook_errors_are_counted_not_raised(self) -> None:
        """
        The info hook's items join the log's info; a failing hook is counted and the
        request is answered normally.
        """
        seen: list[str] = []

        def hook(environ: dict[str, Any]) -> dict[str, Any]:
            seen.append(environ["PATH_INFO"])
            if len(seen) > 1:
                raise RuntimeError("hook failed")
            return {"tenant": "acme"}

        app = flask_app(info=hook)
        with capture() as logs:
            client = app.test_client()
            assert client.get("/items/1", buffered=True).status_code == 200
            assert client.get("/items/2", buffered=True).status_code == 200
        assert logs[0].info["tenant"] == "acme"
        assert "tenant" not in logs[1].info
        assert isinstance(app.wsgi_app, TrackMiddleware)
        assert app.wsgi_app.info_errors == 1

    def test_untracked_when_nothing_is_configured(self) -> None:
        """
        Without configure() or capture(), requests pass straight through.
        """
        r = flask_app().test_client().get("/items/3", buffered=True)
        assert r.status_code == 200

    def test_concurrent_requests_in_threads_do_not_cross_talk(self) -> None:
        """
        Requests served in parallel threads each get their own log with only their calls.
        """
        app = flask_app()
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def one(i: int) -> None:
            client = app.test_client()
            barrier.wait()
            r = client.get(f"/items/{i}", headers={"x-user": f"u{i}"}, buffered=True)
            statuses.append(r.status_code)

        with capture() as logs:
            threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert statuses == [200] * 8
        assert len(logs) == 8
        for log in logs:
            i = log.calls[1].params["item_id"]
            assert log.info["user"] == f"u{i}" and log.info["path"] == f"/items/{i}"
            assert len(log.calls) == 2


def environ(path: str = "/", method: str = "GET", query: str = "") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": "10.0.0.1",
    }


def start_response(*args: Any) -> Any:
    return lambda data: None


class ClosingBody:
    """
    A WSGI body that records whether it was closed and in which log it was read.
    """

    def __init__(self, parts: list[bytes], fail_at: int | None = None) -> None:
        self.parts = parts
        self.fail_at = fail_at
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for i, part in enumerate(self.parts):
            if i == self.fail_at:
                raise Boom("body failed")
            yield chunk(i) + part

    def close(self) -> None:
        self.closed = True


class TestPlainWSGI:
    def make(self, body: Iterable[bytes]) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("201 Created", [("content-type", "text/plain")])
            return body

        return TrackMiddleware(app)

    def test_body_closed_early_is_a_disconnect_and_the_thread_context_is_clean(self) -> None:
        """
        A server closing the body before its end records ``disconnected``; the
        application's close() is called; nothing of the request stays in the calling
        thread's context (a probe called afterwards opens a log of its own).
        """
        body = ClosingBody([b"a", b"b", b"c"])
        mw = self.make(body)
        with capture() as logs:
            result = mw(environ("/x"), start_response)
            it = iter(result)
            assert next(it) == b"chunk0;a"
            health_check()  # the request's call is not current here
            result.close()
        assert body.closed
        assert [log.calls[0].function for log in logs] == [
            "tests.integrations.test_wsgi.health_check",
            "GET <unmatched>",
        ]
        log = logs[1]
        assert log.calls[0].data == {"disconnected": True}
        assert log.info["status"] == 201

    def test_error_while_reading_the_body_propagates_and_is_recorded(self) -> None:
        """
        An exception raised by the body while the server reads it is the same object
        the server sees, and the root call is an error.
        """
        body = ClosingBody([b"a", b"b"], fail_at=1)
        mw = self.make(body)
        with capture() as logs:
            result = mw(environ("/y", "POST"), start_response)
            with pytest.raises(Boom, match="body failed"):
                list(result)
            result.close()
        log = only(logs)
        assert log.calls[0].status == "error" and log.calls[0].error == "Boom: body failed"
        assert log.info["method"] == "POST"

    def test_app_raising_before_responding_is_a_500(self) -> None:
        """
        An application raising before start_response gives status 500 in the log and
        the exception propagates as the same object.
        """
        err = Boom("early")

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            raise err

        with capture() as logs:
            with pytest.raises(Boom) as caught:
                TrackMiddleware(app)(environ("/z"), start_response)
        assert caught.value is err
        log = only(logs)
        assert log.info["status"] == 500 and log.calls[0].status == "error"

    def test_route_hook_names_requests(self) -> None:
        """
        The ``route`` hook names requests of frameworks that do not expose their
        route; a failing hook is counted and the request is ``<unmatched>``.
        """

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            return [b"ok"]

        def route(environ: dict[str, Any]) -> str | None:
            if environ["PATH_INFO"] == "/fail":
                raise RuntimeError("no")
            return "/users/{id}" if environ["PATH_INFO"].startswith("/users/") else None

        mw = TrackMiddleware(app, route=route)
        with capture() as logs:
            for path in ("/users/7", "/other", "/fail"):
                body = mw(environ(path), start_response)
                list(body)
                body.close()  # type: ignore[attr-defined]
        names = [log.calls[0].function for log in logs]
        assert names == ["GET /users/{id}", "GET <unmatched>", "GET <unmatched>"]
        assert mw.info_errors == 1

    def test_bad_arguments_fail_at_construction(self) -> None:
        """
        Wrong argument types raise TypeError naming the argument.
        """
        with pytest.raises(TypeError, match="app"):
            TrackMiddleware(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="info"):
            TrackMiddleware(lambda e, s: [], info=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="level"):
            TrackMiddleware(lambda e, s: [], level="LOUD")
        with pytest.raises(TypeError, match="route"):
            TrackMiddleware(lambda e, s: [], route="x")  # type: ignore[arg-type]


GUNICORN_APP = """
import os, threading, time
import asynctrack
from flask import Flask
from asynctrack.integrations.wsgi import TrackMiddleware

# One file per worker process.
asynctrack.configure(sinks=[asynctrack.FileSink({path!r} + f"/track-{{os.getpid()}}.jsonl")])
tr = asynctrack.get_tracker("svc")

@tr.probe
def work(n):
    return n * 2

app = Flask("svc")

@app.get("/items/<int:n>")
def item(n):
    return {{"n": work(n)}}

@app.get("/slow")
def slow():
    open({marker!r}, "w").close()
    time.sleep(1.0)
    return {{"slow": work(0)}}

@app.get("/health")
def health():
    return "ok"

app.wsgi_app = TrackMiddleware(app.wsgi_app, exclude_paths=["/health"])
"""


@pytest.mark.slow
class TestGunicorn:
    def test_every_request_is_written_after_sigterm(self, tmp_path: Path) -> None:
        """
        Under gunicorn with two sync workers, every answered request — including one
        still running when SIGTERM arrives — has exactly one log in the file.
        """
        path = tmp_path / "logs"
        path.mkdir()
        marker = tmp_path / "slow-started"
        (tmp_path / "svc.py").write_text(
            GUNICORN_APP.format(path=str(path), marker=str(marker)), encoding="utf-8"
        )
        port = s.free_port()
        cmd = [sys.executable, "-m", "gunicorn", "-k", "sync", "-w", "2"]
        cmd += ["--chdir", str(tmp_path), "--bind", f"127.0.0.1:{port}", "svc:app"]
        server = subprocess.Popen(
            cmd, env=s.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            assert s.wait_for(lambda: _up(base), timeout=60), "gunicorn did not start"
            with httpx.Client(base_url=base, timeout=30) as client:
                for n in range(40):
                    assert client.get(f"/items/{n}").json() == {"n": 2 * n}
            slow: list[httpx.Response] = []
            t = threading.Thread(target=lambda: slow.append(httpx.get(base + "/slow", timeout=30)))
            t.start()
            assert s.wait_for(marker.exists, timeout=30)
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=60)
            t.join(30)
        finally:
            s.kill(server)
        assert server.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert slow and slow[0].status_code == 200
        logs = list(asynctrack.read_logs(path / "track-*.jsonl"))
        ids = [log.id for log in logs]
        assert len(ids) == len(set(ids)) == 41
        paths = sorted(log.info["path"] for log in logs)
        assert paths == sorted([f"/items/{n}" for n in range(40)] + ["/slow"])
        assert all(log.complete and log.calls[1].function == "svc.work" for log in logs)
        assert {log.calls[0].function for log in logs} == {"GET /items/<int:n>", "GET /slow"}


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
