"""
Files changed underneath a sink (issue #15, section 2) and files planted in a shared
directory (issue #14, section 6).

A FileSink file, a spill file or a dead-letter file deleted or moved — the file or its
directory — while the program runs is noticed (device and inode are compared before
each write) and opened again by its path, with the directory recreated; the reopen is
counted in ``stats().reopened`` and no log is counted as written into a file nobody
can find. Spill, dead-letter, offset and temporary files are never opened through a
symlink.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import asynctrack
from asynctrack import FileSink, Log

from ..helpers import FlakySink
from ._support import wait_for

tr = asynctrack.get_tracker("rel.underneath")


@tr.probe
def work(n: int) -> int:
    return n


def _delete_file(path: Path) -> None:
    path.unlink()


def _move_file(path: Path) -> None:
    path.rename(path.with_name(path.name + ".moved"))


def _delete_dir(path: Path) -> None:
    shutil.rmtree(path.parent)


def _move_dir(path: Path) -> None:
    path.parent.rename(path.parent.with_name(path.parent.name + "-moved"))


CHANGES: list[object] = [
    pytest.param(_delete_file, id="delete-file"),
    pytest.param(_move_file, id="move-file"),
    pytest.param(_delete_dir, id="delete-dir"),
    pytest.param(_move_dir, id="move-dir"),
]


def _ids(path: Path) -> list[str]:
    return [log.id for log in asynctrack.read_logs(path, rotated=False)]


class TestFileSink:
    @pytest.mark.parametrize("change", CHANGES)
    def test_reopens_by_path_and_counts(
        self, change: Callable[[Path], None], tmp_path: Path
    ) -> None:
        """
        The file (or its directory) deleted or moved between two batches: the second
        batch lands in a new file at the configured path (directory 0700, file 0600),
        and ``stats().reopened`` is 1.
        """
        path = tmp_path / "logs" / "track.jsonl"
        asynctrack.configure(sinks=[FileSink(path)], spill_dir=tmp_path / "spill")
        for i in range(10):
            work(i)
        asynctrack.flush_sync(timeout=30)
        change(path)
        for i in range(10, 25):
            work(i)
        result = asynctrack.flush_sync(timeout=30)
        assert result.written == {"file-track.jsonl": 15}
        assert len(_ids(path)) == 15
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert asynctrack.stats().reopened == 1


class TestSpillFile:
    @pytest.mark.parametrize("change", CHANGES)
    def test_spill_changed_during_an_outage_loses_nothing(
        self, change: Callable[[Path], None], tmp_path: Path
    ) -> None:
        """
        During an outage the spill file (or its directory) is deleted or moved: the
        logs it held are still replayed (through the handle kept open), later ones go
        to a new spill file, and after the recovery every log is written exactly once.
        """
        spill_dir = tmp_path / "spill"
        sink = FlakySink("db")
        sink.failing.set()
        asynctrack.configure(sinks=[sink], spill_dir=spill_dir, retry_attempts=0, max_backoff=0.05)
        for i in range(30):
            work(i)
        asynctrack.flush_sync(timeout=None)
        (spill,) = spill_dir.glob("*.spill.jsonl")
        change(spill)
        for i in range(30, 60):
            work(i)
        asynctrack.flush_sync(timeout=None)
        assert asynctrack.stats().reopened >= 1
        assert list(spill_dir.glob("*.spill.jsonl")), "a new spill file was started"
        sink.failing.clear()
        asynctrack.flush_sync(timeout=60)
        assert wait_for(lambda: asynctrack.stats().replayed == 60, 30)
        assert len(sink.ids) == len(set(sink.ids)) == 60


class Poisoned(FlakySink):
    """Refuses the logs of negative numbers on their own: they are dead-lettered."""

    def __init__(self) -> None:
        super().__init__("poisoned")

    async def write(self, logs: Sequence[Log]) -> None:
        if any(log.calls[0].params["n"] < 0 for log in logs):
            raise ValueError("refused")
        self.ids.extend(log.id for log in logs)


class TestDeadLetters:
    @pytest.mark.parametrize("change", CHANGES)
    def test_dead_letter_file_recreated(
        self, change: Callable[[Path], None], tmp_path: Path
    ) -> None:
        """
        The dead-letter file (or its directory) deleted or moved between two poison
        logs: the second one is in a new dead-letter file at the same path.
        """
        spill_dir = tmp_path / "spill"
        asynctrack.configure(
            sinks=[Poisoned()], spill_dir=spill_dir, retry_attempts=0, max_backoff=0.01
        )
        work(-1)
        work(1)
        asynctrack.flush_sync(timeout=None)
        dead = spill_dir / "asynctrack-poisoned.dead.jsonl"
        assert len(_ids(dead)) == 1
        change(dead)
        work(-2)
        work(2)
        asynctrack.flush_sync(timeout=None)
        assert len(_ids(dead)) == 1
        assert stat.S_IMODE(dead.stat().st_mode) == 0o600
        assert asynctrack.stats().dead_lettered == 2


class TestSymlinksAreNeverFollowed:
    def test_planted_links_leave_their_targets_alone(self, tmp_path: Path) -> None:
        """
        Symlinks planted in a shared spill directory under the names of the spill
        file, its offset file and the dead-letter file: spilling, replaying (with
        progress records) and dead-lettering never write, truncate or read through
        them; the logs go to files of the process's own and are all delivered.
        """
        spill_dir = tmp_path / "shared"
        spill_dir.mkdir(mode=0o700)
        victims = {}
        for name in (
            "asynctrack-db.spill.jsonl",
            "asynctrack-db.spill.jsonl.offset",
            "asynctrack-db.dead.jsonl",
            "asynctrack-poisoned.dead.jsonl",
        ):
            victim = tmp_path / f"victim-{name}"
            victim.write_bytes(b"precious\n")
            (spill_dir / name).symlink_to(victim)
            victims[victim] = b"precious\n"
        sink = FlakySink("db")
        sink.failing.set()
        asynctrack.configure(
            sinks=[sink, Poisoned()],
            spill_dir=spill_dir,
            retry_attempts=0,
            max_backoff=0.05,
            batch_size=10,
        )
        for i in range(40):
            work(i)
            if i == 5:
                work(-1)  # in a batch with others: told apart as poison
        asynctrack.flush_sync(timeout=None)
        sink.failing.clear()
        asynctrack.flush_sync(timeout=60)
        assert wait_for(lambda: asynctrack.stats().replayed == 41, 30)
        assert len(sink.ids) == len(set(sink.ids)) == 41
        for victim, content in victims.items():
            assert victim.read_bytes() == content, victim
        for name in os.listdir(spill_dir):
            path = spill_dir / name
            if not path.is_symlink():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert asynctrack.stats().dead_lettered == 1


class TestPlantedSpecialFiles:
    def test_fifos_under_our_names_never_hang_delivery(self, tmp_path: Path) -> None:
        """
        FIFOs planted in a shared spill directory under the names of the spill file,
        its offset file and the dead-letter file: spilling, replaying and
        dead-lettering neither block on them nor write into them; every log is
        delivered once after the outage.
        """
        spill_dir = tmp_path / "shared"
        spill_dir.mkdir(mode=0o700)
        for name in (
            "asynctrack-db.spill.jsonl",
            "asynctrack-db.spill.jsonl.offset",
            "asynctrack-poisoned.dead.jsonl",
        ):
            os.mkfifo(spill_dir / name)
        sink = FlakySink("db")
        sink.failing.set()
        asynctrack.configure(
            sinks=[sink, Poisoned()],
            spill_dir=spill_dir,
            retry_attempts=0,
            max_backoff=0.05,
            batch_size=10,
        )
        for i in range(30):
            work(i)
            if i == 5:
                work(-1)
        asynctrack.flush_sync(timeout=None)
        sink.failing.clear()
        asynctrack.flush_sync(timeout=60)
        assert wait_for(lambda: asynctrack.stats().replayed == 31, 30)
        assert len(sink.ids) == len(set(sink.ids)) == 31
        assert asynctrack.stats().dead_lettered == 1

    def test_a_file_sink_on_a_named_pipe_writes_only_while_someone_reads(
        self, tmp_path: Path
    ) -> None:
        """
        A FileSink whose path is a named pipe (a log shipper's, or one planted under
        its name): with nobody reading, no log is counted as written into the pipe's
        buffer (to be lost at exit) — the batches fail and are spilled; once a reader
        opens the pipe, the spilled logs and new ones arrive through it, once each.
        """
        fifo = tmp_path / "track.jsonl"
        os.mkfifo(fifo)
        asynctrack.configure(
            sinks=[FileSink(fifo)],
            spill_dir=tmp_path / "spill",
            retry_attempts=0,
            max_backoff=0.05,
        )
        for i in range(20):
            work(i)
        result = asynctrack.flush_sync(timeout=None)
        assert result.written.get(f"file-{fifo.name}", 0) == 0
        assert result.spilled == 20
        received = bytearray()
        reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            for i in range(20, 30):
                work(i)
            asynctrack.flush_sync(timeout=60)

            def read_all() -> bool:
                with contextlib.suppress(BlockingIOError):
                    received.extend(os.read(reader_fd, 1 << 16))
                return received.count(b"\n") >= 30

            assert wait_for(read_all, 30)
        finally:
            os.close(reader_fd)
        lines = bytes(received).split(b"\n")
        ns = sorted(json.loads(x)["calls"][0]["params"]["n"] for x in lines if x)
        assert ns == list(range(30))
