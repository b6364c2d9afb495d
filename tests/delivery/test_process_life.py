"""
Process life (issue #3): what a program tracked reaches the file when it exits without
flushing, when it is stopped with SIGTERM, and when it forks.
"""

from __future__ import annotations

import collections
import json
import signal
from pathlib import Path

import pytest

from tests.reliability import _support as s

pytestmark = pytest.mark.slow

NO_FLUSH = """
out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent)


def produce(tag):
    for i in range(5000):
        work(i, payload=tag)


threads = [threading.Thread(target=produce, args=(f"t{n}",)) for n in range(3)]
for t in threads:
    t.start()
produce("main")
for t in threads:
    t.join()
emit("done")
# no flush, no shutdown: the exit hook writes everything
"""

SIGTERM_HANDLER = """
out, ids_file = Path(sys.argv[1]), Path(sys.argv[2])
from asynctrack.testing import capture

asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent)
captured = capture().__enter__()


def on_term(signum, frame):
    completed = [log.id for log in list(captured)]  # every log completed so far
    asynctrack.shutdown_sync()
    ids_file.write_text("\\n".join(completed))
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
stop = threading.Event()


def background():
    i = 0
    while not stop.is_set():
        work(i, payload="thread")
        i += 1
        if i % 100 == 0:
            time.sleep(0.001)


threading.Thread(target=background, daemon=True).start()
i = 0
while True:
    work(i, payload="main")
    i += 1
    if i == 20_000:
        emit("ready")
    if i % 100 == 0:
        time.sleep(0.001)
"""

INSTALLED_HANDLERS = """
out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent)
asynctrack.install_signal_handlers()
i = 0
while True:
    work(i)
    i += 1
    if i == 20_000:
        emit("ready")
"""

FORK = """
out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent, flush_interval=0.05)
for i in range(1000):
    work(i, payload="before")
pid = os.fork()
if pid == 0:
    for i in range(1000):
        work(i, payload="child")
    asynctrack.flush_sync(timeout=10)  # the child's own dispatcher works
    for i in range(1000, 2000):
        work(i, payload="child")
    sys.exit(0)  # the rest is written by the child's exit hook
for i in range(1000):
    work(i, payload="parent")
_, status = os.waitpid(pid, 0)
emit(f"child {os.waitstatus_to_exitcode(status)}")
"""


def payloads(path: Path) -> collections.Counter[str]:
    """
    How many logs of each payload tag the JSON-lines file holds (ids checked unique).
    """
    logs = [json.loads(line) for line in s.lines_of(path)]
    ids = [log["id"] for log in logs]
    assert len(ids) == len(set(ids)), "a log was written twice"
    return collections.Counter(log["calls"][0]["params"]["payload"] for log in logs)


class TestExit:
    def test_exit_without_flush_writes_every_log(self, tmp_path: Path) -> None:
        """
        A script that returns from its main module without flushing: the exit hook,
        which runs before the thread pools of aiofiles shut down, writes all 20,000 logs.
        """
        out = tmp_path / "out.jsonl"
        proc = s.run(s.script(tmp_path, NO_FLUSH), str(out), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert payloads(out) == {"main": 5000, "t0": 5000, "t1": 5000, "t2": 5000}


class TestSigterm:
    def test_handler_calling_shutdown_sync_keeps_every_completed_log(self, tmp_path: Path) -> None:
        """
        The usual SIGTERM handler calling shutdown_sync(): every log completed before
        the signal (main thread and a background thread) is in the file, once.
        """
        out, ids_file = tmp_path / "out.jsonl", tmp_path / "ids.txt"
        proc = s.start(s.script(tmp_path, SIGTERM_HANDLER), str(out), str(ids_file))
        try:
            s.read_until(proc, "ready", timeout=60)
            _, _, err = s.stop(proc, signal.SIGTERM)
        finally:
            s.kill(proc)
        assert proc.returncode == 0, err
        completed = set(ids_file.read_text().split("\n"))
        written = s.jsonl_ids(out)
        assert len(written) == len(set(written))
        assert len(completed) > 20_000
        assert completed <= set(written)

    def test_install_signal_handlers(self, tmp_path: Path) -> None:
        """
        asynctrack.install_signal_handlers(): on SIGTERM every log completed is written
        (the producer's params run 0..n-1 without a gap), the exit status is 143, and
        the exit takes at most exit_timeout + 1 s.
        """
        out = tmp_path / "out.jsonl"
        proc = s.start(s.script(tmp_path, INSTALLED_HANDLERS), str(out))
        try:
            s.read_until(proc, "ready", timeout=60)
            seconds, _, err = s.stop(proc, signal.SIGTERM)
        finally:
            s.kill(proc)
        s.figure("install-signal-handlers", exit_s=seconds)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert seconds < 5.0 + 1.0  # exit_timeout + 1 s
        logs = [json.loads(line) for line in s.lines_of(out)]
        complete = sorted(log["calls"][0]["params"]["i"] for log in logs if log["complete"])
        assert len(complete) >= 20_000
        assert complete == list(range(len(complete)))
        assert len(logs) - len(complete) <= 1  # the call running at the signal, if any


class TestFork:
    def test_parent_and_child_each_write_their_own_logs(self, tmp_path: Path) -> None:
        """
        fork() mid-run: the logs from before the fork are written once (by the parent),
        the child's dispatcher writes the child's logs, the parent keeps writing its own.
        """
        out = tmp_path / "out.jsonl"
        proc = s.run(s.script(tmp_path, FORK), str(out), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "child 0" in proc.stdout
        assert payloads(out) == {"before": 1000, "child": 2000, "parent": 1000}
