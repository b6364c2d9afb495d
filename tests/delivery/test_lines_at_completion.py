"""
Logs encoded at completion: a pipeline whose sinks all take JSON lines queues each
completed log as its line, encoded in the thread that completed it (docs/pipeline.md,
"Logs encoded at completion"); any other pipeline queues ``Log`` objects. Both forms
reach every sink as that sink takes them, whatever crosses a reconfiguration.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log, MemorySink
from asynctrack._core import calltree
from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_log, encode_logs
from asynctrack._core.runtime import RUNTIME
from asynctrack.sinks import FileSink, read_logs
from asynctrack.sinks._base import takes_lines
from tests.conftest import Configure

tr = asynctrack.get_tracker("tests.lines")


@tr.probe
def work(n: int, value: Any = None) -> int:
    tr.add_data("v", value)
    return leaf(n)


@tr.probe
def leaf(n: int) -> int:
    return n


@tr.probe
def boom(value: Any) -> None:
    leaf(1)
    raise ValueError(f"bad {value!r}"[:200])


@tr.probe
async def awork(n: int) -> int:
    await asyncio.sleep(0)
    return leaf(n)


def queued() -> list[Any]:
    pipeline = RUNTIME.pipeline
    assert pipeline is not None
    return list(pipeline.intake._dq)


class OwnWrite(FileSink):
    """
    A FileSink whose ``write`` is its own: it is not marked as taking lines.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.seen: list[type] = []

    async def write(self, logs: Sequence[Log | bytes]) -> None:
        self.seen += map(type, logs)
        await super().write(logs)


class TestWhichPipelines:
    def test_only_sinks_that_take_lines_make_a_line_pipeline(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        Lines are queued only when every sink takes them; otherwise Log objects.
        """
        assert takes_lines(FileSink(tmp_path / "a.jsonl"))
        assert not takes_lines(MemorySink())
        assert not takes_lines(OwnWrite(tmp_path / "o.jsonl"))
        patched = FileSink(tmp_path / "p.jsonl")
        with mock.patch.object(patched, "write"):
            assert not takes_lines(patched)
        assert takes_lines(patched)
        own = OwnWrite(tmp_path / "o2.jsonl")
        cases = [
            ([FileSink(tmp_path / "f1.jsonl"), FileSink(tmp_path / "f2.jsonl")], bytes),
            ([FileSink(tmp_path / "f3.jsonl"), MemorySink()], Log),
            ([own], Log),
        ]
        for sinks, kind in cases:
            configured(*sinks, flush_interval=60, batch_size=10_000)
            work(1)
            asyncio.run(awork(2))
            assert [type(x) for x in queued()] == [kind, kind]
            asynctrack.flush_sync(timeout=10)
        assert own.seen == [Log, Log]

    def test_a_queued_line_is_nothing_the_collector_counts(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        A buffered log of a line pipeline is one bytes object: not a container.
        """
        configured(FileSink(tmp_path / "f.jsonl"), flush_interval=60, batch_size=10_000)
        for i in range(50):
            work(i, {"k": [i]})
        items = queued()
        assert len(items) == 50
        assert not any(gc.is_tracked(x) for x in items)
        asynctrack.flush_sync(timeout=10)


class TestSameBytes:
    @settings(max_examples=60)
    @given(
        value=st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats()
            | st.text()
            | st.binary(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        fail=st.booleans(),
    )
    def test_the_line_is_the_dispatchers_encoding(self, value: Any, fail: bool) -> None:
        """
        Property: whatever the values, the line written is the one the dispatcher would
        have encoded from the Log, and it reads back as that Log.
        """
        RUNTIME.reset()
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "f.jsonl"
            captured: list[Log] = []
            asynctrack.configure(sinks=[FileSink(path)], spill_dir=tmp)
            calltree.add_listener(captured.append)
            try:
                work(7, value)
                if fail:
                    with pytest.raises(ValueError, match="bad"):
                        boom(value)
                asynctrack.flush_sync(timeout=10)
            finally:
                calltree.remove_listener(captured.append)
                asynctrack.shutdown_sync()
            lines = path.read_bytes().splitlines(keepends=True)
            assert len(lines) == 1 + fail
            # The dispatcher's encoding: a batch, in another thread (its own scratch).
            batch: list[bytes] = []
            other = threading.Thread(target=lambda: batch.append(encode_logs(captured)))
            other.start()
            other.join()
            assert b"".join(lines) == batch[0]
            assert [decode_line(line) for line in lines] == [
                decode_line(encode_log(log)) for log in captured
            ]
        RUNTIME.reset()


class TestAcrossReconfiguration:
    def test_lines_into_a_log_pipeline_and_back(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        Logs queued as lines and forwarded to a pipeline of Log sinks arrive as Logs
        (and the other way round), each exactly once.
        """
        path = tmp_path / "f.jsonl"
        configured(FileSink(path), flush_interval=60, batch_size=10_000)
        for i in range(20):
            work(i)
        memory = MemorySink()
        pipeline = RUNTIME.pipeline
        assert pipeline is not None
        held = pipeline.intake.take_all()
        assert len(held) == 20 and all(type(x) is bytes for x in held)
        configured(memory, flush_interval=60, batch_size=10_000)
        # What the old intake held when the new pipeline took over (a fork without
        # hooks, a hand-off racing the swap) reaches the new one as it was queued.
        new = RUNTIME.pipeline
        assert new is not None
        new.intake.extend(held)
        for i in range(5):
            work(i)
        asynctrack.flush_sync(timeout=10)
        assert len(memory.logs) == 25
        assert all(isinstance(log, Log) for log in memory.logs)
        assert [c.params["n"] for log in memory.logs[:20] for c in log.calls[:1]] == list(range(20))
        # And Log objects into a line pipeline.
        other = tmp_path / "g.jsonl"
        configured(FileSink(other), flush_interval=60, batch_size=10_000)
        line_pipeline = RUNTIME.pipeline
        assert line_pipeline is not None
        line_pipeline.intake.extend(list(memory.logs[:3]))
        asynctrack.flush_sync(timeout=10)
        assert [log.id for log in read_logs(other)] == [log.id for log in memory.logs[:3]]

    def test_an_unencodable_log_goes_on_as_a_log(
        self, configured: Configure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Should encoding fail at completion, the Log is queued instead and the
        dispatcher encodes it (here it can): nothing is lost.
        """
        from asynctrack._delivery import intake as intake_module

        calls = {"n": 0}
        real = intake_module.encode_log

        def flaky(log: Log) -> bytes:
            calls["n"] += 1
            if calls["n"] % 2:
                raise RuntimeError("boom")
            return real(log)

        monkeypatch.setattr(intake_module, "encode_log", flaky)
        path = tmp_path / "f.jsonl"
        configured(FileSink(path), flush_interval=60, batch_size=10_000)
        for i in range(10):
            work(i)
        assert sorted(type(x).__name__ for x in queued()) == ["Log"] * 5 + ["bytes"] * 5
        asynctrack.flush_sync(timeout=10)
        assert sorted(log.calls[0].params["n"] for log in read_logs(path)) == list(range(10))


class TestThreadsAndShutdown:
    def test_threads_encode_their_own_lines(self, configured: Configure, tmp_path: Path) -> None:
        """
        Eight threads completing logs at once each encode with their own scratch: every
        line is whole and its own.
        """
        path = tmp_path / "f.jsonl"
        configured(FileSink(path))
        barrier = threading.Barrier(8)

        def body(k: int) -> None:
            barrier.wait()
            for i in range(2_000):
                work(k * 10_000 + i, {"k": k, "i": i})

        threads = [threading.Thread(target=body, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        asynctrack.flush_sync(timeout=60)
        logs = list(read_logs(path))
        assert len(logs) == 16_000 and len({log.id for log in logs}) == 16_000
        for log in logs:
            n = log.calls[0].params["n"]
            assert log.calls[0].data == {"v": {"k": n // 10_000, "i": n % 10_000}}
            assert log.calls[1].params == {"n": n}

    def test_open_logs_at_shutdown_are_written_as_lines(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        A log still running at shutdown is queued as a Log and written, incomplete, by
        the line pipeline.
        """
        path = tmp_path / "f.jsonl"
        configured(FileSink(path))
        started, release = threading.Event(), threading.Event()

        @tr.probe
        def slow() -> None:
            started.set()
            release.wait(10)

        t = threading.Thread(target=slow, daemon=True)
        t.start()
        assert started.wait(10)
        work(1)
        asynctrack.shutdown_sync(timeout=10)
        release.set()
        t.join(10)
        logs = {log.calls[0].function.rsplit(".", 1)[-1]: log for log in read_logs(path)}
        assert logs["work"].complete and not logs["slow"].complete
        assert logs["slow"].calls[0].status == "running"


class TestIdsAfterFork:
    def test_a_new_id_prefix_is_used_at_once(self) -> None:
        """
        The encoder keeps the id prefix of its thread's last line; once the process's
        prefix changes (a forked child), the next line, even in the same millisecond,
        carries the new one.
        """
        from asynctrack._core import ids
        from asynctrack.testing import capture

        with capture() as logs:
            work(1)
            work(2)
        first, second = logs
        before = decode_line(encode_log(first)).id
        assert before[12:20] == ids.id_prefix()
        kept = ids._PREFIX
        ids.reset_ids_after_fork()
        try:
            second._wall_ns = first._wall_ns  # the same millisecond as the last line
            after = decode_line(encode_log(second)).id
            assert after[12:20] == ids.id_prefix() != before[12:20]
            assert after[:12] == before[:12]
        finally:
            ids._PREFIX = kept


class TestEncodingInTheApplicationThread:
    def test_code_a_value_runs_while_encoded_is_not_tracked(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        A value that only the general encoder takes (a hook put an object in the info)
        is converted where the log completes; probed code its repr calls records
        nothing there, as in the dispatcher's thread.
        """

        class User:
            def __repr__(self) -> str:
                leaf(5)
                return "User()"

        def add_user(log: Log) -> Log:
            log.info["user"] = User()
            return log

        path = tmp_path / "f.jsonl"
        configured(FileSink(path), processors=[add_user])
        work(1)
        asynctrack.flush_sync(timeout=10)
        logs = list(read_logs(path))
        assert len(logs) == 1
        assert "User()" in str(logs[0].info["user"])
