"""
SIGTERM under load (issue #7, item 3): the FastAPI example under uvicorn and under
gunicorn with four uvicorn workers, stopped while requests keep coming: every request
answered before the signal has its log in the database, and the exit is prompt.
"""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from . import _support as s

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXIT_TIMEOUT = 5.0  # the default exit_timeout, used by the example


class Load:
    """
    Client threads sending GET /items/<n> with a unique n each, a new connection per
    request (so gunicorn's workers share them), recording when each answer arrived.
    """

    def __init__(self, port: int, threads: int = 6) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.numbers = itertools.count(1)
        self.answers: list[tuple[float, str, int]] = []
        self.errors = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10, headers={"connection": "close"}) as c:
            while not self.stop.is_set():
                path = f"/items/{next(self.numbers)}"
                try:
                    r = c.get(path, headers={"x-user": "load"})
                except httpx.HTTPError:
                    self.errors += 1
                    if self.errors > 50:
                        return
                    time.sleep(0.01)
                    continue
                self.answers.append((time.monotonic(), path, r.status_code))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def wait_until_up(port: int, server: subprocess.Popen[str]) -> None:
    def up() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"the server exited early: {server.communicate()[1][-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    assert s.wait_for(up, 60, interval=0.1), "the server did not start within 60 s"


def run_under_load(cmd: list[str], port: int, db: Path) -> tuple[list[tuple[str, int]], float]:
    """
    Start the server, load it for a while, SIGTERM it mid-load; return the answers
    received before the signal and the seconds from the signal to the exit.
    """
    server = subprocess.Popen(
        cmd,
        cwd=db.parent,
        env=s.env(ASYNCTRACK_EXAMPLE_DB=str(db)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_up(port, server)
        with Load(port) as load:
            s.wait_for(lambda: len(load.answers) >= 600, timeout=60)
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            try:
                _, err = server.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                raise AssertionError("the server did not exit within 60 s") from None
            exit_time = time.monotonic() - signalled
    finally:
        s.kill(server)
    assert server.returncode in (0, -signal.SIGTERM), err[-3000:]
    assert "Traceback" not in err and "asynctrack:" not in err, err[-3000:]
    before = [(path, status) for t, path, status in load.answers if t < signalled]
    s.figure("sigterm", cmd=cmd[3:6], exit_s=exit_time, before=len(before), all=len(load.answers))
    assert len(before) >= 600
    return before, exit_time


def logged(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, info, complete FROM track_logs").fetchall()
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "a log was written twice"
    assert all(row[2] for row in rows)
    return [(json.loads(info)["path"], json.loads(info)["status"]) for _, info, _ in rows]


class TestSigtermUnderLoad:
    def test_uvicorn(self, tmp_path: Path) -> None:
        """
        uvicorn, SIGTERM under load: every request answered before the signal is in the
        database once, and the server exits within exit_timeout + 1 s.
        """
        port = s.free_port()
        cmd = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        db = tmp_path / "track.db"
        before, exit_time = run_under_load(cmd, port, db)
        rows = logged(db)
        assert set(before) <= set(rows), f"{len(set(before) - set(rows))} answered logs lost"
        assert exit_time <= EXIT_TIMEOUT + 1.0, f"exit took {exit_time:.2f} s"

    def test_gunicorn_with_four_uvicorn_workers(self, tmp_path: Path) -> None:
        """
        gunicorn -k uvicorn.workers.UvicornWorker -w 4, SIGTERM under load: each worker
        flushes its own pipeline into the shared SQLite file; every request answered
        before the signal is there once; the master exits within exit_timeout + 1 s.
        """
        port = s.free_port()
        cmd = [sys.executable, "-W", "ignore::DeprecationWarning", "-m", "gunicorn"]
        cmd += ["-k", "uvicorn.workers.UvicornWorker", "-w", "4", "--chdir", str(EXAMPLES)]
        cmd += ["--bind", f"127.0.0.1:{port}", "fastapi_app:app"]
        db = tmp_path / "track.db"
        before, exit_time = run_under_load(cmd, port, db)
        rows = logged(db)
        assert set(before) <= set(rows), f"{len(set(before) - set(rows))} answered logs lost"
        assert exit_time <= EXIT_TIMEOUT + 1.0, f"exit took {exit_time:.2f} s"
