"""
The programs in ``examples/`` run and write the logs they promise.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

import asynctrack
from asynctrack import Log
from asynctrack.testing import capture

from .helpers import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path, timeout: float = 60) -> str:
    """
    Run ``examples/<name>`` with the test's interpreter; return its stdout.
    """
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def by_function(log: Log) -> collections.Counter[str]:
    return collections.Counter(call.function for call in log.calls)


@pytest.mark.slow
class TestScripts:
    def test_worker_writes_one_log_per_job(self, tmp_path: Path) -> None:
        """
        The asyncio worker service writes one log per job, each holding the job's own
        calls (including its concurrent subtasks and the thread it used).
        """
        out = tmp_path / "worker.jsonl"
        stdout = run_example("worker.py", str(out), "60", cwd=tmp_path)
        logs = list(asynctrack.read_logs(out))
        assert len(logs) == 60
        assert stdout.startswith("60 jobs done")
        job_ids = []
        failed = 0
        for log in logs:
            root = log.calls[0]
            assert root.function == "__main__.handle"
            job_ids.append(root.params["job"]["id"])
            assert set(log.info) == {"job_kind", "worker"}
            assert by_function(log) == {
                "__main__.handle": 1,
                "__main__.fetch": 2,
                "__main__.transform": 1,
                "__main__.store": 1,
            }
            assert all(c.depth == 1 for c in log.calls[1:])
            fetch_ids = {c.params["job_id"] for c in log.calls if c.function == "__main__.fetch"}
            assert fetch_ids == {root.params["job"]["id"]}
            if root.status == "error":
                failed += 1
                assert root.error is not None
                assert root.error.startswith("OSError: disk full")
        assert sorted(job_ids) == list(range(60))
        assert f"({failed} failed)" in stdout

    def test_threaded_script_joins_pool_threads_to_the_log(self, tmp_path: Path) -> None:
        """
        The threaded script writes one log per report; the downloads made in pool
        threads (through ``propagate``) are its children.
        """
        out = tmp_path / "threaded.jsonl"
        run_example("threaded.py", str(out), cwd=tmp_path)
        logs = list(asynctrack.read_logs(out))
        assert [log.info["report"] for log in logs] == ["daily", "weekly", "monthly"]
        for log in logs:
            root, *downloads = log.calls
            assert root.function == "__main__.build_report"
            assert root.params == {"name": log.info["report"], "pages": 10}
            assert root.data == {"failed": 1}
            assert len(downloads) == 10
            assert {c.depth for c in downloads} == {1}
            errors = [c for c in downloads if c.status == "error"]
            assert len(errors) == 1
            assert errors[0].params["url"].endswith("/7")

    def test_trio_program_tracks_nursery_children(self, tmp_path: Path) -> None:
        """
        The trio program writes one log per crawl with the nursery's tasks inside.
        """
        out = tmp_path / "trio.jsonl"
        run_example("trio_app.py", str(out), cwd=tmp_path)
        logs = list(asynctrack.read_logs(out))
        assert [log.info["site"] for log in logs] == ["a.example", "b.example"]
        for log in logs:
            assert by_function(log) == {
                "__main__.crawl": 1,
                "__main__.crawl_page": 4,
                "__main__.fetch": 4,
            }
            assert log.calls[0].data == {"pages": 3}
            fetches = [c for c in log.calls if c.function == "__main__.fetch"]
            assert {c.depth for c in fetches} == {2}
            assert [c.status for c in fetches].count("error") == 1
            skipped = [c for c in log.calls if c.data.get("skipped")]
            assert len(skipped) == 1

    def test_sql_own_tables_writes_and_reads_back(self, tmp_path: Path) -> None:
        """
        The own-tables example writes one log into ORM-declared tables, with the user in
        its own column, and reads it back through the sink.
        """
        stdout = run_example("sql_own_tables.py", cwd=tmp_path)
        assert stdout.splitlines() == ["alice __main__.checkout"]
        with sqlite3.connect(tmp_path / "own.db") as conn:
            rows = conn.execute("SELECT user_name FROM activity").fetchall()
            calls = conn.execute("SELECT function FROM activity_call").fetchall()
        assert rows == [("alice",)]
        assert calls == [("__main__.checkout",)]


def load_fastapi_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_app"] = module  # pydantic resolves annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fastapi_example() -> Iterator[ModuleType]:
    module = load_fastapi_example()
    yield module
    sys.modules.pop("fastapi_app", None)


class TestFastAPIExample:
    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_in_process(self, fastapi_example: ModuleType) -> None:
        """
        The example app, driven in-process: one log per request with the user, the
        decorated handlers inside, the failed payment recorded, /health not tracked.
        """
        transport = httpx.ASGITransport(app=fastapi_example.app, raise_app_exceptions=False)
        with capture() as logs:
            async with httpx.AsyncClient(transport=transport, base_url="http://shop") as c:
                alice = {"x-user": "alice"}
                assert (await c.get("/items/3", headers=alice)).json()["price"] == 4.5
                assert (await c.get("/items/999")).status_code == 404
                r = await c.post("/carts/7/items", json={"item_id": 90, "qty": 2}, headers=alice)
                assert r.json() == {"90": 2}
                r = await c.post("/carts/7/checkout", headers={**alice, "card-number": "4242"})
                assert r.status_code == 500
                assert (await c.get("/health")).json() == {"status": "ok"}
        item, missing, add, checkout = logs
        assert [c.function for c in item.calls] == [
            "GET /items/{item_id}",
            "fastapi_app.get_item",
            "fastapi_app.load_item",
        ]
        assert item.info == {
            "method": "GET",
            "path": "/items/3",
            "client": "127.0.0.1",
            "user": "alice",
            "status": 200,
        }
        assert missing.info["status"] == 404
        assert missing.calls[2].status == "error"  # load_item raised KeyError
        assert add.calls[1].data == {"cart_size": 1}
        assert checkout.info["status"] == 500
        assert [c.status for c in checkout.calls] == ["error", "error", "error"]
        assert checkout.calls[2].function == "fastapi_app.charge"
        assert checkout.calls[2].params == {"amount": 270.0}  # card_number left out
        assert checkout.calls[0].error == "RuntimeError: payment declined"

    @pytest.mark.slow
    def test_under_uvicorn_every_request_is_in_the_database(self, tmp_path: Path) -> None:
        """
        The example under uvicorn on a free port, hit with real HTTP requests, stopped
        with SIGTERM: every tracked request's log is in the SQLite database.
        """
        port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        expected = serve_and_hit(cmd, port, tmp_path)
        check_database(tmp_path / "track.db", expected)

    @pytest.mark.slow
    def test_under_gunicorn_with_uvicorn_workers(self, tmp_path: Path) -> None:
        """
        Two forked uvicorn workers under gunicorn (app preloaded in the master), each
        with its own pipeline writing to one SQLite database: after SIGTERM every
        tracked request's log is there, once.
        """
        port = free_port()
        cmd = [sys.executable, "-W", "ignore::DeprecationWarning", "-m", "gunicorn"]
        cmd += ["--workers", "2", "--worker-class", "uvicorn.workers.UvicornWorker"]
        cmd += ["--preload", "--chdir", str(EXAMPLES), "--bind", f"127.0.0.1:{port}"]
        cmd += ["fastapi_app:app"]
        expected = serve_and_hit(cmd, port, tmp_path)
        check_database(tmp_path / "track.db", expected)


def serve_and_hit(cmd: list[str], port: int, cwd: Path) -> list[tuple[str, int]]:
    """
    Start the example server, send real requests (a new connection each, so several
    workers share them), stop it with SIGTERM; return the (path, status) pairs sent.
    """
    env = {**os.environ, "ASYNCTRACK_EXAMPLE_DB": str(cwd / "track.db")}
    server = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    expected: list[tuple[str, int]] = []
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10, headers={"connection": "close"}) as c:
            wait_until_up(c, server)  # /health: excluded, never tracked
            for i in range(1, 41):
                r = c.get(f"/items/{i}", headers={"x-user": f"user{i % 3}"})
                expected.append((f"/items/{i}", r.status_code))
            for i in range(5):
                r = c.post("/carts/1/items", json={"item_id": i + 1})
                expected.append(("/carts/1/items", r.status_code))
            r = c.post("/carts/1/checkout", headers={"card-number": "4242"})
            expected.append(("/carts/1/checkout", r.status_code))
            r = c.get("/items/12345")
            expected.append(("/items/12345", r.status_code))
            for _ in range(3):
                assert c.get("/health").status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    text = output.decode(errors="replace")
    # uvicorn >= 0.29 re-raises the signal after a graceful shutdown.
    assert server.returncode in (0, -signal.SIGTERM), text
    assert "Application shutdown complete" in text, text
    assert "Traceback" not in text, text
    assert ("/items/40", 200) in expected
    assert ("/items/12345", 404) in expected
    return expected


def check_database(db: Path, expected: list[tuple[str, int]]) -> None:
    """
    Every request sent is one complete log in the database, with its handler's call.
    """
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, info, complete FROM track_logs").fetchall()
        calls = conn.execute("SELECT log_id, function FROM track_calls WHERE seq = 1").fetchall()
    found = sorted((json.loads(info)["path"], json.loads(info)["status"]) for _, info, _ in rows)
    assert found == sorted(expected)
    assert all(complete for _, _, complete in rows)
    handlers = collections.Counter(function for _, function in calls)
    assert handlers == {
        "fastapi_app.get_item": 41,
        "fastapi_app.add_to_cart": 5,
        "fastapi_app.checkout": 1,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    def up() -> bool:
        if server.poll() is not None:
            output = server.stdout.read().decode() if server.stdout else ""
            raise AssertionError(f"uvicorn exited early:\n{output}")
        try:
            return client.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    assert wait_for(up, 30, interval=0.1), "uvicorn did not start within 30 s"
