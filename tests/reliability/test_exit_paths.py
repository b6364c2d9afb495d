"""
Nothing completed before the process ends is lost (issue #15, section 1): every log
completed before the interpreter finalises is written (or spilled), complete, on every
exit path — a plain return, ``sys.exit``, non-daemon threads still working, jobs still
pending in a thread pool, ``atexit`` handlers registered before and after
``configure()``, SIGTERM with the handler installed — and a probe that runs after the
final shutdown is counted in ``stats().dropped``. Each script runs in a subprocess.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from . import _support as s

pytestmark = pytest.mark.slow

#: Registered before asynctrack is imported, so it runs after asynctrack's final exit
#: step: a probe there completes after the final shutdown, and the counters are final.
LAST_WORDS = """
import atexit, json, os, sys

def _last_words():
    import asynctrack
    late = asynctrack.get_tracker("late").probe(lambda: None)
    late()
    st = asynctrack.stats()
    print("stats " + json.dumps(st._asdict()), flush=True)

atexit.register(_last_words)
"""

SETUP = """
out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent / "spill")
"""

SCRIPTS = {
    "return": """
for i in range(1000):
    work(i)
""",
    "sys_exit": """
for i in range(1000):
    work(i)
sys.exit(3)
""",
    "non_daemon_threads": """
def job(n):
    for i in range(10):
        time.sleep(0.05)  # still working long after the main thread returned
        work(n * 100 + i)

for n in range(3):
    threading.Thread(target=job, args=(n,)).start()
""",
    "pool": """
from concurrent.futures import ThreadPoolExecutor

pool = ThreadPoolExecutor(max_workers=2)
marks = os.open(out.parent / "ran", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

def job(i):
    time.sleep(0.05)
    work(i)
    os.write(marks, f"{i}\\n".encode())

for i in range(10):
    pool.submit(job, i)
""",
    "atexit_after_configure": """
import atexit

@atexit.register
def at_exit():
    for i in range(10):
        work(i)
""",
}

BEFORE_CONFIGURE = """
import atexit

@atexit.register
def at_exit():
    for i in range(10):
        work(i)

out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent / "spill")
"""


def _run(
    tmp_path: Path, body: str, *, setup: str = SETUP
) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """
    Run ``LAST_WORDS + PRELUDE + setup + body``; return (exit code, logs, final stats).
    """
    path = tmp_path / "script.py"
    prelude = s.PRELUDE.replace("from __future__ import annotations\n", "")
    source = prelude + "\n" + textwrap.dedent(setup) + textwrap.dedent(body)
    path.write_text(textwrap.dedent(LAST_WORDS) + source, encoding="utf-8")
    out = tmp_path / "track.jsonl"
    proc = s.run(path, str(out), timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("stats ")]
    stats = json.loads(line.split(" ", 1)[1])
    logs = [json.loads(x) for x in s.lines_of(out)] if out.exists() else []
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, logs, stats


def _roots(logs: list[dict[str, Any]]) -> list[int]:
    return sorted(log["calls"][0]["params"]["i"] for log in logs)


class TestExitPaths:
    @pytest.mark.parametrize(
        ("name", "expected", "code"),
        [
            pytest.param("return", list(range(1000)), 0, id="return"),
            pytest.param("sys_exit", list(range(1000)), 3, id="sys-exit"),
            pytest.param(
                "non_daemon_threads",
                sorted(n * 100 + i for n in range(3) for i in range(10)),
                0,
                id="non-daemon-threads",
            ),
            pytest.param("atexit_after_configure", list(range(10)), 0, id="atexit-after"),
        ],
    )
    def test_every_completed_log_is_written_complete(
        self, name: str, expected: list[int], code: int, tmp_path: Path
    ) -> None:
        """
        Every log completed before the interpreter finalises is in the file, once
        and complete; the probe after the final shutdown is counted as dropped and
        nothing stays pending.
        """
        returncode, logs, stats = _run(tmp_path, SCRIPTS[name])
        assert returncode == code
        assert _roots(logs) == expected
        assert all(log["complete"] for log in logs)
        assert stats["dropped"] == 1 and stats["pending"] == 0 and stats["spilled"] == 0

    def test_atexit_handler_registered_before_configure(self, tmp_path: Path) -> None:
        """
        An atexit handler registered before ``configure()`` (after the import): its
        10 logs are written.
        """
        returncode, logs, stats = _run(tmp_path, "", setup=BEFORE_CONFIGURE)
        assert returncode == 0
        assert _roots(logs) == list(range(10))
        assert stats["dropped"] == 1 and stats["pending"] == 0

    def test_pool_jobs_pending_at_exit(self, tmp_path: Path) -> None:
        """
        Jobs still queued in a ThreadPoolExecutor when the main thread returns: the
        log of every job that ran is written, complete.
        """
        returncode, logs, stats = _run(tmp_path, SCRIPTS["pool"])
        assert returncode == 0
        ran = sorted(int(x) for x in s.lines_of(tmp_path / "ran"))
        assert ran, "no job ran"
        assert _roots(logs) == ran
        assert all(log["complete"] for log in logs)
        assert stats["pending"] == 0

    def test_sigterm_with_the_handler_installed(self, tmp_path: Path) -> None:
        """
        SIGTERM with ``install_signal_handlers()``: exit status 143, every log
        completed before the signal written once; the call cut by the signal is in
        at most one log marked incomplete.
        """
        body = """
        asynctrack.install_signal_handlers()
        i = 0
        while True:
            work(i)
            i += 1
            if i == 2000:
                emit("ready")
        """
        path = tmp_path / "script.py"
        source = s.PRELUDE + "\n" + SETUP + textwrap.dedent(body)
        path.write_text(source, encoding="utf-8")
        out = tmp_path / "track.jsonl"
        proc = s.start(path, str(out))
        try:
            s.read_until(proc, "ready", timeout=60)
            _, _, err = s.stop(proc, signal.SIGTERM, timeout=30)
        finally:
            s.kill(proc)
        assert proc.returncode == 143, err
        logs = [json.loads(x) for x in s.lines_of(out)]
        ids = [log["id"] for log in logs]
        assert len(ids) == len(set(ids))
        roots = sorted(log["calls"][0]["params"]["i"] for log in logs if log["complete"])
        assert roots[:2000] == list(range(2000))
        assert roots == list(range(len(roots)))
        assert sum(1 for log in logs if not log["complete"]) <= 1


STARVED = """
def burn(k):
    while True:
        work(k, payload="x" * 200)


for k in range(8):
    threading.Thread(target=burn, args=(k,), daemon=True).start()
time.sleep(1.0)
emit("exiting")
"""


class TestStarvedDispatcher:
    def test_cpu_bound_threads_at_exit_leave_nothing_pending(self, tmp_path: Path) -> None:
        """
        Eight CPU-bound threads keep producing while the process exits (the
        dispatcher gets little of the GIL): after the exit nothing is pending — every
        log handed over is in the file or in a spill file, and those produced after
        the final shutdown are counted as dropped.
        """
        setup = """
        out = Path(sys.argv[1])
        asynctrack.configure(
            sinks=[FileNamed(out, "file")], spill_dir=out.parent / "spill", exit_timeout=1.0
        )
        """
        returncode, logs, stats = _run(tmp_path, STARVED, setup=setup)
        assert returncode == 0
        spilled = sum(len(s.lines_of(p)) for p in (tmp_path / "spill").glob("*.spill.jsonl"))
        s.figure("starved-exit", written=len(logs), spilled=spilled, stats=stats)
        assert stats["pending"] == 0
        assert len(logs) == stats["written"].get("file", 0)
        assert spilled == stats["spilled"] - stats["replayed"]
        assert stats["dropped"] >= 1


SQLITE = """
db = Path(sys.argv[1]).with_suffix(".db")
asynctrack.configure(
    sinks=[asynctrack.SQLSink(f"sqlite+aiosqlite:///{db}")], spill_dir=db.parent / "spill"
)


def job(n):
    for i in range(10):
        time.sleep(0.05)
        work(n * 100 + i)


for n in range(3):
    threading.Thread(target=job, args=(n,)).start()

import atexit


@atexit.register
def late():
    for i in range(5):
        work(1000 + i)
"""


class TestSQLiteAtExit:
    def test_late_logs_reach_sqlite_and_the_connection_does_not_hang(self, tmp_path: Path) -> None:
        """
        SQLSink (aiosqlite, whose connection thread would keep the interpreter
        waiting): the logs of non-daemon threads and of an atexit handler, all
        completed after the main thread returned, are in the table; the process exits.
        """
        returncode, _, stats = _run(tmp_path, "", setup=SQLITE)
        assert returncode == 0
        ids = s.sqlite_ids(tmp_path / "track.db")
        assert len(ids) == len(set(ids)) == 35
        assert stats["pending"] == 0 and stats["spilled"] == 0
