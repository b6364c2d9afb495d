"""
A full disk (the limits in the Guarantees): a FileSink whose disk fills up loses
nothing and writes nothing twice (a write cut short is undone, the batch spilled on
another disk and replayed); when the spill directory is full too, what cannot be kept
is counted as dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import asynctrack
from asynctrack.sinks import FileSink
from asynctrack.testing import capture

from . import _support as s

pytestmark = pytest.mark.slow

tr = asynctrack.get_tracker("rel.disk")


@tr.probe
def work(i: int, payload: str) -> int:
    return i


def produce(start: int, n: int) -> None:
    for i in range(start, start + n):
        work(i, "p" * 900)


class TestDiskFull:
    def test_file_sink_on_a_full_disk(self, tmp_path: Path) -> None:
        """
        The log file's disk fills up with 20 KB left, batches of ~50 KB arrive: the
        partial write is undone, the batches are spilled elsewhere and replayed once
        space is freed; the file holds every log exactly once and no torn line.
        """
        with s.tmpfs(tmp_path / "disk", "2m") as disk:
            out = disk / "out.jsonl"
            asynctrack.configure(
                sinks=[FileSink(out)],
                spill_dir=tmp_path / "spill",
                batch_size=50,
                flush_interval=0.01,
                retry_attempts=1,
                max_backoff=0.05,
            )
            with capture() as logs:
                produce(0, 100)
                asynctrack.flush_sync(timeout=30)
                s.fill(disk, leave=20_000)
                produce(100, 200)
                result = asynctrack.flush_sync(timeout=None)
                assert result.spilled > 0
                s.unfill(disk)
                assert s.wait_for(lambda: not list((tmp_path / "spill").glob("*.spill*")), 30)
            asynctrack.shutdown_sync(timeout=30)
            errors: list[tuple[Path, int, str]] = []
            ids = [
                log.id for log in asynctrack.read_logs(out, on_error=lambda *e: errors.append(e))
            ]
        assert errors == []
        assert len(ids) == len(set(ids)) == 300
        assert set(ids) == {log.id for log in logs}
        st = asynctrack.stats()
        assert st.dropped == 0 and st.replayed == st.spilled > 0

    def test_spill_directory_full_too_counts_drops(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        The file and the spill directory on one full disk: nothing can be kept, and
        every log is written or counted in stats().dropped, with a warning.
        """
        with s.tmpfs(tmp_path / "disk", "1m") as disk:
            out = disk / "out.jsonl"
            asynctrack.configure(
                sinks=[FileSink(out)],
                spill_dir=disk / "spill",
                batch_size=50,
                flush_interval=0.01,
                retry_attempts=1,
                max_backoff=0.05,
            )
            produce(0, 50)
            asynctrack.flush_sync(timeout=30)
            s.fill(disk)
            with caplog.at_level(logging.WARNING, logger="asynctrack"):
                produce(50, 200)
                asynctrack.flush_sync(timeout=30)
            st = asynctrack.stats()
            written = st.written.get("file-out.jsonl", 0)
            s.unfill(disk)
            asynctrack.shutdown_sync(timeout=30)
        assert st.dropped > 0 and written + st.dropped == 250
        assert any("dropped" in r.getMessage() for r in caplog.records)
