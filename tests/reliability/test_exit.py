"""
No explicit close (issue #7, item 4): a script that writes 10,000 logs to SQLite and
simply ends exits at once with status 0, every row written — the aiosqlite connection
the sink holds does not keep the process alive.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from . import _support as s

pytestmark = pytest.mark.slow

SCRIPT = """
db = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.SQLSink(f"sqlite+aiosqlite:///{db}")], spill_dir=db.parent)
for i in range(10_000):
    work(i)
asynctrack.flush_sync(timeout=30)  # the connection is open and idle from here
for i in range(10_000, 20_000):
    work(i)
emit(f"end {time.time()}")
# no flush, no shutdown, no close: the exit hook writes and closes everything
"""


class TestExitWithoutClose:
    def test_sqlite_script_exits_within_2_s_with_every_row(self, tmp_path: Path) -> None:
        """
        20,000 logs (the last 10,000 still queued at the end of the script): exit
        status 0 within 2 s of the script's last line, all 20,000 rows in the table.
        """
        db = tmp_path / "track.db"
        proc = s.run(s.script(tmp_path, SCRIPT), str(db), timeout=60)
        ended = time.time()
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith("end ")]
        exit_time = ended - float(line.split()[1])
        s.figure("exit-without-close", exit_time=exit_time)
        ids = s.sqlite_ids(db)
        assert len(ids) == len(set(ids)) == 20_000
        assert exit_time < 2.0, f"the exit took {exit_time:.2f} s"
