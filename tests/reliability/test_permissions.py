"""
Permissions and secrets in errors (issue #7, item 15): what asynctrack creates is
private (files 0600, directories 0700, even under umask 022), and database passwords
never appear in its warnings, errors or reprs.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import asynctrack
from asynctrack import ConfigError, Log
from asynctrack.sinks import FileSink
from tests.conftest import Configure

from ._support import wait_for

tr = asynctrack.get_tracker("rel.permissions")


@tr.probe
def work(i: int) -> int:
    return i


class PoisonAndOutage(asynctrack.Sink):
    """
    Refuses log 3 on its own, and everything while ``down``: spill and dead letters.
    """

    down = True

    @property
    def name(self) -> str:
        return "db"

    async def write(self, logs: Sequence[Log]) -> None:
        if any(log.calls[0].params["i"] == 3 for log in logs):
            raise ValueError("poison")
        if self.down:
            raise ConnectionError("down")


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestPermissions:
    @pytest.mark.usefixtures("umask_022")
    def test_files_0600_directories_0700(self, tmp_path: Path) -> None:
        """
        Under umask 022: the log file, its rotated copies, the spill file and the
        dead-letter file are 0600; every directory asynctrack creates (parents
        included) is 0700.
        """
        out = tmp_path / "logs" / "app" / "track.jsonl"
        spill = tmp_path / "state" / "spill"
        sink = PoisonAndOutage()
        asynctrack.configure(
            sinks=[FileSink(out, max_bytes=5_000, backup_count=2), sink],
            spill_dir=spill,
            retry_attempts=0,
            max_backoff=0.01,
            batch_size=4,
            flush_interval=0.01,
        )
        for i in range(40):
            work(i)
        asynctrack.flush_sync(timeout=30)
        (spilled,) = spill.glob("*.spill.jsonl")
        assert mode(spilled) == 0o600 and asynctrack.stats().spilled == 40
        sink.down = False  # the replay sets log 3 aside in the dead-letter file
        assert wait_for(lambda: asynctrack.stats().replayed == 39, 30)
        asynctrack.shutdown_sync(timeout=30)
        created = [out, out.with_name("track.jsonl.1"), *spill.glob("*.dead.jsonl")]
        assert len(created) == 3
        assert {p.name: mode(p) for p in created} == {p.name: 0o600 for p in created}
        dirs = [out.parent, out.parent.parent, spill, spill.parent]
        assert {str(d): mode(d) for d in dirs} == {str(d): 0o700 for d in dirs}

    @pytest.mark.usefixtures("umask_022")
    def test_offset_file_is_private(self, tmp_path: Path) -> None:
        """
        The replay's progress file is created 0600 like the spill file it belongs to.
        """
        from asynctrack._delivery.spill import SpillFile
        from asynctrack.testing import capture

        with capture() as logs:
            for i in range(10):
                work(i)
        spill = SpillFile(tmp_path / "spill", "db")
        spill.append(logs)
        chunk, offset = spill.read_chunk(5)
        spill.commit(offset)
        (progress,) = (tmp_path / "spill").glob("*.offset")
        assert len(chunk) == 5 and mode(progress) == 0o600
        spill.close()


PASSWORD = "Pw-0f9c2e7d41a6"  # a seeded test secret
URLS = [
    f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:1/prod",
    f"mysql+asyncmy://root:{PASSWORD}@127.0.0.1:1/shop",
]


class TestSecretsInErrors:
    @pytest.mark.parametrize("url", URLS)
    def test_password_not_in_warnings_errors_or_reprs(
        self,
        configured: Configure,
        tmp_path: Path,
        url: str,
        caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """
        An unreachable database with a password in its URL: the open/write failures
        reported, the sink's repr, url and name, the stats, the spill file, and the
        ConfigErrors of bad options never show the password.
        """
        texts: list[str] = []
        bad_options: list[dict[str, Any]] = [
            {"pool_size": 0},
            {"connect_timeout": -1},
            {"columns": 3},
        ]
        for bad in bad_options:
            with pytest.raises(ConfigError) as info:
                asynctrack.SQLSink(url, **bad)
            texts.append(str(info.value))
        sink = asynctrack.SQLSink(url, connect_timeout=1.0)
        texts += [repr(sink), sink.url, sink.name]
        with caplog.at_level(logging.DEBUG):
            configured(sink, retry_attempts=1, max_backoff=0.05)
            for i in range(5):
                work(i)
            result = asynctrack.flush_sync(timeout=None)
            asynctrack.shutdown_sync(timeout=10)
        assert result.spilled == 5
        texts += [r.getMessage() for r in caplog.records]
        texts += [repr(asynctrack.stats())]
        texts += [p.name + p.read_text() for p in tmp_path.iterdir() if p.is_file()]
        captured = capfd.readouterr()
        texts += [captured.out, captured.err]
        assert any("failed to open" in t for t in texts)
        assert [t for t in texts if PASSWORD in t] == []
