"""
Crash and restart (issue #7, item 2): a process killed with SIGKILL while its spill
file holds logs; the next start replays every spilled record exactly once, and a torn
last line is skipped and counted.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from . import _support as s

pytestmark = pytest.mark.slow

FAILING = """
spill = Path(sys.argv[1])
asynctrack.configure(
    sinks=[FailingSink("db")], spill_dir=spill, retry_attempts=0, batch_size=200,
    flush_interval=0.05,
)
for i in range(int(sys.argv[2])):
    work(i)
asynctrack.flush_sync(timeout=None)  # returns once everything is spilled
emit("spilled " + json.dumps(asynctrack.stats()._asdict()))
i = 0
while True:  # keep producing (and spilling) until killed
    work(i)
    i += 1
    if i % 1000 == 0:
        time.sleep(0.01)
"""

RESTART = """
spill, out = Path(sys.argv[1]), Path(sys.argv[2])
asynctrack.configure(sinks=[FileNamed(out, "db")], spill_dir=spill, batch_size=500)
wait_for(lambda: not list(spill.glob("*.spill.jsonl")), 60)
asynctrack.shutdown_sync(timeout=10)
emit("done " + json.dumps(asynctrack.stats()._asdict()))
"""

SQL_RESTART = """
spill, db = Path(sys.argv[1]), sys.argv[2]
sink = asynctrack.SQLSink(f"sqlite+aiosqlite:///{db}", name="db")
asynctrack.configure(sinks=[sink], spill_dir=spill, batch_size=100)
def spilled():
    return list(spill.glob("*.spill.jsonl"))


wait_for(lambda: asynctrack.stats().replayed >= 300 or not spilled(), 60, interval=0.005)
if spilled():
    emit("replaying")  # the first run is killed now, in the middle of the replay
wait_for(lambda: not spilled(), 60)
asynctrack.shutdown_sync(timeout=10)
emit("done " + json.dumps(asynctrack.stats()._asdict()))
"""


def spilled_ids(spill: Path) -> list[str]:
    """
    The ids of every complete, parseable line of the spill files in ``spill``.
    """
    ids = []
    for path in sorted(spill.glob("*.spill.jsonl")):
        for line in path.read_bytes().split(b"\n"):
            try:
                ids.append(json.loads(line)["id"])
            except ValueError:
                continue
    return ids


def crash_with_spill(tmp_path: Path, spill: Path, n: int) -> dict[str, int]:
    """
    Run the failing program until its spill file holds at least ``n`` logs, SIGKILL it.
    """
    proc = s.start(s.script(tmp_path, FAILING, "failing.py"), str(spill), str(n))
    try:
        lines = s.read_until(proc, "spilled", timeout=60)
        stats: dict[str, int] = json.loads(lines[-1].split(" ", 1)[1])
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        s.kill(proc)
    assert proc.returncode == -signal.SIGKILL
    return stats


class TestCrashAndRestart:
    def test_spill_left_by_sigkill_is_replayed_exactly_once(self, tmp_path: Path) -> None:
        """
        SIGKILL while spilling, a torn fragment appended to the spill file, restart:
        every record of the spill file reaches the sink once, the fragment is counted
        in stats().corrupt, and the spill file is removed.
        """
        spill = tmp_path / "spill"
        first = crash_with_spill(tmp_path, spill, 5000)
        assert first["spilled"] == 5000 and first["dropped"] == 0
        (path,) = spill.glob("*.spill.jsonl")
        with open(path, "ab") as f:
            f.write(b'{"id": "0193c1f0c4a87b2e9d3f5a6b7c8d9e0f", "calls": [{"seq"')
        expected = spilled_ids(spill)
        assert len(expected) >= 5000

        out = tmp_path / "out.jsonl"
        proc = s.run(s.script(tmp_path, RESTART, "restart.py"), str(spill), str(out))
        assert proc.returncode == 0, proc.stderr
        stats = json.loads(proc.stdout.split("done ", 1)[1])
        written = s.jsonl_ids(out)
        assert len(written) == len(set(written)), "a spilled record was written twice"
        assert sorted(written) == sorted(expected)
        s.figure("crash-restart", spilled=len(expected), replay_stats=stats)
        assert stats["replayed"] == len(expected)
        assert stats["corrupt"] == 1
        assert "unreadable lines of a spill file" in proc.stderr
        assert not list(spill.iterdir()), "spill and offset files are removed after replay"

    def test_replay_killed_midway_resumes_without_duplicates(self, tmp_path: Path) -> None:
        """
        A replay into SQLite killed with SIGKILL halfway, then restarted: the offset
        file makes it resume, and the database holds every spilled record exactly once.
        """
        spill = tmp_path / "spill"
        crash_with_spill(tmp_path, spill, 20_000)
        expected = spilled_ids(spill)
        db = tmp_path / "track.db"
        code = s.script(tmp_path, SQL_RESTART, "sql_restart.py")
        proc = s.start(code, str(spill), str(db))
        try:
            s.read_until(proc, "replaying", timeout=60)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            s.kill(proc)
        partial = s.sqlite_ids(db)
        s.figure("replay-killed", partial=len(partial), spilled=len(expected))
        assert 0 < len(partial) < len(expected), "the kill must interrupt the replay"
        assert list(spill.glob("*.offset")), "progress is recorded while replaying"

        done = s.run(code, str(spill), str(db))
        assert done.returncode == 0, done.stderr
        rows = s.sqlite_ids(db)
        assert len(rows) == len(set(rows))
        assert sorted(rows) == sorted(expected)
        assert not list(spill.glob("*.spill.jsonl"))
