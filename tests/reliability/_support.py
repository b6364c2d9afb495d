"""
Shared tools of the reliability suite: running scripts in subprocesses, fault sinks,
reading what they wrote, and starting/stopping the PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# Re-exported: the reliability tests call s.wait_for.
from ..helpers import wait_for as wait_for

#: Stopping a shared database server is opt-in (other engineers' tests may use it).
ALLOW_SERVER_STOP = (
    os.environ.get("ASYNCTRACK_REQUIRE_SERVERS") == "1"
    or os.environ.get("ASYNCTRACK_ALLOW_SERVER_STOP") == "1"
)

#: Code every script starts with: a tracker with two probed functions and fault sinks.
PRELUDE = textwrap.dedent(
    '''
    from __future__ import annotations

    import asyncio, json, os, signal, sys, threading, time
    from pathlib import Path

    import asynctrack

    tr = asynctrack.get_tracker("rel")


    @tr.probe
    def work(i, payload=None):
        return leaf(i)


    @tr.probe
    def leaf(i):
        return i


    class FailingSink(asynctrack.Sink):
        """Always fails: every batch ends in the spill file."""

        def __init__(self, name):
            self._name = name

        @property
        def name(self):
            return self._name

        async def write(self, logs):
            raise ConnectionError("injected outage")


    class FileNamed(asynctrack.FileSink):
        """A FileSink with a chosen name (the name selects the spill file)."""

        def __init__(self, path, name, **kw):
            super().__init__(path, **kw)
            self._name = name

        @property
        def name(self):
            return self._name


    def emit(text):
        print(text, flush=True)


    def wait_for(predicate, timeout, interval=0.02):
        """Poll predicate() until true or timeout seconds pass; return its last value."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()) and time.monotonic() < deadline:
            time.sleep(interval)
        return bool(value)
    '''
)


def script(tmp_path: Path, source: str, name: str = "script.py") -> Path:
    """
    Write ``PRELUDE + source`` to a file in ``tmp_path`` and return its path.
    """
    path = tmp_path / name
    path.write_text(PRELUDE + "\n" + textwrap.dedent(source), encoding="utf-8")
    return path


def env(**extra: str) -> dict[str, str]:
    """
    The environment of a script: this one, without ASYNCTRACK_* options, plus ``extra``.
    """
    out = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCTRACK_")}
    out["PYTHONUNBUFFERED"] = "1"
    out.update(extra)
    return out


def run(
    path: Path, *args: str, timeout: float = 60, cwd: Path | None = None, **env_extra: str
) -> subprocess.CompletedProcess[str]:
    """
    Run a script with this interpreter (killed after ``timeout`` seconds).
    """
    return subprocess.run(
        [sys.executable, str(path), *args],
        cwd=cwd or path.parent,
        env=env(**env_extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(
    path: Path, *args: str, cwd: Path | None = None, **env_extra: str
) -> subprocess.Popen[str]:
    """
    Start a script with this interpreter; its stdout is a pipe of text lines.
    """
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        cwd=cwd or path.parent,
        env=env(**env_extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 30) -> list[str]:
    """
    Read the process's stdout lines until one starts with ``marker``; return them all.

    Raises:
        AssertionError: the process ended or the time ran out first.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    buf = _PENDING.pop(proc.pid, b"")
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.startswith(marker):
                _PENDING[proc.pid] = buf
                return lines
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    proc.poll()
    raise AssertionError(
        f"no {marker!r} from the script (exit code {proc.returncode}); stdout={lines!r}"
    )


_PENDING: dict[int, bytes] = {}


def stop(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30
) -> tuple[float, str, str]:
    """
    Send ``sig`` and wait for the exit; return (seconds to exit, stdout, stderr).
    """
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        message = f"the process did not exit within {timeout} s: {err[-3000:]}"
        raise AssertionError(message) from None
    return time.monotonic() - t0, out, err


def kill(proc: subprocess.Popen[str]) -> None:
    """
    Make sure a started process is gone (for ``finally`` blocks).
    """
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def jsonl_ids(path: Path) -> list[str]:
    """
    The ids of the logs in a JSON-lines file (every line must parse).
    """
    import json

    ids = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line:
            ids.append(json.loads(line)["id"])
    return ids


def sqlite_ids(db: Path, prefix: str = "track_") -> list[str]:
    """
    The ids of the logs in a SQLite database written by SQLSink.
    """
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM {prefix}logs")]


def free_port() -> int:
    """
    A TCP port nobody listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the PostgreSQL server ------------------------------------------------------------------


def pg_cluster(action: str) -> None:
    """
    ``pg_ctlcluster <version> main <action>`` (start or stop), bypassing systemd.
    """
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        timeout=120,
        capture_output=True,
    )


def pg_accepting(host: str = "127.0.0.1", port: int = 5432) -> bool:
    """
    Whether PostgreSQL accepts TCP connections.
    """
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_server_stop() -> None:
    """
    Skip unless stopping the shared database server was allowed.
    """
    if not ALLOW_SERVER_STOP:
        pytest.skip("stopping a database server needs ASYNCTRACK_ALLOW_SERVER_STOP=1")


def lines_of(path: Path) -> Sequence[str]:
    """
    The lines of a text file, split on ``\\n`` only.
    """
    return [x for x in path.read_text(encoding="utf-8").split("\n") if x]


def figure(test: str, **values: Any) -> None:
    """
    Append measured figures to the JSON-lines file named by ``ASYNCTRACK_FIGURES``.

    The reliability tests assert generous bounds; the figures they measured (exit
    times, worst probe latency, counts) are collected this way for the documentation.
    """
    target = os.environ.get("ASYNCTRACK_FIGURES")
    if not target:
        return
    import json

    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps({"test": test, **values}, default=str) + "\n")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """
    A small tmpfs mounted at ``path`` (skips the test where mounting is not allowed).
    """
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up: {mounted.stderr.decode()[:200]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


def fill(disk: Path, leave: int = 0) -> None:
    """
    Fill the file system of ``disk`` (a tmpfs), leaving about ``leave`` bytes free.
    """
    for name, block in (("filler", 1 << 20), ("crumbs", 4096)):
        with contextlib.suppress(OSError), open(disk / name, "wb", buffering=0) as f:
            while True:  # until ENOSPC, the last free blocks included
                f.write(b"\0" * block)
    if leave:
        filler = disk / "filler"
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def unfill(disk: Path) -> None:
    """
    Free what :func:`fill` took.
    """
    for name in ("filler", "crumbs"):
        (disk / name).unlink(missing_ok=True)
