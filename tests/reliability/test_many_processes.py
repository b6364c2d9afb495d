"""
Many processes (issue #7, item 9): four processes writing to one SQLite database (WAL)
and four appending to one JSON-lines file, all at once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from . import _support as s

pytestmark = pytest.mark.slow

WRITER = """
kind, target, go, tag = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
if kind == "sqlite":
    sink = asynctrack.SQLSink(f"sqlite+aiosqlite:///{target}")
else:
    sink = asynctrack.FileSink(target)
asynctrack.configure(sinks=[sink], spill_dir=Path(target).parent / tag)
asynctrack.flush_sync(timeout=30)  # opened (tables created) before the race starts
emit("ready")
while not go.exists():
    time.sleep(0.001)
for i in range(10_000):
    work(i, payload=tag)
asynctrack.shutdown_sync(timeout=60)
emit("stats " + json.dumps(asynctrack.stats()._asdict()))
"""


def race(tmp_path: Path, kind: str, target: Path) -> list[dict[str, int]]:
    """
    Start four writers, let them go at once, return their final stats.
    """
    code = s.script(tmp_path, WRITER)
    go = tmp_path / "go"
    procs = [s.start(code, kind, str(target), str(go), f"p{n}") for n in range(4)]
    stats = []
    try:
        for proc in procs:
            s.read_until(proc, "ready", timeout=60)
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
            assert "locked" not in err and "asynctrack:" not in err, err
            (line,) = [x for x in out.splitlines() if x.startswith("stats ")]
            stats.append(json.loads(line[6:]))
    except subprocess.TimeoutExpired:
        raise AssertionError("a writer did not finish within 90 s") from None
    finally:
        for proc in procs:
            s.kill(proc)
    return stats


class TestManyProcesses:
    def test_four_processes_into_one_sqlite_file(self, tmp_path: Path) -> None:
        """
        4 processes x 10,000 logs into one SQLite file in WAL mode: 40,000 rows, each
        once, and not one failed write ("database is locked") in any process.
        """
        db = tmp_path / "track.db"
        stats = race(tmp_path, "sqlite", db)
        for st in stats:
            assert st["failed"] == 0 and st["spilled"] == 0 and st["dropped"] == 0
        ids = s.sqlite_ids(db)
        assert len(ids) == len(set(ids)) == 40_000
        import sqlite3

        with sqlite3.connect(db) as conn:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            (calls,) = conn.execute("SELECT COUNT(*) FROM track_calls").fetchone()
        assert mode == "wal" and calls == 80_000

    def test_four_processes_appending_to_one_jsonl_file(self, tmp_path: Path) -> None:
        """
        4 processes appending to one JSON-lines file (one O_APPEND write per batch):
        40,000 lines, every line parses, no log is missing or doubled.
        """
        out = tmp_path / "shared.jsonl"
        stats = race(tmp_path, "file", out)
        assert all(st["failed"] == 0 for st in stats)
        lines = out.read_bytes().split(b"\n")
        assert lines[-1] == b""
        logs = [json.loads(line) for line in lines[:-1]]
        assert len(logs) == 40_000
        assert len({log["id"] for log in logs}) == 40_000
        per_process: dict[str, int] = {}
        for log in logs:
            tag = log["calls"][0]["params"]["payload"]
            per_process[tag] = per_process.get(tag, 0) + 1
        assert per_process == {f"p{n}": 10_000 for n in range(4)}
