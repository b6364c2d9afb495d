"""
Fork (issue #7, item 8): a child forked while another thread is inside a probe and the
dispatcher is busy exits cleanly; what the parent tracked before the fork is written
once, by the parent; many fork cycles end well.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from . import _support as s

pytestmark = pytest.mark.slow

BUSY_FORK = """
out = Path(sys.argv[1])


class Busy(FileNamed):
    async def write(self, logs):
        await asyncio.sleep(0.005)  # the dispatcher is always in the middle of a write
        await super().write(logs)


@tr.probe
def inside(i, payload=None):
    time.sleep(0.0005)  # this thread is inside a probe most of the time
    return leaf(i)


asynctrack.configure(
    sinks=[Busy(out, "busy")], spill_dir=out.parent, batch_size=20, flush_interval=0.005
)
stop = threading.Event()


def background():
    i = 0
    while not stop.is_set():
        inside(i, payload="thread")
        i += 1


thread = threading.Thread(target=background)
thread.start()
for i in range(2000):
    work(i, payload="before")
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    for i in range(500):
        work(i, payload="child")
    sys.exit(0)
for i in range(2000):
    work(i, payload="parent")
_, status = os.waitpid(pid, 0)
emit(f"child {os.waitstatus_to_exitcode(status)} {time.monotonic() - t0:.3f}")
stop.set()
thread.join()
"""

CYCLES = """
out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out / "parent.jsonl")], spill_dir=out)
codes = []
t0 = time.monotonic()
for cycle in range(100):
    for i in range(10):
        work(i, payload=f"parent-{cycle}")
    pid = os.fork()
    if pid == 0:
        asynctrack.configure(
            sinks=[asynctrack.FileSink(out / f"child-{cycle}.jsonl")], spill_dir=out
        )
        for i in range(10):
            work(i, payload=f"child-{cycle}")
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    codes.append(os.waitstatus_to_exitcode(status))
emit(f"codes {json.dumps(codes, separators=(',', ':'))} {time.monotonic() - t0:.2f}")
"""


def tags(path: Path) -> collections.Counter[str]:
    logs = [json.loads(line) for line in s.lines_of(path)]
    ids = [log["id"] for log in logs]
    assert len(ids) == len(set(ids)), f"a log was written twice in {path.name}"
    return collections.Counter(log["calls"][0]["params"]["payload"] for log in logs)


class TestFork:
    def test_fork_while_busy(self, tmp_path: Path) -> None:
        """
        Forked while a thread is inside a probe and the dispatcher is writing: the
        child exits with 0 within 7 s and writes its 500 logs; the 2,000 logs from
        before the fork and the parent's own appear once; the thread's log that was
        open at the fork is not written by the child.
        """
        out = tmp_path / "out.jsonl"
        proc = s.run(s.script(tmp_path, BUSY_FORK), str(out), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith("child ")]
        _, code, seconds = line.split()
        s.figure("fork-while-busy", child_s=float(seconds))
        assert code == "0" and float(seconds) < 7.0
        counts = tags(out)
        assert counts["before"] == 2000 and counts["parent"] == 2000
        assert counts["child"] == 500
        logs = [json.loads(x) for x in s.lines_of(out)]
        thread = [log for log in logs if log["calls"][0]["params"]["payload"] == "thread"]
        assert all(log["complete"] for log in thread), "no incomplete copy from the child"
        numbers = [log["calls"][0]["params"]["i"] for log in thread]
        assert len(numbers) == len(set(numbers))

    def test_100_fork_cycles(self, tmp_path: Path) -> None:
        """
        100 cycles of fork, track in the child (its own file), exit: every exit code is
        0, each child's file has its 10 logs, the parent's file its 1,000 logs, once.
        """
        proc = s.run(s.script(tmp_path, CYCLES), str(tmp_path), timeout=120)
        assert proc.returncode == 0, proc.stderr
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith("codes ")]
        codes = json.loads(line.split(" ", 2)[1])
        s.figure("fork-cycles", seconds=float(line.split(" ", 2)[2]))
        assert codes == [0] * 100
        parent = tags(tmp_path / "parent.jsonl")
        assert parent == {f"parent-{c}": 10 for c in range(100)}
        for cycle in range(100):
            assert tags(tmp_path / f"child-{cycle}.jsonl") == {f"child-{cycle}": 10}


HOOKLESS = """
from asynctrack._core.runtime import RUNTIME

out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent, batch_size=100)
for i in range(1000):
    work(i, payload="before")
asynctrack.flush_sync(timeout=10)
# Simulate a server that forks without running Python's fork hooks for asynctrack
# (uWSGI without lazy-apps): the pipeline is hidden from the hook during the fork.
pipeline = RUNTIME.pipeline
RUNTIME.pipeline = None
pid = os.fork()
RUNTIME.pipeline = pipeline
if pid == 0:
    for i in range(1000):
        work(i, payload="child")
    emit(f"child pid changed {asynctrack.stats().enqueued}")
    sys.exit(0)
for i in range(1000):
    work(i, payload="parent")
_, status = os.waitpid(pid, 0)
emit(f"child {os.waitstatus_to_exitcode(status)}")
"""


# A fork that runs no Python fork hook at all (libc's fork, as uWSGI's C code forks):
# neither asynctrack's pipeline hook nor its id hook runs. Two workers forked alike.
LIBC_FORK = """
import ctypes

out = Path(sys.argv[1])
asynctrack.configure(sinks=[asynctrack.FileSink(out)], spill_dir=out.parent, batch_size=50)
for i in range(200):
    work(i, payload="before")
asynctrack.flush_sync(timeout=10)
libc = ctypes.CDLL(None)
kids = []
for k in range(2):
    pid = libc.fork()
    if pid == 0:
        for i in range(300):
            work(i, payload=f"worker-{k}")
        asynctrack.flush_sync(timeout=10)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    _, status = os.waitpid(pid, 0)
    emit(f"worker {os.waitstatus_to_exitcode(status)}")
"""


class TestForkWithoutHooks:
    def test_child_notices_by_process_id(self, tmp_path: Path) -> None:
        """
        A fork that runs no asynctrack fork hook: the child notices the new process id
        on its first batch hand-off, starts its own dispatcher, and its logs are
        written (1,000), as are the parent's, each once.
        """
        out = tmp_path / "out.jsonl"
        proc = s.run(s.script(tmp_path, HOOKLESS), str(out), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "child 0" in proc.stdout
        assert tags(out) == {"before": 1000, "child": 1000, "parent": 1000}

    def test_workers_forked_by_libc_write_their_own_ids(self, tmp_path: Path) -> None:
        """
        Workers forked with libc's fork (no Python fork hook runs at all) each notice
        the fork at their first completed log, before it is encoded: every log is
        written once, and no id is shared between the workers (each draws its own id
        prefix).
        """
        out = tmp_path / "out.jsonl"
        proc = s.run(s.script(tmp_path, LIBC_FORK), str(out), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("worker 0") == 2, proc.stdout
        assert tags(out) == {"before": 200, "worker-0": 300, "worker-1": 300}
        prefixes = collections.defaultdict(set)
        for line in s.lines_of(out):
            log = json.loads(line)
            prefixes[log["calls"][0]["params"]["payload"]].add(log["id"][12:20])
        assert all(len(p) == 1 for p in prefixes.values()), prefixes
        assert len(set.union(*prefixes.values())) == 3, prefixes
